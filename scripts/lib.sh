# Shared by the scripts that start a server and tear it down (bench.sh,
# agg_bench.sh, segment_align.sh,
# compare.sh): sourced, not run. The caller sets WORK_DIR (or leaves it
# empty for a new temp dir, removed at exit) and uses SERVER_PID for the
# server it starts.
#   setup_work_dir PREFIX   sets WORK_DIR (and OWN_DIR), installs the exit trap
#   stop_server             SIGTERM, up to 60 s, then SIGKILL
#   free_port               a free TCP port on 127.0.0.1
#   wait_settled BIN ADDR [SECS]  until the xtdb server at ADDR has compacted,
#                           flushed and holds nothing in memory (it settles
#                           after 10 s without writes); at most SECS (120) s

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

wait_settled() { # bin addr [secs]
    for _ in $(seq 1 "${3:-120}"); do
        sleep 1
        _s=$("$1/xtdb" stats --addr "$2")
        _flush=$(echo "$_s" | awk '$1 == "disk_flush_bytes" {print $2}')
        _buffered=$(echo "$_s" | awk '$1 == "points_buffered" {print $2}')
        _comp=$(echo "$_s" | awk '$1 == "compactions" {print $2}')
        [ "${_comp:-0}" -gt 0 ] && [ "${_flush:-1}" = 0 ] && [ "${_buffered:-1}" = 0 ] && return 0
    done
    return 0
}
