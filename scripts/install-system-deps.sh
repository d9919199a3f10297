#!/usr/bin/env bash
# Debian packages the suite uses beyond Python: container build/run, Prometheus, headless Chromium.
# Idempotent; needs root (CI runs as root). Tests that need these skip with a reason outside CI.
set -euo pipefail
# Triton's perf_analyzer with Debian 13's glibc in a private folder (not a system package; its own script).
bash "$(dirname "$0")/install-perf-analyzer.sh"
packages=(
  podman buildah runc debootstrap  # build and run the real image on a local stand-in base
  prometheus                       # scrape the service and check every dashboard query
  chromium                         # drive the web page end to end
  curl                             # docs/api.md's curl example, run by tests/service/oip/test_docs_examples.py
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: ${packages[*]}"
  exit 0
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
