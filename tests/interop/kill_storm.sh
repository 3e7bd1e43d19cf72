#!/usr/bin/env bash
# Kill storm: `fieldgate run` killed with SIGKILL at random moments and
# restarted at once, against Mosquitto with a persistent subscriber:
#
#   fieldgate sim  ->  fieldgate run (kill -9, restart, ...)  ->  mosquitto  ->  mosquitto_sub -c
#
# Three phases of equal length, each with a third of the kills at seeded
# random moments: steady state; the broker stopped (an outage: everything
# buffers in the outbox); the broker back (the backlog drains while the
# kills go on: half of them within 120 ms of each reconnection, while the
# backlog is on its way out). Then the gateway runs undisturbed until the backlog is
# gone, is stopped cleanly, and tests/interop/check_kill_storm.py checks
# what the subscriber received against the store left behind:
#
#   * no seq of any topic delivered with two different payloads (a reused
#     seq); the same payload twice is the allowed at-least-once;
#   * every seq from 1 to the store's last (`topic_seq`) was received or is
#     still in the outbox, except gaps that lie at a kill and are no longer
#     than what `flush_interval` plus a poll can hold; alarms and work
#     orders: no gap at all;
#   * per topic, first deliveries in order: live messages in increasing seq
#     for the life of each process, `hist` messages within each connection;
#   * the retained alarm of every rule equals its state in the store
#     (`fieldgate alarms --json`); every work order in the store
#     (`fieldgate workorders --json`) was received, its last version retained;
#   * the rules state is committed with the messages it produced: no alarm
#     change and no work-order version published twice under two seqs
#     (what a restart from an older saved state does).
#
# The device is polled every 100 ms with `durability = "full"` and the
# default `flush_interval`; a sawtooth drives one rule in and out of alarm
# all the time and short trips raise a work order each in every phase. The
# shared Mosquitto on 1883 is never touched; loopback only; every wait is
# bounded.
#
#   bash tests/interop/kill_storm.sh
#   KILLS=60 KILL_STORM_SEED=1234 KILL_STORM_KEEP=1 bash tests/interop/kill_storm.sh
#
# KILLS (default 30) is the number of kills; KILL_STORM_SEED (default:
# random, printed) replays a storm's kill moments (the gateway's own
# timing still varies); KILL_STORM_KEEP=1 keeps
# the temporary folder (logs, received messages, store). Ends with
# "kill-storm: N passed, M failed" and a non-zero exit on any failure.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET = /* ]] || TARGET=$ROOT/$TARGET
FG=$TARGET/debug/fieldgate
export NO_COLOR=1
KILLS=${KILLS:-30}
SEED=${KILL_STORM_SEED:-$(( $(date +%s%N) % 1000000 ))}
# The store's default group-commit interval (docs/configuration.md), which
# this test leaves at its default; and the poll interval below.
FLUSH_MS=100
POLL_MS=100

command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; }
command -v mosquitto_sub >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto-clients >/dev/null; }
[[ -x $FG ]] || cargo build --quiet

