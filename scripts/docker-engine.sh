#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io when the
# daemon is missing, starts dockerd in the background (there is no init system
# here) and waits, bounded, until it answers.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if docker info >/dev/null 2>&1; then
  exit 0
fi

command -v dockerd >/dev/null 2>&1 || apt_install docker.io
command -v docker >/dev/null 2>&1 || die "docker.io is installed but no docker client is on PATH"

log="$CACHE/dockerd.log"
echo "    starting dockerd (log: $log)"
# setsid: the daemon must outlive this script and the make that ran it.
setsid dockerd >>"$log" 2>&1 </dev/null &

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
tail -n 20 "$log" >&2
die "dockerd did not answer within 60s; see $log"
