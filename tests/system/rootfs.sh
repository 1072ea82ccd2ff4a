#!/usr/bin/env bash
# A minimal Debian 12 root for tests/system, made by debootstrap from Debian's mirror and cached:
#   bash tests/system/rootfs.sh        prints the root's path (about 2 minutes the first time)
# The cache is ${CLARAD_SYSTEM_CACHE:-/var/cache/clarad-tests}/root-<key>, the key a hash of the
# release, mirror and packages below, so a change to them makes a new root. The tests never write
# to it: each boot runs on an overlay of it.
set -eu
suite=bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# systemd to boot, dbus beside it; and clarad's Depends (python3.11, libpython3.11, adduser; libc6,
# libgcc-s1, libstdc++6 and zlib1g are in minbase) and Recommends (bubblewrap, which apt installs
# too), so that the package installs offline: the container has no network. Nothing else: no
# procps, so the unit cannot lean on /bin/kill unseen.
packages=systemd,systemd-sysv,dbus,python3.11,libpython3.11,adduser,bubblewrap
cache="${CLARAD_SYSTEM_CACHE:-/var/cache/clarad-tests}"
key="$(printf '%s\n' "$suite" "$mirror" "$packages" | sha256sum | cut -c1-12)"
root="$cache/root-$key"
if [ ! -x "$root/usr/lib/systemd/systemd" ]; then
  mkdir -p "$cache"
  partial="$cache/.root-$key.partial.$$"
  trap 'rm -rf "$partial"' EXIT
  start=$(date +%s)
  if ! debootstrap --variant=minbase --include="$packages" "$suite" "$partial" "$mirror" >"$cache/root-$key.log" 2>&1; then
    tail -n 20 "$cache/root-$key.log" >&2; echo "debootstrap failed (log: $cache/root-$key.log)" >&2; exit 1
  fi
  rm -rf "$root" && mv "$partial" "$root"
  echo "made $root in $(( $(date +%s) - start )) s" >&2
fi
echo "$root"
