#!/usr/bin/env bash
# The live state of a stack's cluster, with status.py's own exit code (0 healthy,
# 1 degraded, 2 broken or unreadable): `make status` runs this, but make turns
# every failing recipe into its own exit code 2.
set -euo pipefail
. "$(dirname "$0")/env.sh"
exec python "$ROOT/scripts/status.py" "$@"
