#!/usr/bin/env bash
# make up|preview|destroy|outputs|refresh STACK=...: run the Pulumi CLI on one
# stack of this project without prompts, creating the stack on first use.
set -euo pipefail
. "$(dirname "$0")/env.sh"
action=$1
stack=$2
cd "$ROOT"
[ -f "stacks/Pulumi.$stack.yaml" ] || { echo "no stack config stacks/Pulumi.$stack.yaml" >&2; exit 2; }
pulumi stack select --create "$stack" --non-interactive >/dev/null
case "$action" in
  up) exec pulumi up --yes --refresh --non-interactive --stack "$stack" ;;
  # The diff display prints diagnostics, the program's node-by-node summary
  # among them, on stderr as they come, before the resources: one stream keeps
  # that order when the output is piped or saved.
  preview) exec pulumi preview --diff --refresh --non-interactive --stack "$stack" 2>&1 ;;
  refresh) exec pulumi refresh --yes --non-interactive --stack "$stack" ;;
  destroy) exec pulumi destroy --yes --non-interactive --stack "$stack" ;;
  outputs) exec pulumi stack output --json --show-secrets=false --stack "$stack" ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
