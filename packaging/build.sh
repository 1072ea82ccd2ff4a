#!/usr/bin/env bash
# Build the Debian package from this working tree (committed and untracked files, not ignored ones):
#   bash packaging/build.sh [OUTDIR]      writes OUTDIR/clarad_<version>_<arch>.deb (default: dist/)
# Needs build-essential, debhelper and python3-venv (see packaging/debian/README.md), and PyPI or a
# mirror holding the wheels packaging/requirements.lock names.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
work="$(mktemp -d -t clarad-build.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/clarad"
# The sources as git sees them (less files deleted but not yet committed), so nothing built or
# ignored (a .venv, build/) gets in.
git -C "$root" ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' path; do
  if [ -e "$root/$path" ]; then printf '%s\0' "$path"; fi
done | (cd "$root" && xargs -0 -r cp --parents -t "$work/clarad")
cp -r "$root/packaging/debian" "$work/clarad/debian"
start=$(date +%s)
if ! (cd "$work/clarad" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2; echo "dpkg-buildpackage failed (last 40 lines above)" >&2; exit 1
fi
deb="$(ls "$work"/clarad_*.deb)"
mv "$deb" "$out/"
echo "built $out/$(basename "$deb") in $(( $(date +%s) - start )) s"
