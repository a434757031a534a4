# Shared helpers for the setup scripts. Sourced, never run.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../toolchain/versions.env
. "$ROOT/toolchain/versions.env"

# Builds are cached per user, outside the repo, so a fresh clone (CI's
# included) on the same machine reuses them.
CACHE=${DKRON_IAC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dkron-iac}
mkdir -p "$CACHE/logs"

_step_started=0
_step_name=""

# step NAME: announce a step and start its clock.
step() {
  _step_name=$1
  _step_started=$(date +%s)
  printf '==> %s\n' "$_step_name"
}

# done_step WHAT: close the current step, saying whether it was cached.
done_step() {
  local took=$(($(date +%s) - _step_started))
  printf '    %s: %s (%ss)\n' "$_step_name" "$1" "$took"
}

die() {
  printf 'setup failed: %s\n' "$*" >&2
  exit 1
}

# tree_hash DIR...: a short digest of the files in the given paths, so a
# cache entry is rebuilt when the recipe that made it changes.
tree_hash() {
  (cd "$ROOT" && find "$@" -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12
}

# run_logged LOG LABEL CMD...: run a long command with its output in LOG,
# printing a progress line every 20 seconds; on failure show the log's tail.
run_logged() {
  local log=$1 label=$2
  shift 2
  local started
  started=$(date +%s)
  "$@" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 20 &
    wait $! || true
    if kill -0 "$pid" 2>/dev/null; then
      printf '    ... %s: %ss, %s lines of build output (%s)\n' \
        "$label" $(($(date +%s) - started)) "$(wc -l <"$log")" "$log"
    fi
  done
  if ! wait "$pid"; then
    tail -n 30 "$log" >&2
    die "$label failed; full log in $log"
  fi
}

# apt_install PKG...: install Debian packages that are missing.
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  printf '    installing Debian packages: %s\n' "${missing[*]}"
  if [ ! -f "$CACHE/apt-updated" ] || [ -n "$(find "$CACHE/apt-updated" -mmin +720)" ]; then
    apt-get update -qq >"$CACHE/logs/apt-update.log" 2>&1 || die "apt-get update failed (log: $CACHE/logs/apt-update.log)"
    touch "$CACHE/apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >"$CACHE/logs/apt-install.log" 2>&1 || die "apt-get install ${missing[*]} failed (log: $CACHE/logs/apt-install.log)"
}

# apt_install_no_services PKG...: apt_install without starting any service the
# packages ship (Debian's policy-rc.d hook says "no"); an sshd a postinst starts
# anyway on this machine's own network is stopped, so none stays listening.
apt_install_no_services() {
  local policy=/usr/sbin/policy-rc.d made="" rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made=1
  fi
  (apt_install "$@") || rc=$?
  [ -z "$made" ] || rm -f "$policy"
  [ "$rc" -eq 0 ] || exit "$rc"
  local pid
  pid=$(cat /run/sshd.pid 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ] &&
    [ "$(readlink "/proc/$pid/ns/net")" = "$(readlink /proc/self/ns/net)" ]; then
    printf '    stopping the sshd the package started (pid %s)\n' "$pid"
    kill "$pid"
  fi
}
