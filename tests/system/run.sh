#!/usr/bin/env bash
# The appliance under a real systemd: build the Debian package, boot a minimal Debian 12 with
# systemd-nspawn, install the package in it and run tests/system against it (docs/appliance.md).
#   sudo bash tests/system/run.sh [PYTEST ARGS]
# CLARAD_SYSTEM_DEB=path/to/clarad.deb skips the build and tests that package instead.
set -eu
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
if [ "$(id -u)" != 0 ]; then
  echo "tests/system SKIPPED: it needs root (systemd-nspawn boots a container, debootstrap makes its root," \
       "mount makes its overlay); run: sudo bash tests/system/run.sh"
  exit 0
fi
missing=()
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v dh >/dev/null || missing+=(debhelper)
command -v dpkg-buildpackage >/dev/null || missing+=(dpkg-dev build-essential)
command -v lintian >/dev/null || missing+=(lintian)
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "tests/system SKIPPED: it needs ${missing[*]} (Debian packages) and this machine has no apt-get" >&2
    exit 0
  fi
  echo "== installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
source docs/venv.sh "$root/.venv-test" "triton,test"

work="$(mktemp -d -t clarad-system.XXXXXX)"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
if [ -z "${CLARAD_SYSTEM_DEB:-}" ]; then
  echo "== building the package"
  bash packaging/build.sh "$work"
  CLARAD_SYSTEM_DEB="$(ls "$work"/clarad_*.deb)"
fi
echo "== the Debian 12 root (made once by debootstrap, then cached)"
CLARAD_SYSTEM_ROOT="$(bash tests/system/rootfs.sh)"
echo "   $CLARAD_SYSTEM_ROOT"
export CLARAD_SYSTEM_DEB CLARAD_SYSTEM_ROOT
echo "== tests/system against $(basename "$CLARAD_SYSTEM_DEB") ($(( $(date +%s) - start )) s so far)"
.venv-test/bin/python -m pytest tests/system "$@"
echo "tests/system: $(( $(date +%s) - start )) s in all"
