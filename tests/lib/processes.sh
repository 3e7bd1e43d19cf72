# Shared by the shell tests (source it): background processes that always
# stop, and free loopback ports.
#
#   PIDS+=($!)          after starting something in the background (itself
#                       under `timeout -k`, so it ends even if we do not)
#   stop_all            SIGTERM to each, then SIGKILL to what is left
#   wait_port PORT      until 127.0.0.1:PORT accepts (at most 10 s)
#   free_ports N        N distinct free loopback ports on one line

PIDS=()

stop_all() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 never opened" >&2
    return 1
}

# Bound together, so no port is handed out twice.
free_ports() {
    python3 -c '
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' "$1"
}
