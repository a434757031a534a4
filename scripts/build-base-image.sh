#!/usr/bin/env bash
# Makes the Debian base image with Python 3 without pulling anything:
# debootstrap from the apt mirror this machine is configured with, then
# `docker import`. The root filesystem tarball is cached, so the image can be
# re-imported in seconds if Docker's data is wiped.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

tarball="$CACHE/rootfs-$BASE_SUITE-python.tar"

# The first Debian mirror in the machine's apt sources (deb822 or one-line).
apt_mirror() {
  local uri
  uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "no Debian mirror found in the apt sources"
  echo "$uri"
}

if [ ! -s "$tarball" ]; then
  apt_install debootstrap
  rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  mirror=$(apt_mirror)
  run_logged "$CACHE/logs/debootstrap.log" "debootstrap $BASE_SUITE" \
    debootstrap --variant=minbase --include=python3,ca-certificates,tzdata \
    "$BASE_SUITE" "$rootfs" "$mirror"
  # Keep the image small: apt lists and caches are not needed at run time.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*
  tar -C "$rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi

docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  "$tarball" "$BASE_IMAGE" >/dev/null
