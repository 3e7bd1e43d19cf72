#!/usr/bin/env bash
# Steps of the wall clock, as NTP makes them on a Raspberry Pi that booted
# without a real-time clock, against a running gateway:
#
#   fieldgate sim  ->  fieldgate run (under libfaketime)  ->  mosquitto (our own, on a free port)  ->  mosquitto_sub
#
# fieldgate runs with libfaketime preloaded (Debian `faketime`): its wall
# clock follows the offset written in a file (`+8d`, `-1y`), re-read at
# every call; its monotonic clock is left alone. The steps:
#
#   0 s   the broker is down; fieldgate polls and buffers (about 8 s)
#   8 s   the wall clock steps +8 days (past the outbox's max_age of 7 days)
#  11 s   the broker comes back
#         a 20 s shelf is put on an alarm over MQTT, then the wall clock
#         steps back a year (from +8 days to -1 year)
#
# What a user would check, with mosquitto_sub and /metrics:
#
#   clock-step-buffer   every data message buffered through the outage is
#                       delivered: seq 1..N of the device topic, none
#                       missing; nothing evicted (fieldgate_outbox_evicted_total
#                       stays 0, no eviction line in the log)
#   clock-step-age      after the +8 d step, fieldgate_outbox_oldest_age_seconds
#                       is the real wait of the oldest buffered message
#   clock-step-rules    a `stale` rule on a tag that keeps answering and an
#                       `above` rule whose 5 min on-delay has not run out
#                       never activate; no work order is published
#   clock-step-shelf    the shelf ends about 20 s of real time after it was
#                       put, though the wall clock went back a year meanwhile
#   clock-step-stamps   the stamps do follow the wall clock (live data after
#                       +8 d is stamped 8 days ahead, after -1 y a year
#                       back): the steps reached the gateway
#
# The shared Mosquitto on 1883 is never touched. Loopback only; every wait
# is bounded; about 45 s in all.
#
#   bash tests/interop/clock_step.sh
#
# Installs `faketime` (apt) when libfaketime is missing. Set CLOCK_KEEP=1 to
# keep the temp folder (configs, logs, what the subscriber received).
# Ends with "clock-step: N passed, M failed"; exits non-zero if any failed.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET = /* ]] || TARGET=$ROOT/$TARGET
FG=$TARGET/debug/fieldgate
export NO_COLOR=1
export DEBIAN_FRONTEND=noninteractive

# libfaketime's path depends on the architecture: ask dpkg, then look.
faketime_lib() {
    { dpkg -L libfaketime 2>/dev/null | grep '/libfaketime\.so\.1$' || true; } | head -n 1
}
if [[ -z $(faketime_lib) ]]; then
    apt-get update -qq </dev/null && apt-get install -y -qq faketime </dev/null >/dev/null
fi
LIBFAKETIME=$(faketime_lib)
if [[ -z $LIBFAKETIME ]]; then
    LIBFAKETIME=$(compgen -G '/usr/lib/*/faketime/libfaketime.so.1' | head -n 1 || true)
fi
[[ -n $LIBFAKETIME && -f $LIBFAKETIME ]] || { echo "clock-step: libfaketime not found" >&2; exit 1; }
command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; }
command -v mosquitto_sub >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto-clients >/dev/null; }
[[ -x $FG ]] || cargo build --quiet
# The interpreter itself, not a shim (pyenv's cost 0.2 s a call, and the
# waits below call it often).
PY=$(python3 -c 'import sys; print(sys.executable)')

