# Environment for running Pulumi here: the toolchain `make setup` built, the
# local state backend, no update checks, no plugin downloads. Sourced by every
# make target, and by users who run `pulumi` themselves:
#   source scripts/env.sh
# shellcheck shell=bash
# $0 is the sourced file's path in zsh, which has no BASH_SOURCE.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
CACHE=${DKRON_IAC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dkron-iac}
export PATH="$ROOT/.setup/pulumi-current/bin:$ROOT/.venv/bin:$PATH"
if [ ! -x "$ROOT/.setup/pulumi-current/bin/pulumi" ] || [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "scripts/env.sh: the Pulumi CLI or .venv is not built yet; run 'make setup' first" >&2
fi
export PULUMI_HOME=${PULUMI_HOME:-$CACHE/pulumi-home}
export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$ROOT/.state}
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=false
# The local stacks' secrets are encrypted with this passphrase unless you set
# your own (PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE); see
# "Secrets and the passphrase" in the README.
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  export PULUMI_CONFIG_PASSPHRASE=dkron-iac-local-dev
fi
