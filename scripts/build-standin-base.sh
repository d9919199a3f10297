#!/usr/bin/env bash
# Build a local stand-in for `python:3.11-slim` when no registry can be reached (CI, air-gapped machines).
#
#   scripts/build-standin-base.sh [IMAGE]        # default IMAGE: localhost/python:3.11-slim
#
# debootstrap (minbase) a Debian bookworm root with python3 + venv + pip and `podman import` it. Cached: does
# nothing when IMAGE already exists (FORCE=1 rebuilds). The host's CA bundle and a pip.conf that trusts it are
# baked into this stand-in only, so pip inside `podman build` works behind a TLS-intercepting proxy while the
# project's Dockerfile stays free of any such workaround. Needs root, debootstrap and podman.
set -euo pipefail

IMAGE="${1:-localhost/python:3.11-slim}"
SUITE="${SUITE:-bookworm}"
podman_cmd=(podman)

if [ -z "${FORCE:-}" ] && "${podman_cmd[@]}" image exists "$IMAGE"; then
  echo "stand-in base present: $IMAGE"
  exit 0
fi

# The Debian mirror this machine already uses (deb822 sources first, then the classic list).
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/debian.sources | awk '{print $2}' \
    | grep -v security | head -n1 || true)"
fi
if [ -z "$mirror" ]; then
  mirror="$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d /tmp/catdog-standin-XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

start=$(date +%s)
echo "debootstrap $SUITE from $mirror into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 50 "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

# Trust the host's CA bundle (TLS-intercepting proxies) for pip inside builds on this stand-in only.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
fi
# Look like the official image where the Dockerfile cares: `python` on the PATH, no apt lists, no docs.
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

tar -C "$rootfs" -c . | "${podman_cmd[@]}" import \
  --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
echo "stand-in base $IMAGE built in $(($(date +%s) - start)) s"
