# Sourced by scripts/* and the e2e build scripts: an explicit limit on every command that can
# wait on the network or run for minutes (a cold Go build on a busy 2-core machine), and a
# message that names what ran out instead of a silent hang.
#
#   limit SECONDS WHAT CMD [ARG...]   run CMD; after SECONDS stop it and its children
#   lock_fd FD FILE                   flock FD, waiting at most ROUTERS_E2E_LOCK_TIMEOUT
#
# Env (seconds; generous defaults: a cold build measured 4-7 min on a quiet machine, and a cold
# kube-apiserver build alone took more than 30 min at load average 21 on 2 cores):
#   ROUTERS_E2E_GO_TIMEOUT    one go build / go mod download / go list        (default 3600)
#   ROUTERS_E2E_LOCK_TIMEOUT  waiting for a concurrent build of the same cache (default 5400)
#   ROUTERS_NET_TIMEOUT       one package-registry install (uv sync, pip)     (default 1200)
: "${ROUTERS_E2E_GO_TIMEOUT:=3600}"
: "${ROUTERS_E2E_LOCK_TIMEOUT:=5400}"
: "${ROUTERS_NET_TIMEOUT:=1200}"

limit() {
  local seconds=$1 what=$2 rc=0 start=$SECONDS
  shift 2
  # timeout(1) runs CMD in its own process group and signals the whole group: a go build's
  # compiler children go with it. SIGKILL follows 30 s after a SIGTERM that is ignored.
  timeout --kill-after=30 "$seconds" "$@" || rc=$?
  # 124/137 may also be CMD's own status (a nested limit that ran out): only say "ran out"
  # when this limit's time is really up.
  if [[ $rc == 124 || $rc == 137 ]] && ((SECONDS - start >= ${seconds%.*})); then
    echo "error: $what did not finish within ${seconds}s and was stopped: $*" >&2
  fi
  return "$rc"
}

lock_fd() {
  local fd=$1 file=$2
  if ! flock -w "$ROUTERS_E2E_LOCK_TIMEOUT" "$fd"; then
    echo "error: waited ${ROUTERS_E2E_LOCK_TIMEOUT}s (ROUTERS_E2E_LOCK_TIMEOUT) for $file:" \
      "another build of the same cache still holds it" >&2
    exit 1
  fi
}
