# Sourced by scripts/*, the e2e build scripts and argo/build.sh: an explicit limit on every
# command that can wait on the network or run for minutes (a cold Go build on a busy 2-core
# machine), and a message that names what ran out instead of a silent hang.
#
#   limit SECONDS WHAT CMD [ARG...]   run CMD; after SECONDS stop it and its children
#   lock_fd FD FILE                   flock FD, waiting at most ROUTERS_E2E_LOCK_TIMEOUT
#
# Env (seconds; generous defaults: a cold build measured 4-7 min on a quiet machine, and a cold
# kube-apiserver build alone took more than 30 min at load average 21-30 on 2 cores):
#   ROUTERS_E2E_BUILD_TIMEOUT  one go command: go build / mod download / list / get / test  (3000)
#   ROUTERS_E2E_LOCK_TIMEOUT   waiting for a concurrent build of the same cache             (5400)
#   ROUTERS_NET_TIMEOUT        one package-registry install (uv sync, pip)                  (1200)
# (A whole build script run from the e2e harness: ROUTERS_E2E_SCRIPT_TIMEOUT, e2e/cluster.py.)
: "${ROUTERS_E2E_BUILD_TIMEOUT:=3000}"
: "${ROUTERS_E2E_LOCK_TIMEOUT:=5400}"
: "${ROUTERS_NET_TIMEOUT:=1200}"

limit() {
  local seconds=$1 what=$2 rc=0 start=$SECONDS pid saved
  shift 2
  # timeout(1) leads its own process group and signals the whole group: a go build's compiler
  # children go with it; SIGKILL follows 30 s after a SIGTERM that is ignored. Because that
  # group is not ours, a TERM/INT/HUP sent to this shell's group (the harness ending a build
  # script, an outer limit running out) would miss it: the trap hands the signal to timeout,
  # which passes it to the whole group, and this shell then dies of the same signal.
  saved=$(trap -p TERM INT HUP)
  timeout --kill-after=30 "$seconds" "$@" <&0 &
  pid=$!
  # shellcheck disable=SC2064  # $pid now, not when the trap runs
  trap "_limit_forward $pid TERM" TERM
  # shellcheck disable=SC2064
  trap "_limit_forward $pid INT" INT
  # shellcheck disable=SC2064
  trap "_limit_forward $pid HUP" HUP
  wait "$pid" || rc=$?
  trap - TERM INT HUP
  eval "$saved"
  # 124/137 may also be CMD's own status (a nested limit that ran out): only say "ran out"
  # when this limit's time is really up.
  if [[ $rc == 124 || $rc == 137 ]] && ((SECONDS - start >= ${seconds%.*})); then
    echo "error: $what did not finish within ${seconds}s and was stopped: $*" >&2
  fi
  return "$rc"
}

# Pass SIG to the running timeout(1) (it signals its group and keeps its kill-after promise),
# wait until it is gone, then end this shell with the same signal.
_limit_forward() {
  local pid=$1 sig=$2
  kill -"$sig" "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do wait "$pid" 2>/dev/null || true; done
  trap - "$sig"
  kill -"$sig" "$BASHPID"
}

lock_fd() {
  local fd=$1 file=$2
  if ! flock -w "$ROUTERS_E2E_LOCK_TIMEOUT" "$fd"; then
    echo "error: waited ${ROUTERS_E2E_LOCK_TIMEOUT}s (ROUTERS_E2E_LOCK_TIMEOUT) for $file:" \
      "another build of the same cache still holds it" >&2
    exit 1
  fi
}
