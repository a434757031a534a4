#!/usr/bin/env bash
# Builds the Pulumi CLI and this project's Python language host from Go
# modules into DEST/bin, with the SDK's program runner (pulumi-language-python-exec) and this
# project's dynamic-provider plugin (toolchain/pulumi/provider) installed beside them.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dest=$1
tmp="$dest.tmp"
rm -rf "$tmp" && mkdir -p "$tmp/bin"
cd "$ROOT/toolchain/pulumi"

# Without the stamped version `pulumi version` is empty and the Automation
# API refuses the CLI.
ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"
run_logged "$CACHE/logs/pulumi-build.log" "go build pulumi" \
  env CGO_ENABLED=0 go build -v -trimpath -tags osusergo,grpcnotrace -ldflags "$ldflags" \
  -o "$tmp/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
run_logged "$CACHE/logs/langhost-build.log" "go build pulumi-language-python" \
  env CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$PULUMI_VERSION" \
  -o "$tmp/bin/pulumi-language-python" ./langhost

# The module cache is read-only: copy the scripts out with exec bits.
sdk=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$tmp/bin/"
# The SDK's provider plugin runs `python -m pulumi.dynamic`; ours runs it under an engine watch.
install -m 0755 "$ROOT/toolchain/pulumi/provider/"* "$tmp/bin/"

"$tmp/bin/pulumi" version | grep -qx "v$PULUMI_VERSION" || die "built pulumi does not report v$PULUMI_VERSION"
rm -rf "$dest"
mv "$tmp" "$dest"
