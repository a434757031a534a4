#!/usr/bin/env bash
# make up|preview|destroy|outputs|refresh|api-token|api-ca STACK=...: run the Pulumi CLI on one
# stack of this project without prompts, creating the stack on first use.
set -euo pipefail
. "$(dirname "$0")/env.sh"
action=$1
stack=$2
cd "$ROOT"
if [ ! -f "stacks/Pulumi.$stack.yaml" ]; then
  known=$(find stacks -maxdepth 1 -name 'Pulumi.*.yaml' | sed 's|^stacks/Pulumi\.||; s|\.yaml$||' | sort | paste -sd, | sed 's/,/, /g')
  cat >&2 <<MSG
no stack '$stack': stacks/Pulumi.$stack.yaml does not exist.
Stacks with a config here: ${known:-none}.
To add '$stack', either copy a stack file and give the copy its own cluster name and ports:
    cp stacks/Pulumi.dev.yaml stacks/Pulumi.$stack.yaml
    # then edit cluster.name (it prefixes every Docker name), cluster.ports.api_port_base
    # and cluster.metrics.prometheus.port
or create it with Pulumi and set its config:
    source scripts/env.sh
    pulumi stack init $stack
    pulumi config set -s $stack --path cluster.name dkron-$stack
    pulumi config set -s $stack --path 'cluster.nodes[0].name' node1
    pulumi config set -s $stack --path cluster.ports.api_port_base 8101
Then: make up STACK=$stack (README: "Adding a stack").
MSG
  exit 2
fi
pulumi stack select --create "$stack" --non-interactive >/dev/null
# An update killed half way leaves its lock behind; one of a process that is gone is removed.
python "$ROOT/scripts/stale_locks.py" "$stack"
case "$action" in
  up) exec pulumi up --yes --refresh --non-interactive --stack "$stack" ;;
  # The diff display prints diagnostics, the program's node-by-node summary
  # among them, on stderr as they come, before the resources: one stream keeps
  # that order when the output is piped or saved.
  preview) exec pulumi preview --diff --refresh --non-interactive --stack "$stack" 2>&1 ;;
  refresh) exec pulumi refresh --yes --non-interactive --stack "$stack" ;;
  destroy) exec pulumi destroy --yes --non-interactive --stack "$stack" ;;
  outputs) exec pulumi stack output --json --show-secrets=false --stack "$stack" ;;
  # The API's credentials (README, "Who can command the cluster"): the token (a secret,
  # printed only when asked for by name) and the stack's CA (public).
  api-token|api-ca)
    field=$([ "$action" = api-token ] && echo token || echo ca)
    pulumi stack output api_auth --json --show-secrets --stack "$stack" \
      | python -c "import json, sys; v = json.load(sys.stdin); print(v['$field'].strip()) if v else sys.exit('stack $stack has no API credentials: security.mutual_tls is off, or it is not deployed')" ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
