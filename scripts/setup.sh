#!/usr/bin/env bash
# Brings up everything the program and its tests need, from package
# registries alone: the virtualenv, a Docker engine, the Pulumi CLI with its
# Python language host, Dkron, and the local base images. Idempotent: a warm
# run checks each piece and builds nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

started=$(date +%s)

# --- Python virtualenv -------------------------------------------------------
step "Python virtualenv (.venv) with pinned packages"
req_hash=$(sha256sum "$ROOT/requirements.txt" | cut -c1-12)
if [ -x "$ROOT/.venv/bin/python" ] && [ "$(cat "$ROOT/.venv/.requirements-hash" 2>/dev/null)" = "$req_hash" ]; then
  done_step "cached"
else
  python3 -m venv "$ROOT/.venv"
  run_logged "$CACHE/logs/pip.log" "pip install" \
    "$ROOT/.venv/bin/pip" install --disable-pip-version-check -r "$ROOT/requirements.txt"
  echo "$req_hash" >"$ROOT/.venv/.requirements-hash"
  done_step "installed"
fi

# --- Docker engine -----------------------------------------------------------
step "Docker engine"
"$ROOT/scripts/docker-engine.sh"
done_step "$(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"

# --- Pulumi CLI and the Python language host ---------------------------------
pulumi_dir="$CACHE/pulumi-v$PULUMI_VERSION-$(tree_hash toolchain/pulumi)"
step "Pulumi CLI v$PULUMI_VERSION and Python language host (built from Go modules)"
if [ -x "$pulumi_dir/bin/pulumi" ] && [ -x "$pulumi_dir/bin/pulumi-language-python" ]; then
  done_step "cached in $pulumi_dir"
else
  "$ROOT/scripts/build-pulumi.sh" "$pulumi_dir"
  done_step "built into $pulumi_dir"
fi
# Per checkout: two clones whose toolchains differ each run their own build.
mkdir -p "$ROOT/.setup"
ln -sfn "$pulumi_dir" "$ROOT/.setup/pulumi-current"

# --- Dkron: the project's node agent, built on Dkron's Go module --------------
# agent/ is Dkron's agent with the stack's mutual TLS (README, "Mutual TLS");
# every other `dkron` subcommand is Dkron's own.
dkron_dir="$CACHE/dkron-v$DKRON_VERSION-agent-$(tree_hash agent)"
step "Dkron v$DKRON_VERSION node agent (agent/, built from Dkron's Go module)"
if [ -x "$dkron_dir/dkron" ]; then
  done_step "cached in $dkron_dir"
else
  tmp="$dkron_dir.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd "$ROOT/agent" && run_logged "$CACHE/logs/dkron-build.log" "go build agent" \
    env CGO_ENABLED=0 go build -v -trimpath \
    -ldflags "-s -w -X github.com/distribworks/dkron/v4/dkron.Version=$DKRON_VERSION" \
    -o "$tmp/dkron" .)
  mv "$tmp" "$dkron_dir"
  done_step "built into $dkron_dir"
fi

# --- Local images ------------------------------------------------------------
step "Base image $BASE_IMAGE (Debian $BASE_SUITE with Python 3)"
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  done_step "cached"
else
  "$ROOT/scripts/build-base-image.sh"
  done_step "imported"
fi

step "Dkron image $DKRON_IMAGE (the binary at /usr/local/bin/dkron, like the official image)"
dkron_id=$(sha256sum "$dkron_dir/dkron" | cut -c1-12)
if [ "$(docker image inspect -f '{{index .Config.Labels "dkron-iac.binary"}}' "$DKRON_IMAGE" 2>/dev/null)" = "$dkron_id" ]; then
  done_step "cached"
else
  "$ROOT/scripts/build-dkron-image.sh" "$dkron_dir/dkron" "$DKRON_IMAGE" "dkron-iac.binary=$dkron_id"
  done_step "imported"
fi

# --- Lab tools ----------------------------------------------------------------
step "Lab tools (sshd, ssh, openssl, ip, nsenter; for make lab-up and the lab tests)"
lab_tools_present=1
for tool in /usr/sbin/sshd ssh ssh-keygen openssl ip nsenter; do
  command -v "$tool" >/dev/null 2>&1 || lab_tools_present=""
done
if [ -n "$lab_tools_present" ]; then
  done_step "present"
else
  apt_install_no_services openssh-server openssh-client openssl iproute2 util-linux
  done_step "installed"
fi

# --- Pulumi state backend -------------------------------------------------------
step "Local Pulumi state backend (.state/, ignored by git)"
mkdir -p "$ROOT/.state"
done_step "file://$ROOT/.state"

printf '==> setup finished in %ss\n' $(($(date +%s) - started))