source tests/lib/processes.sh
TMP=$(mktemp -d /tmp/fieldgate-killstorm.XXXXXX)
FG_T=""
cleanup() {
    # The gateway and its `timeout`, if still running (not in PIDS: the
    # restarts would fill it with the ids of long-gone processes).
    local t
    if [[ -n $FG_T ]] && t=$(pgrep -P "$FG_T"); then
        kill -9 $(pgrep -P "$t") 2>/dev/null || true
        kill "$t" 2>/dev/null || true
    fi
    stop_all
    [[ ${KILL_STORM_KEEP:-0} = 1 ]] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# A failure before the checker can run: say what, show the log, end.
die() {
    echo "FAIL $*"
    grep -v '^===' "$TMP/fieldgate.log" 2>/dev/null | tail -20 || true
    echo "seed $SEED"
    echo "kill-storm: 0 passed, 1 failed"
    exit 1
}

echo "kill-storm: seed $SEED, $KILLS kills (replay: KILL_STORM_SEED=$SEED KILLS=$KILLS)"

read -r SIM_PORT MQ_PORT < <(free_ports 2)
mkdir -p "$TMP/mq" "$TMP/data"
# Mosquitto started as root drops to its own user: let it write its
# persistence file and log here.
chmod 0777 "$TMP" "$TMP/mq"

# Each phase lasts PHASE seconds (about 1.2 s a kill, at least 10 s);
# WARMUP seconds of plain running come first.
PER_PHASE=$(( (KILLS + 2) / 3 ))
PHASE=$(( PER_PHASE * 12 / 10 ))
(( PHASE >= 10 )) || PHASE=10
WARMUP=3

# Short trips of one register each, two per phase (a third and two thirds
# in): each raises a work order of its own rule. The gateway may happen to
# be down or starting through a whole trip; a trip it never saw raises
# nothing, which the check allows (it checks the work orders the store has).
TRIPS=6
events=""
for i in $(seq 0 $((TRIPS - 1))); do
    at=$(( WARMUP + (i / 2) * PHASE + (i % 2 + 1) * PHASE / 3 ))
    events+="
[[events]]
at = \"${at}s\"
device = \"plc\"
signal = \"t$((i + 1))\"
set = 1
for = \"2s\"
"
done

# Plain changing registers (the simulator's load pattern), each on its own
# topic too (per_tag_topics): a larger backlog to drain.
pattern_tags=""
for a in $(seq 10 19); do
    pattern_tags+="  { name = \"r$a\", area = \"holding\", address = $a },
"
done
trip_points=""
trip_tags=""
trip_rules=""
for i in $(seq 1 $TRIPS); do
    trip_points+="  { name = \"t$i\", value = 0, area = \"holding\", address = $i, type = \"u16\" },
"
    trip_tags+="  { name = \"t$i\", area = \"holding\", address = $i },
"
    trip_rules+="
[[rules]]
name = \"trip$i\"
tag = \"plc.t$i\"
condition = \"above\"
limit = 0.5
"
done

cat > "$TMP/sim.toml" <<TOML
seed = 7
tick = "100ms"
[[devices]]
name = "plc"
unit = 1
listen = "127.0.0.1:$SIM_PORT"
registers = 20
points = [
  { name = "saw", ramp = { from = 0.0, to = 100.0, period = "3s" }, area = "holding", address = 0, type = "u16" },
$trip_points]
$events
TOML

cat > "$TMP/fieldgate.toml" <<TOML
[gateway]
id = "storm"
site = "ci"
data_dir = "$TMP/data"
shutdown_timeout = "10s"
[mqtt]
host = "127.0.0.1"
port = $MQ_PORT
client_id = "fieldgate-killstorm-test"
per_tag_topics = true
[store]
durability = "full"
[http]
listen = ""
[[devices]]
name = "plc"
tcp = "127.0.0.1:$SIM_PORT"
poll_interval = "${POLL_MS}ms"
tags = [
  { name = "saw", area = "holding", address = 0 },
$trip_tags$pattern_tags]

# In and out of alarm every 3 s: chattering after the third activation,
# its work order raised once and updated at each activation.
[[rules]]
name = "saw_high"
tag = "plc.saw"
condition = "above"
limit = 50.0
$trip_rules
TOML

mosquitto_config "$TMP" "$MQ_PORT" "max_inflight_messages 100"

"$FG" check -c "$TMP/fieldgate.toml" > "$TMP/check.log" 2>&1 || { cat "$TMP/check.log"; die "the test's configuration"; }

BROKER=""
MQ_LIFETIME=600

# The gateway runs under `timeout` (so it ends even if this script does
# not), inside a subshell, so that bash has no job of its own killed by a
# signal to report; the kill goes to the gateway itself, the grandchild.
start_fg() {
    echo "=== start $(date +%s.%N)" >> "$TMP/fieldgate.log"
    (timeout -k 5 600 "$FG" run -c "$TMP/fieldgate.toml" >> "$TMP/fieldgate.log" 2>&1
     echo $? > "$TMP/fieldgate.rc") 2>/dev/null &
    FG_T=$!
}
fg_pid() {
    local t="" pid=""
    for _ in $(seq 200); do
        t=$(pgrep -P "$FG_T" || true)
        [[ -n $t ]] && pid=$(pgrep -P "$t" || true)
        [[ -n $pid ]] && { echo "$pid"; return 0; }
        sleep 0.01
    done
    return 1
}
NKILLED=0
kill_fg() {
    local pid
    # No gateway under its `timeout`: it ended by itself (a crash).
    pid=$(fg_pid) || die "the gateway ended before kill $((NKILLED + 1)) ($1)"
    kill -9 "$pid" 2>/dev/null || die "the gateway ended before kill $((NKILLED + 1)) ($1)"
    echo "$(date +%s.%N) $1" >> "$TMP/kills.txt"
    wait "$FG_T" 2>/dev/null || true
    NKILLED=$((NKILLED + 1))
    CONNECTS=$(connects)
    start_fg
}

# The kill moments of every phase, in ms from its start: PER_PHASE
# sorted moments in [0, PHASE s) per phase, one line per phase, drawn from
# the seed (so a storm can be replayed). The outage's backlog (a few
# thousand rows) goes out within about 100 ms of the reconnection (its
# deletions are committed a `flush_interval` after their PUBACKs), so the
# drain's first DRAIN_EARLY kills come 0-120 ms after the gateway (each
# time restarted) has connected: those moments start with `+`. The drain's
# other kills fall in [3 s, PHASE s).
DRAIN_EARLY=$(( PER_PHASE / 2 ))
MOMENTS=$(python3 -c '
import random, sys
seed, per, span, early = (int(a) for a in sys.argv[1:])
r = random.Random(seed)
print(*sorted(r.randrange(span) for _ in range(per)))
print(*sorted(r.randrange(span) for _ in range(per)))
print(*["+%d" % r.randrange(120) for _ in range(early)],
      *sorted(r.randrange(3000, span) for _ in range(per - early)))' \
    "$SEED" "$PER_PHASE" $((PHASE * 1000)) "$DRAIN_EARLY")
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
sleep_until() {
    local left=$(( $1 - $(now_ms) ))
    (( left > 0 )) && sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"
    return 0
}
# Kills at the moments of phase $1 (line $2 of MOMENTS), which began at
# $3 (epoch ms); returns at the end of the phase. A moment `+D` is D ms
# after the running gateway's connection to the broker (at most 5 s
# waited for).
connects() { grep -c 'connected to the MQTT broker' "$TMP/fieldgate.log" || true; }
CONNECTS=0
storm() {
    local phase=$1 start=$3 at
    for at in $(sed -n "${2}p" <<<"$MOMENTS"); do
        (( NKILLED < KILLS )) || break
        if [[ $at == +* ]]; then
            for _ in $(seq 500); do
                (( $(connects) > CONNECTS )) && break
                sleep 0.01
            done
            sleep_until $(( $(now_ms) + ${at#+} ))
        else
            sleep_until $((start + at))
        fi
        kill_fg "$phase"
    done
    sleep_until $((start + PHASE * 1000))
}

T0=$(now_ms)
timeout -k 5 600 "$FG" sim -c "$TMP/sim.toml" > "$TMP/sim.log" 2>&1 &
PIDS+=($!)
wait_port "$SIM_PORT"
start_broker
P=fieldgate/ci/storm
timeout -k 5 600 mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -c -i fg-killstorm-sub -q 1 \
    -F '%U %r %t %p' -t "$P/data/#" -t "$P/alarms/#" -t "$P/workorders/#" -t "$P/status" \
    > "$TMP/received.txt" 2> "$TMP/sub.log" &
PIDS+=($!)
sleep 0.5
: > "$TMP/kills.txt"
start_fg

S1=$(( T0 + WARMUP * 1000 ))
sleep_until "$S1"
echo "steady state: ${PHASE}s"
storm steady 1 "$S1"

echo "outage: broker stopped for ${PHASE}s (kills so far: $NKILLED)"
stop_broker
storm outage 2 "$(now_ms)"
CONNECTS=$(connects)
start_broker

echo "drain: broker back for ${PHASE}s (kills so far: $NKILLED)"
storm drain 3 "$(now_ms)"
echo "storm over: $NKILLED kills in $(( ($(now_ms) - S1) / 1000 ))s; draining"
# What each restart found in the outbox, per phase: a kill in the drain
# that leaves hundreds of rows hit the backlog on its way out.
awk 'NR == FNR { phase[NR] = $2; next }
     /^=== start/ { n++ }
     /outbox open/ && n > 1 && match($0, /rows=[0-9]+/) {
         rows[phase[n - 1]] = rows[phase[n - 1]] " " substr($0, RSTART + 5, RLENGTH - 5)
     }
     END { for (p in rows) print "  outbox rows at each restart, " p ":" rows[p] }' \
    "$TMP/kills.txt" "$TMP/fieldgate.log" | sort

# Let the backlog go: until the outbox holds no more than a few polls'
# worth (live rows come and go all the time). Bounded to 60 s.
outbox_rows() {
    python3 - "$TMP/data/fieldgate.db" <<'PY'
import sqlite3, sys
try:
    c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=5)
    print(c.execute("SELECT count(*) FROM outbox").fetchone()[0])
except sqlite3.Error:
    print(999999)
PY
}
rows=999999
for _ in $(seq 120); do
    rows=$(outbox_rows)
    (( rows < 100 )) && break
    sleep 0.5
done
echo "outbox down to $rows rows; stopping the gateway cleanly"
pid=$(fg_pid) || die "the gateway ended by itself after the storm"
kill -TERM "$pid"
for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && die "the gateway did not stop within 15 s of SIGTERM"
wait "$FG_T" || true
STOP_RC=$(cat "$TMP/fieldgate.rc")

# Until the subscriber has had nothing new for a second (at most 40 s).
last=-1
for _ in $(seq 40); do
    n=$(wc -l < "$TMP/received.txt")
    (( n == last )) && break
    last=$n
    sleep 1
done

"$FG" alarms --json --history 0 --store "$TMP/data/fieldgate.db" > "$TMP/alarms.json" 2> "$TMP/alarms.err" \
    || die "fieldgate alarms --json: $(cat "$TMP/alarms.err")"
"$FG" workorders --json --history 0 --store "$TMP/data/fieldgate.db" > "$TMP/workorders.json" 2> "$TMP/workorders.err" \
    || die "fieldgate workorders --json: $(cat "$TMP/workorders.err")"
# What a newcomer gets: the broker's retained messages.
timeout -k 2 15 mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -q 1 --retained-only -W 2 \
    -F '%U %r %t %p' -t "$P/alarms/#" -t "$P/workorders/#" > "$TMP/retained.txt" 2>/dev/null || true

status=0
python3 tests/interop/check_kill_storm.py \
    --received "$TMP/received.txt" --retained "$TMP/retained.txt" \
    --store "$TMP/data/fieldgate.db" --alarms "$TMP/alarms.json" \
    --workorders "$TMP/workorders.json" --kills "$TMP/kills.txt" \
    --prefix "$P" --flush-ms "$FLUSH_MS" --poll-ms "$POLL_MS" \
    --stop-rc "$STOP_RC" || status=$?
if (( status != 0 )); then
    echo "seed $SEED (replay: KILL_STORM_SEED=$SEED KILLS=$KILLS); errors in the gateway's log:"
    grep 'ERROR\|panicked' "$TMP/fieldgate.log" | tail -20 || echo "  (none)"
fi
exit "$status"
