#!/usr/bin/env bash
# Triton's perf_analyzer, runnable on Debian 12 (tests/service/oip/test_perf_analyzer.py, docs/benchmarks.md).
#
# The real binary ships only inside the tritonclient 2.60.0 wheel (2.73.0 no longer has it; PyPI's perf-analyzer
# is a placeholder) and needs glibc >= 2.38, which Debian 12 lacks. So, into a private folder and nowhere else:
# - the binary, unzipped from the wheel (fetched with pip, no install);
# - Debian 13's libc6 libstdc++6 libgcc-s1 libssl3t64 zlib1g, fetched with `apt-get download` against a trixie
#   sources list of its own (the system's apt state is untouched) and unpacked with dpkg-deb -x;
# - a wrapper `perf_analyzer` that starts the binary through that folder's dynamic loader.
# Idempotent: a second run with everything present does nothing. Needs no root.
# Folder: $CATDOG_PERF_ANALYZER_HOME, else ${XDG_CACHE_HOME:-~/.cache}/catdog/perf-analyzer.
set -euo pipefail

home="${CATDOG_PERF_ANALYZER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/catdog/perf-analyzer}"
version="2.60.0"
stamp="$home/.stamp-$version"
if [ -f "$stamp" ] && "$home/perf_analyzer" --version >/dev/null 2>&1; then
  echo "perf_analyzer present: $home/perf_analyzer"
  exit 0
fi

python="${PYTHON:-python3}"
# The mirror the system's own sources use (deb822 `URIs:` or one-line `deb`), unless CATDOG_DEBIAN_MIRROR says.
mirror="${CATDOG_DEBIAN_MIRROR:-$(grep -rhE '^(URIs:|deb) ' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | grep -oE 'https?://[^ ]+/debian/?$|https?://[^ ]+/debian/? ' | head -1 | tr -d ' ' || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$home"

echo "fetching tritonclient $version (for its perf_analyzer)"
"$python" -m pip download --quiet --no-deps --dest "$work" "tritonclient==$version"
"$python" - "$work" "$home/bin" <<'EOF'
import pathlib, sys, zipfile
work, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
[wheel] = work.glob("tritonclient-*.whl")
with zipfile.ZipFile(wheel) as z:
    [name] = [n for n in z.namelist() if n.endswith("/bin/perf_analyzer")]
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "perf_analyzer").write_bytes(z.read(name))
    (dest / "perf_analyzer").chmod(0o755)
EOF

echo "fetching Debian 13's C runtime from $mirror"
apt_root="$work/apt"
mkdir -p "$apt_root/lists/partial" "$apt_root/cache/archives/partial" "$apt_root/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$apt_root/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_root/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
  -o "Dir::State::Lists=$apt_root/lists" -o "Dir::Cache=$apt_root/cache" -o "Dir::State::status=/dev/null"
  -o "Debug::NoLocking=1" -o "APT::Architecture=amd64" -o "APT::Sandbox::User=root"
)
apt-get "${apt_opts[@]}" update -qq
(cd "$apt_root/debs" && apt-get "${apt_opts[@]}" download -qq libc6 libstdc++6 libgcc-s1 libssl3t64 zlib1g)
rm -rf "$home/root"
for deb in "$apt_root"/debs/*.deb; do dpkg-deb -x "$deb" "$home/root"; done

lib="$home/root/usr/lib/x86_64-linux-gnu"
cat >"$home/perf_analyzer" <<EOF
#!/bin/sh
# Triton's perf_analyzer ($version) on Debian 13's glibc (scripts/install-perf-analyzer.sh).
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$home/bin/perf_analyzer" "\$@"
EOF
chmod 755 "$home/perf_analyzer"
"$home/perf_analyzer" --version >/dev/null 2>&1 || "$home/perf_analyzer" --help >/dev/null 2>&1 || {
  echo "perf_analyzer does not start: $("$home/perf_analyzer" --version 2>&1 | tail -3)" >&2
  exit 1
}
touch "$stamp"
echo "perf_analyzer installed: $home/perf_analyzer"
