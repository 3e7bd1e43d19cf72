#!/usr/bin/env bash
# Store-and-forward through a real broker outage, against Mosquitto:
#
#   fieldgate sim  ->  fieldgate run  ->  mosquitto (our own, on a free port)  ->  mosquitto_sub
#
# The broker is stopped for a while during polling and started again (with
# persistence, so the subscriber's session and queue survive). Afterwards the
# subscriber must hold every seq of the device topic from 1 to the last, none
# missing; duplicates are allowed (at least once) and counted. The shared
# Mosquitto on 1883 is never touched. Loopback only; every wait is bounded.
#
#   bash tests/interop/mosquitto_outage.sh
#
# Ends with "mosquitto-outage: N passed, M failed".
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET = /* ]] || TARGET=$ROOT/$TARGET
FG=$TARGET/debug/fieldgate
export NO_COLOR=1
OUTAGE=${OUTAGE_SECONDS:-5}

command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; }
command -v mosquitto_sub >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto-clients >/dev/null; }
[[ -x $FG ]] || cargo build --quiet

source tests/lib/processes.sh
TMP=$(mktemp -d /tmp/fieldgate-outage.XXXXXX)
cleanup() {
    stop_all
    [[ ${OUTAGE_KEEP:-0} = 1 ]] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

read -r SIM_PORT MQ_PORT < <(free_ports 2)
mkdir -p "$TMP/mq" "$TMP/data"
# Mosquitto started as root drops to its own user: let it write its
# persistence file and log here.
chmod 0777 "$TMP" "$TMP/mq"

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
id = "outage"
site = "ci"
data_dir = "$TMP/data"
[mqtt]
host = "127.0.0.1"
port = $MQ_PORT
client_id = "fieldgate-outage-test"
[store]
durability = "normal"
[http]
listen = ""
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


timeout -k 5 300 "$FG" sim -c "$TMP/sim.toml" > "$TMP/sim.log" 2>&1 &
PIDS+=($!)
wait_port "$SIM_PORT"
start_broker
timeout -k 5 300 mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -c -i fg-outage-sub -q 1 \
    -t 'fieldgate/ci/outage/data/plc' > "$TMP/received.txt" 2> "$TMP/sub.log" &
PIDS+=($!)
sleep 0.5
timeout -k 5 300 "$FG" run -c "$TMP/fieldgate.toml" > "$TMP/fieldgate.log" 2>&1 &
FG_PID=$!
PIDS+=("$FG_PID")

sleep 3
BEFORE=$(grep -c . "$TMP/received.txt" || true)
echo "stopping the broker for ${OUTAGE}s (after $BEFORE messages)"
stop_broker
sleep "$OUTAGE"
start_broker
echo "broker back"

# Contiguity of what the subscriber holds: "ok MAX DUPLICATES HIST" or "gap ...".
check() {
    python3 - "$TMP/received.txt" <<'PY'
import json, sys
seqs, hist = [], 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    m = json.loads(line)
    seqs.append(m["seq"])
    hist += 1 if m.get("hist") else 0
if not seqs:
    print("gap none-received"); sys.exit()
have = set(seqs)
top = max(have)
missing = [s for s in range(1, top + 1) if s not in have]
if missing:
    print(f"gap missing={len(missing)} first={missing[:5]} max={top}")
else:
    print(f"ok {top} {len(seqs) - len(have)} {hist}")
PY
}

# Let the backlog drain: every seq present, some marked hist, and at least
# the polls of the outage (10 a second, give or take) beyond what came
# before it. Bounded to 30 s.
WANT=$((BEFORE + OUTAGE * 8))
state=""
for _ in $(seq 60); do
    state=$(check)
    if [[ $state == ok* ]]; then
        read -r _ top _ hist <<<"$state"
        ((top >= WANT && hist > 0)) && break
    fi
    sleep 0.5
done
kill "$FG_PID"; wait "$FG_PID" 2>/dev/null || true
sleep 1
state=$(check)
passed=0; failed=0
if [[ $state == ok* ]]; then
    read -r _ top dups hist <<<"$state"
    if (( hist > 0 )); then
        echo "ok mosquitto-outage: seq 1..$top all received ($dups duplicates, $hist marked hist)"
        passed=$((passed + 1))
    else
        echo "FAIL mosquitto-outage: no message was marked hist after a ${OUTAGE}s outage"
        failed=$((failed + 1))
    fi
else
    echo "FAIL mosquitto-outage: $state"
    tail -20 "$TMP/fieldgate.log"
    failed=$((failed + 1))
fi
echo "mosquitto-outage: $passed passed, $failed failed"
((failed == 0))
