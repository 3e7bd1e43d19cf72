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

# A Mosquitto of the test's own on 127.0.0.1:PORT, its persistence (so a
# subscriber's session and queue survive a stop and start), its config
# and log in DIR (the shared broker on 1883 is never touched):
#
#   mosquitto_config DIR PORT [LINES]
#                               writes DIR/mosquitto.conf (LINES: more
#                               settings, one a line)
#   start_broker                starts it (BROKER holds its pid; it lives
#                               at most MQ_LIFETIME s, default 300) and
#                               waits for the port; uses MQ_DIR and MQ_PORT
#   stop_broker                 stops it and waits
mosquitto_config() {
    MQ_DIR=$1 MQ_PORT=$2
    mkdir -p "$MQ_DIR/mq"
    # Mosquitto started as root drops to its own user: let it write its
    # persistence file and log here.
    chmod 0777 "$MQ_DIR" "$MQ_DIR/mq"
    cat > "$MQ_DIR/mosquitto.conf" <<CONF
listener $MQ_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $MQ_DIR/mq/
autosave_interval 1
max_queued_messages 1000000
log_dest file $MQ_DIR/mosquitto.log
${3:-}
CONF
}

start_broker() {
    timeout -k 5 "${MQ_LIFETIME:-300}" mosquitto -c "$MQ_DIR/mosquitto.conf" &
    BROKER=$!
    PIDS+=("$BROKER")
    wait_port "$MQ_PORT"
}

stop_broker() { kill "$BROKER"; wait "$BROKER" 2>/dev/null || true; }
