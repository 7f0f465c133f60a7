# Shared by the scripts that start a server and tear it down (bench.sh,
# compare.sh): sourced, not run. The caller sets WORK_DIR (or leaves it
# empty for a new temp dir, removed at exit) and uses SERVER_PID for the
# server it starts.
#   setup_work_dir PREFIX   sets WORK_DIR (and OWN_DIR), installs the exit trap
#   stop_server             SIGTERM, up to 60 s, then SIGKILL
#   free_port               a free TCP port on 127.0.0.1

SERVER_PID=""
OWN_DIR=0

stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

cleanup() {
    stop_server
    if [ "$OWN_DIR" = 1 ]; then rm -rf "$WORK_DIR"; fi
}

setup_work_dir() { # prefix
    if [ -z "${WORK_DIR:-}" ]; then
        WORK_DIR=$(mktemp -d -t "$1.XXXXXX")
        OWN_DIR=1
    fi
    mkdir -p "$WORK_DIR"
    trap cleanup EXIT INT TERM
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}
