#!/usr/bin/env bash
# A full disk must not stop the gateway, on a real small file system: the
# data folder is a 3 MiB tmpfs of this test's own, filled with fallocate.
#
#   fieldgate sim  ->  fieldgate run (data on the tmpfs)  ->  mosquitto (ours, on a free port)  ->  mosquitto_sub
#
# 1. A first run makes the store file; the disk is filled; the gateway
#    starts again on the full disk: it must run degraded (/readyz 503,
#    /api/status and /metrics say disk_full) and publish live.
# 2. The broker stops and starts while the disk is full: the gateway stays
#    alive and what it held in memory arrives (no seq missing).
# 3. The disk is freed: the store opens its file without a restart.
# 4. The disk fills again while running and the broker stops and starts:
#    the gateway stays alive and publishes; every seq missing on the wire
#    is counted as evicted; freeing the disk leaves it ok.
# 5. The file system is read-only at start: degraded (read_only), live
#    publishing, a second gateway on the same store still refused; made
#    writable again, the store opens its file without a restart.
#
# Needs root (mount); skips with a message otherwise. The shared Mosquitto
# on 1883 is never touched. Loopback only; every wait is bounded.
#
#   bash tests/interop/disk_full.sh
#
# Ends with "disk-full: N passed, M failed".
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET = /* ]] || TARGET=$ROOT/$TARGET
FG=$TARGET/debug/fieldgate
export NO_COLOR=1

if [[ $(id -u) != 0 ]]; then
    echo "disk-full: skipped (needs root to mount a small tmpfs)"
    exit 0
fi
command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; }
command -v mosquitto_sub >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto-clients >/dev/null; }
[[ -x $FG ]] || cargo build --quiet

source tests/lib/processes.sh
TMP=$(mktemp -d /tmp/fieldgate-diskfull.XXXXXX)
DATA=$TMP/data
mkdir -p "$TMP/mq" "$DATA"
cleanup() {
    stop_all
    umount "$DATA" 2>/dev/null || true
    [[ ${DISKFULL_KEEP:-0} = 1 ]] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
if ! mount -t tmpfs -o size=3m,mode=0755 tmpfs "$DATA" 2>"$TMP/mount.err"; then
    echo "disk-full: skipped (cannot mount a tmpfs: $(cat "$TMP/mount.err"))"
    exit 0
fi
# Mosquitto started as root drops to its own user.
chmod 0777 "$TMP" "$TMP/mq"

read -r SIM_PORT MQ_PORT HTTP_PORT < <(free_ports 3)
TOPIC=fieldgate/ci/diskfull/data/plc

cat > "$TMP/sim.toml" <<TOML
seed = 7
[[devices]]
name = "plc"
unit = 1
listen = "127.0.0.1:$SIM_PORT"
registers = 10
TOML

cat > "$TMP/fieldgate.toml" <<TOML
[gateway]
id = "diskfull"
site = "ci"
data_dir = "$DATA"
[mqtt]
host = "127.0.0.1"
port = $MQ_PORT
client_id = "fieldgate-diskfull-test"
[store]
durability = "normal"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[[devices]]
name = "plc"
tcp = "127.0.0.1:$SIM_PORT"
poll_interval = "100ms"
tags = [
  { name = "r0", area = "holding", address = 0 },
  { name = "r1", area = "holding", address = 1 },
  { name = "r9", area = "holding", address = 9 },
]
TOML

mosquitto_config "$TMP" "$MQ_PORT"

passed=0; failed=0
ok() { echo "ok disk-full: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL disk-full: $*"; failed=$((failed + 1)); tail -5 "$TMP/fieldgate.log" || true; }

start_fg() {
    timeout -k 5 300 "$FG" run -c "$TMP/fieldgate.toml" >> "$TMP/fieldgate.log" 2>&1 &
    FG_PID=$!
    PIDS+=("$FG_PID")
    wait_port "$HTTP_PORT"
}
stop_fg() { kill "$FG_PID"; wait "$FG_PID" 2>/dev/null || true; }
# Fills the tmpfs to the last block.
fill() {
    local avail
    avail=$(df -B1 --output=avail "$DATA" | tail -1 | tr -d ' ')
    if ((avail > 0)); then fallocate -l "$avail" "$DATA/fill.$RANDOM" 2>/dev/null || true; fi
    avail=$(df -B1 --output=avail "$DATA" | tail -1 | tr -d ' ')
    echo "disk filled ($avail bytes free)"
}
unfill() { rm -f "$DATA"/fill.*; echo "disk freed"; }
code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT$1" || echo 000; }
# A field of an endpoint's JSON ("a.b" for nested), or "" on any failure.
field() {
    curl -s "http://127.0.0.1:$HTTP_PORT$1" | python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)
    for k in sys.argv[1].split("."):
        v = v[k]
    print(v)
except Exception:
    print("")' "$2"
}
received() { grep -c . "$TMP/received.txt" || true; }
# The sum of a metric's samples.
metric() {
    curl -s "http://127.0.0.1:$HTTP_PORT/metrics" \
        | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { print s + 0 }'
}
# What the subscriber holds: "MAX MISSING DUPLICATES".
check() {
    python3 - "$TMP/received.txt" <<'PY'
import json, sys
seqs = []
for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        seqs.append(json.loads(line)["seq"])
have = set(seqs)
top = max(have) if have else 0
missing = sum(1 for s in range(1, top + 1) if s not in have)
print(top, missing, len(seqs) - len(have))
PY
}
# Waits (at most $2 s) until the command $1 succeeds.
within() {
    local i
    for i in $(seq $(($2 * 4))); do
        if eval "$1"; then return 0; fi
        sleep 0.25
    done
    return 1
}

timeout -k 5 300 "$FG" sim -c "$TMP/sim.toml" > "$TMP/sim.log" 2>&1 &
PIDS+=($!)
wait_port "$SIM_PORT"
start_broker
timeout -k 5 300 mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -c -i fg-diskfull-sub -q 1 \
    -t "$TOPIC" > "$TMP/received.txt" 2> "$TMP/sub.log" &
PIDS+=($!)
sleep 0.5

# --- 1. start on a full disk ------------------------------------------------
start_fg
within '[[ $(received) -ge 5 ]]' 15 || fail "the first run published nothing"
stop_fg
fill
start_fg
if within '[[ $(code /readyz) = 503 && $(field /readyz store) = degraded ]]' 15; then
    ok "starts on a full disk, degraded: $(field /readyz store_error)"
else
    fail "not degraded on a full disk: $(code /readyz) $(curl -s "http://127.0.0.1:$HTTP_PORT/readyz")"
fi
[[ $(field /api/status outbox.state) = degraded && $(field /api/status outbox.fault) = disk_full ]] \
    && ok "/api/status says degraded (disk_full)" \
    || fail "/api/status: $(field /api/status outbox)"
[[ $(metric 'fieldgate_store_degraded{fault="disk_full"}') = 1 ]] \
    && ok "/metrics says fieldgate_store_degraded{fault=\"disk_full\"} 1" \
    || fail "/metrics: $(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep store_degraded)"
[[ $(code /healthz) = 200 ]] && ok "/healthz stays 200" || fail "/healthz $(code /healthz)"
n=$(received)
within '[[ $(received) -ge $((n + 10)) ]]' 10 \
    && ok "publishes live on a full disk" || fail "nothing published on a full disk"
read -r top missing dups <<<"$(check)"
((missing == 0 && dups == 0)) \
    && ok "numbering goes on from the file it could not open: seq 1..$top, none repeated" \
    || fail "seq 1..$top: $missing missing, $dups repeated across the start on a full disk"

# --- 2. broker down and up while full ---------------------------------------
stop_broker
sleep 4
held=$(field /api/status outbox.held)
[[ $(code /healthz) = 200 && ${held:-0} -gt 0 ]] \
    && ok "alive with the broker down, $held messages held in memory" \
    || fail "broker down while full: healthz $(code /healthz), held '$held'"
start_broker
if within '[[ $(field /api/status outbox.held) = 0 ]]' 20; then
    read -r top missing _ <<<"$(check)"
    ((missing == 0)) && ok "what memory held arrived: seq 1..$top, none missing" \
        || fail "$missing of seq 1..$top missing after the outage on a full disk"
else
    fail "memory not drained after the broker came back: $(field /api/status outbox)"
fi

# --- 3. recovery without a restart ------------------------------------------
pid=$FG_PID
unfill
if within '[[ $(code /readyz) = 200 && $(field /readyz store) = open ]]' 45; then
    kill -0 "$pid" 2>/dev/null && ok "recovers without a restart once space returns" \
        || fail "the process changed"
else
    fail "not ok 45 s after space returned: $(curl -s "http://127.0.0.1:$HTTP_PORT/readyz")"
fi
[[ -s $DATA/fieldgate.db ]] && ok "the store file is written again" || fail "no store file"

# --- 4. the disk fills while running, broker down and up --------------------
fill
sleep 3
n=$(received)
within '[[ $(received) -ge $((n + 10)) ]]' 10 \
    && ok "publishes live after the disk filled while running" \
    || fail "nothing published after the disk filled while running"
stop_broker
sleep 5
[[ $(code /healthz) = 200 ]] && ok "alive with the broker down on a disk that filled while running (store: $(field /readyz store))" \
    || fail "/healthz $(code /healthz) with the broker down on a full disk"
start_broker
n=$(received)
within '[[ $(received) -ge $((n + 20)) ]]' 20 || true
sleep 2
read -r top missing _ <<<"$(check)"
evicted=$(metric fieldgate_outbox_evicted_total)
if ((missing <= evicted)); then
    ok "seq 1..$top: $missing missing, $evicted counted as evicted"
else
    fail "seq 1..$top: $missing missing but only $evicted counted as evicted"
fi
unfill
within '[[ $(code /readyz) = 200 ]]' 45 && ok "ok again once the disk is freed" \
    || fail "not ok after the disk was freed: $(curl -s "http://127.0.0.1:$HTTP_PORT/readyz")"
stop_fg

# --- 5. a read-only file system at start ------------------------------------
mount -o remount,ro "$DATA"
start_fg
if within '[[ $(field /readyz store_fault) = read_only ]]' 15; then
    ok "starts on a read-only file system, degraded: $(field /readyz store_error)"
else
    fail "not degraded read_only: $(curl -s "http://127.0.0.1:$HTTP_PORT/readyz")"
fi
n=$(received)
within '[[ $(received) -ge $((n + 10)) ]]' 10 \
    && ok "publishes live on a read-only file system" || fail "nothing published read-only"
read -r SECOND_HTTP < <(free_ports 1)
sed -e "s/127.0.0.1:$HTTP_PORT/127.0.0.1:$SECOND_HTTP/" \
    -e 's/fieldgate-diskfull-test/fieldgate-diskfull-second/' "$TMP/fieldgate.toml" > "$TMP/second.toml"
if timeout -k 5 20 "$FG" run -c "$TMP/second.toml" > "$TMP/second.log" 2>&1; then
    fail "a second gateway ran on the same store"
elif grep -q "in use" "$TMP/second.log"; then
    ok "a second gateway on the same store is refused (the lock holds on a read-only disk)"
else
    fail "the second gateway stopped for another reason: $(tail -3 "$TMP/second.log")"
fi
mount -o remount,rw "$DATA"
within '[[ $(code /readyz) = 200 ]]' 45 && ok "ok again once the file system is writable" \
    || fail "not ok after remounting read-write: $(curl -s "http://127.0.0.1:$HTTP_PORT/readyz")"
lines=$(grep -c "store degraded: the disk cannot take the outbox" "$TMP/fieldgate.log" || true)
echo "($lines store degraded lines in the log)"
stop_fg

echo "disk-full: $passed passed, $failed failed"
((failed == 0))