source tests/lib/processes.sh
TMP=$(mktemp -d /tmp/fieldgate-clock.XXXXXX)
cleanup() {
    stop_all
    [[ ${CLOCK_KEEP:-0} = 1 ]] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

read -r SIM_PORT MQ_PORT HTTP_PORT < <(free_ports 3)
mkdir -p "$TMP/mq" "$TMP/data"
# Mosquitto started as root drops to its own user: let it write its
# persistence file and log here.
chmod 0777 "$TMP" "$TMP/mq"
PREFIX=fieldgate/ci/clock
OFFSET=$TMP/faketime.rc

# The offset libfaketime reads at every call: replaced whole (rename), so it
# never reads a half-written file.
set_offset() {
    printf '%s\n' "$1" > "$OFFSET.new"
    mv -f "$OFFSET.new" "$OFFSET"
    echo "wall clock of fieldgate: $1 (real $(date -u +%T))"
}
now() { date +%s.%N; }
# Seconds since $1 (a `now`), as a whole number.
since() { "$PY" -c 'import sys, time; print(int(time.time() - float(sys.argv[1])))' "$1"; }

# Holding 0..9 carry the simulator's changing pattern (r0, r1, r9); holding
# 20 is fixed at 100 (hot: above the limit of plc_hot, below plc_spare's).
cat > "$TMP/sim.toml" <<TOML
seed = 7
[[devices]]
name = "plc"
unit = 1
listen = "127.0.0.1:$SIM_PORT"
registers = 10
points = [
  { name = "hot", value = 100, area = "holding", address = 20, type = "u16" },
]
TOML

cat > "$TMP/fieldgate.toml" <<TOML
[gateway]
id = "clock"
site = "ci"
data_dir = "$TMP/data"
[mqtt]
host = "127.0.0.1"
port = $MQ_PORT
client_id = "fieldgate-clock-test"
[store]
durability = "normal"
max_age = "7d"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[[devices]]
name = "plc"
tcp = "127.0.0.1:$SIM_PORT"
poll_interval = "500ms"
tags = [
  { name = "r0", area = "holding", address = 0 },
  { name = "r1", area = "holding", address = 1 },
  { name = "hot", area = "holding", address = 20 },
]

# Answers every poll: a step of the wall clock must not make it stale.
[[rules]]
name = "plc_silent"
tag = "plc.r0"
condition = "stale"
after = "30s"

# Met from the first poll, but its on-delay outlasts the test: a step of
# the wall clock must not complete it.
[[rules]]
name = "plc_hot"
tag = "plc.hot"
condition = "above"
limit = 50.0
on_delay = "5m"

# Never met: shelved over MQTT for 20 s, then normal again.
[[rules]]
name = "plc_spare"
tag = "plc.hot"
condition = "above"
limit = 1000.0
TOML

mosquitto_config "$TMP" "$MQ_PORT"


# Waits (at most $1 seconds) until the command "${@:2}" succeeds.
wait_for() {
    local limit=$1 t
    shift
    t=$(now)
    until "$@"; do
        (($(since "$t") >= limit)) && return 1
        sleep 0.3
    done
}

"$FG" check -c "$TMP/fieldgate.toml" > "$TMP/check.log" 2>&1 || {
    cat "$TMP/check.log"
    echo "clock-step: the test's config was refused"
    exit 1
}

# The subscriber's persistent session (QoS 1, everything under the
# gateway's prefix) is made while the broker is up, so the broker queues
# for it what fieldgate publishes after the outage, even before
# mosquitto_sub has reconnected.
start_broker
timeout -k 5 300 mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -c -i fg-clock-sub -q 1 -v \
    -t "$PREFIX/#" > "$TMP/received.txt" 2> "$TMP/sub.log" &
PIDS+=($!)
subscribed() { grep -q 'fg-clock-sub' "$TMP/mosquitto.log" 2>/dev/null; }
wait_for 10 subscribed || { echo "clock-step: the subscriber never connected" >&2; exit 1; }
sleep 0.5
stop_broker
echo "broker down"

timeout -k 5 300 "$FG" sim -c "$TMP/sim.toml" > "$TMP/sim.log" 2>&1 &
PIDS+=($!)
wait_port "$SIM_PORT"
set_offset "+0"
timeout -k 5 300 env LD_PRELOAD="$LIBFAKETIME" FAKETIME_TIMESTAMP_FILE="$OFFSET" \
    FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1 \
    "$FG" run -c "$TMP/fieldgate.toml" > "$TMP/fieldgate.log" 2>&1 &
FG_PID=$!
PIDS+=("$FG_PID")
STARTED=$(date +%s)

sleep 8
set_offset "+8d"
# The outbox checks ages every second: give it a few checks with the
# broker still down (what evicted the whole buffer before).
sleep 3
# /metrics, or nothing (Python rather than curl: one tool fewer to
# install; no proxy, whatever the environment says).
scrape() {
    "$PY" -c 'import sys, urllib.request
try:
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    print(direct.open(sys.argv[1], timeout=5).read().decode())
except OSError:
    pass' "http://127.0.0.1:$HTTP_PORT/metrics"
}
# What an operator's alert reads: the age of the oldest waiting message is
# how long it has really waited (about 11 s), not 8 days.
metric() {
    printf '%s\n' "$1" | awk -v name="$2" '$1 == name || index($1, name "{") == 1 { n += $NF; seen = 1 } END { if (seen) print n; else print "none" }'
}
OUTAGE_METRICS=$(scrape)
OLDEST_AGE=$(metric "$OUTAGE_METRICS" fieldgate_outbox_oldest_age_seconds)
SYNCED=$(metric "$OUTAGE_METRICS" fieldgate_clock_synchronised)
start_broker
echo "broker back"

# What the subscriber holds, as one JSON summary (see the keys below).
summary() {
    "$PY" - "$TMP/received.txt" "$PREFIX" <<'PY'
import json, sys
from datetime import datetime
path, prefix = sys.argv[1], sys.argv[2]
data, alarms, workorders, status = [], {}, [], None
for line in open(path, errors="replace"):
    line = line.rstrip("\n")
    if not line.strip():
        continue
    topic, _, payload = line.partition(" ")
    rel = topic[len(prefix) + 1:] if topic.startswith(prefix + "/") else topic
    try:
        msg = json.loads(payload) if payload else None
    except ValueError:
        msg = {"unparsed": payload}
    if rel == "data/plc":
        data.append(msg)
    elif rel.startswith("alarms/") and rel.count("/") == 1:
        if msg:
            alarms.setdefault(rel.split("/")[1], []).append(msg)
    elif rel.startswith("workorders/") and rel.count("/") == 1:
        if msg:
            workorders.append(rel)
    elif rel == "status" and msg:
        status = msg.get("state")

def secs(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()

seqs = {m["seq"] for m in data if isinstance(m, dict) and "seq" in m}
top = max(seqs, default=0)
missing = [s for s in range(1, top + 1) if s not in seqs]
stamps = [secs(m["ts"]) for m in data if isinstance(m, dict) and "ts" in m]
# The latest state of each alarm: the highest seq on its topic (history and
# live messages may arrive out of order).
latest = {r: max(ms, key=lambda m: m.get("seq", 0)) for r, ms in alarms.items()}
print(json.dumps({
    "status": status,
    "data": len(data),
    "top": top,
    "missing": len(missing),
    "first_missing": missing[:5],
    "hist": sum(1 for m in data if isinstance(m, dict) and m.get("hist")),
    "unsynced": sum(1 for m in data if isinstance(m, dict) and m.get("clock") == "unsynced"),
    "max_ts": max(stamps, default=0),
    "min_ts": min(stamps, default=0),
    "ever_active": sorted(r for r, ms in alarms.items() if any(m.get("active") for m in ms)),
    "state": {r: m.get("state") for r, m in latest.items()},
    "cause": {r: m.get("cause") for r, m in latest.items()},
    "workorders": sorted(set(workorders)),
}))
PY
}
field() { summary | "$PY" -c 'import json, sys; v = json.load(sys.stdin)
for k in sys.argv[1:]: v = v.get(k) if isinstance(v, dict) else None
print(v)' "$@"; }

online() { [[ $(field status) == online ]]; }
wait_for 20 online || echo "fieldgate never reported online"
# The backlog: at least the polls of the outage (two a second for 11 s,
# give or take), every seq present.
drained() {
    local s
    s=$(summary)
    "$PY" -c 'import json, sys; s = json.loads(sys.argv[1]); sys.exit(0 if s["top"] >= 20 and s["missing"] == 0 and s["hist"] > 0 else 1)' "$s"
}
wait_for 20 drained || echo "the backlog did not drain in 20 s"
AFTER_STEP=$(summary)

# A 20 s shelf, then the wall clock back by a year (from +8 days).
SHELF_AT=$(now)
mosquitto_pub -h 127.0.0.1 -p "$MQ_PORT" -q 1 -t "$PREFIX/alarms/plc_spare/shelve" \
    -m '{"duration":"20s","by":"clock-step","note":"a shelf across a clock step"}'
shelved() { [[ $(field state plc_spare) == shelved ]]; }
if wait_for 10 shelved; then
    SHELVED=1
else
    SHELVED=0
    echo "plc_spare was never shelved"
fi
set_offset "-1y"
# The shelf ends 20 s after it was put, on the timeline; allow 40 s.
unshelved() { [[ $(field state plc_spare) != shelved ]]; }
SHELF_ENDED=
if ((SHELVED)) && wait_for 40 unshelved; then
    SHELF_ENDED=$(since "$SHELF_AT")
fi
# A little live data stamped after the step back.
sleep 2

METRICS=$(scrape)
kill "$FG_PID"; wait "$FG_PID" 2>/dev/null || true
sleep 1
FINAL=$(summary)
echo "after the +8d step: $AFTER_STEP"
echo "at the end:         $FINAL"

passed=0; failed=0
ok() { echo "ok $1: $2"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
get() { "$PY" -c 'import json, sys; v = json.loads(sys.argv[1])
for k in sys.argv[2:]: v = v.get(k) if isinstance(v, dict) else None
print(v)' "$FINAL" "$@"; }

# clock-step-buffer
top=$(get top); missing=$(get missing); hist=$(get hist)
evicted=$(metric "$METRICS" fieldgate_outbox_evicted_total)
evict_lines=$(grep -c 'evicted the oldest' "$TMP/fieldgate.log" || true)
if ((top >= 20 && missing == 0 && hist > 0)) && [[ $evicted == 0 ]] && ((evict_lines == 0)); then
    ok clock-step-buffer "seq 1..$top all delivered ($hist through the outage, marked hist), evicted_total 0, no eviction line"
else
    fail clock-step-buffer "max seq $top, $missing missing (first: $(get first_missing)), $hist hist, evicted_total $evicted, $evict_lines eviction lines"
    grep -i 'evict' "$TMP/fieldgate.log" | head -5 || true
fi

# clock-step-age
if [[ $OLDEST_AGE != none ]] && "$PY" -c 'import sys; sys.exit(0 if 5 <= float(sys.argv[1]) <= 60 else 1)' "$OLDEST_AGE"; then
    ok clock-step-age "after +8d, with the broker down, the oldest waiting message is ${OLDEST_AGE}s old (fieldgate_clock_synchronised $SYNCED)"
else
    fail clock-step-age "after +8d, with the broker down, fieldgate_outbox_oldest_age_seconds is $OLDEST_AGE (want the real wait, 5-60 s)"
fi

# clock-step-rules
active=$(get ever_active); wos=$(get workorders)
hot=$(get state plc_hot); silent=$(get state plc_silent)
if [[ $active == "[]" && $wos == "[]" && $hot == normal && $silent == normal ]]; then
    ok clock-step-rules "plc_silent (stale 30s) and plc_hot (on-delay 5m) stayed normal, no work order"
else
    fail clock-step-rules "ever active: $active; work orders: $wos; plc_hot $hot, plc_silent $silent"
fi

# clock-step-shelf
state=$(get state plc_spare); cause=$(get cause plc_spare)
if ((SHELVED)) && [[ -n $SHELF_ENDED ]] && ((SHELF_ENDED >= 15 && SHELF_ENDED <= 30)) \
    && [[ $state == normal && $cause == shelve_expired ]]; then
    ok clock-step-shelf "shelved for 20s, back to normal (shelve_expired) ${SHELF_ENDED}s later across a step of -1y"
else
    fail clock-step-shelf "shelved: $SHELVED; ended after: ${SHELF_ENDED:+${SHELF_ENDED}s}${SHELF_ENDED:-not within 40 s}; now $state ($cause)"
fi

# clock-step-stamps: the steps really reached fieldgate (else the rest
# proves nothing).
max_ts=$(get max_ts); min_ts=$(get min_ts)
if "$PY" -c 'import sys; s = int(sys.argv[3]); sys.exit(0 if float(sys.argv[1]) > s + 7 * 86400 and float(sys.argv[2]) < s - 300 * 86400 else 1)' \
    "$max_ts" "$min_ts" "$STARTED"; then
    ok clock-step-stamps "data stamped 8 days ahead after +8d and a year back after -1y ($(get unsynced) of $(get data) marked clock unsynced)"
else
    fail clock-step-stamps "stamps from $(date -u -d "@${min_ts%.*}" +%F) to $(date -u -d "@${max_ts%.*}" +%F); started $(date -u -d "@$STARTED" +%F): libfaketime did not step fieldgate's clock"
fi

if grep -q 'panicked' "$TMP/fieldgate.log"; then
    fail clock-step-panic "$(grep -m1 'panicked' "$TMP/fieldgate.log")"
fi
((failed == 0)) || tail -20 "$TMP/fieldgate.log"
echo "clock-step: $passed passed, $failed failed"
((failed == 0))
