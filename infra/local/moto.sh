#!/usr/bin/env bash
# Run the local AWS emulator (moto server) in the background for `make demo` and manual testing.
#
#   infra/local/moto.sh start    start (or reuse a healthy) server; prints `export ...` lines for eval
#   infra/local/moto.sh env      print the `export ...` lines for the running server
#   infra/local/moto.sh status   say whether it runs (exit 0) or not (exit 3)
#   infra/local/moto.sh stop     stop it and remove the state files
#
#   eval "$(infra/local/moto.sh start)"
#
# State lives in $S3I_LOCAL_DIR (default $REPO/.local): moto.pid, moto.port, moto.log.
# The server binds 127.0.0.1 on a port the OS picks, so parallel checkouts never collide.
# Environment:
#   S3I_VENV                  venv with moto installed (default: $REPO/.venv, made by infra/local/venv.sh)
#   S3I_LOCAL_DIR             state directory (default: $REPO/.local)
#   S3I_MOTO_START_TIMEOUT    seconds to wait for readiness (default: 30)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${S3I_VENV:-$repo/.venv}"
state="${S3I_LOCAL_DIR:-$repo/.local}"
pid_file="$state/moto.pid"
port_file="$state/moto.port"
log_file="$state/moto.log"
timeout="${S3I_MOTO_START_TIMEOUT:-30}"
python="$venv/bin/python"

die() {
    echo "moto.sh: error: $*" >&2
    exit 1
}

need_venv() {
    [ -x "$python" ] && "$python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("moto") is None)' 2>/dev/null ||
        die "no moto in $venv: run \`make venv\` (infra/local/venv.sh) first"
}

# The pid is ours only if it is alive and still a moto server (pids are recycled).
pid_alive() {
    local pid="$1"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'moto.server'
}

# GET /moto-api/ answers 200 once the server serves requests.
healthy() {
    local port="$1"
    [ -n "$port" ] || return 1
    "$python" - "$port" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

read_state() {
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    port="$(cat "$port_file" 2>/dev/null || true)"
}

running() {
    read_state
    pid_alive "$pid" && healthy "$port"
}

print_env() {
    local url="http://127.0.0.1:$1"
    # The global AWS_ENDPOINT_URL (not a per-service one) so every SDK client goes to moto; dummy credentials
    # and no instance metadata so nothing ever reaches real AWS from a shell that had a profile.
    cat <<EOF
export S3I_EMULATOR_URL=$url
export AWS_ENDPOINT_URL=$url
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_PROFILE
EOF
}

stop_pid() {
    local pid="$1"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

cmd_start() {
    need_venv
    if running; then
        echo "moto.sh: reusing moto (pid $pid) at http://127.0.0.1:$port" >&2
        print_env "$port"
        return 0
    fi
    # A stale or unhealthy server: clear it before starting a fresh one.
    if pid_alive "$pid"; then
        echo "moto.sh: pid $pid does not answer; restarting it" >&2
        stop_pid "$pid"
    fi
    rm -f "$pid_file" "$port_file"
    mkdir -p "$state"
    : >"$log_file"

    # setsid: the server outlives this shell and ignores the terminal's Ctrl-C.
    setsid "$python" -m moto.server -H 127.0.0.1 -p 0 </dev/null >>"$log_file" 2>&1 &
    pid=$!
    echo "$pid" >"$pid_file"

    local deadline=$((SECONDS + timeout))
    port=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pid_file"
            tail -n 20 "$log_file" >&2 || true
            die "moto exited during start-up (log: $log_file)"
        fi
        if [ -z "$port" ]; then
            # Werkzeug logs " * Running on http://127.0.0.1:PORT" (possibly wrapped in colour codes).
            port="$(sed -n 's/.*Running on http:\/\/127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log_file" | head -n 1)"
        fi
        if [ -n "$port" ] && healthy "$port"; then
            echo "$port" >"$port_file"
            echo "moto.sh: moto (pid $pid) ready at http://127.0.0.1:$port (log: $log_file)" >&2
            print_env "$port"
            return 0
        fi
        sleep 0.2
    done
    stop_pid "$pid"
    rm -f "$pid_file" "$port_file"
    tail -n 20 "$log_file" >&2 || true
    die "moto was not ready within ${timeout}s (log: $log_file)"
}

cmd_stop() {
    read_state
    if pid_alive "$pid"; then
        stop_pid "$pid"
        echo "moto.sh: stopped moto (pid $pid)" >&2
    else
        echo "moto.sh: moto is not running" >&2
    fi
    rm -f "$pid_file" "$port_file"
}

cmd_env() {
    need_venv
    running || die "moto is not running: eval \"\$(infra/local/moto.sh start)\""
    print_env "$port"
}

cmd_status() {
    if [ -x "$python" ] && running; then
        echo "moto running (pid $pid) at http://127.0.0.1:$port (log: $log_file)"
    else
        echo "moto not running"
        return 3
    fi
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
env) cmd_env ;;
status) cmd_status ;;
*)
    echo "usage: $0 {start|stop|env|status}" >&2
    exit 2
    ;;
esac
