#!/usr/bin/env bash
# build-dkron-image.sh BINARY TAG [LABEL=VALUE]: an image that holds only
# /usr/local/bin/dkron, like the official image, for the node Dockerfile to
# copy the binary from. `docker import` of a one-file tree instead of a
# `FROM scratch` build: the daemon here has no BuildKit and the client warns
# that its legacy builder is deprecated on every build.
set -euo pipefail

binary=$1
tag=$2
label=${3:-}
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
install -D -m 0755 "$binary" "$tree/usr/local/bin/dkron"
changes=()
[ -z "$label" ] || changes=(--change "LABEL $label")
tar -C "$tree" --owner=0 --group=0 -cf - usr | docker import "${changes[@]}" - "$tag" >/dev/null
