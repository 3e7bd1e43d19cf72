#!/usr/bin/env bash
# The status page in a real browser (Debian's Chromium, driven by
# playwright-core), against a real gateway:
#
#   fieldgate sim  ->  fieldgate run (page on a free port)  ->  Mosquitto on 1883
#                            ^                                      |
#                   Chromium (headless)                      mosquitto_sub
#
# The page must show the devices, live tag values, a failing device's bad
# quality and an active alarm; acknowledging it asks for the token (a
# wrong one is refused and asked again) and the new state shows on the page
# and on MQTT; shelving then needs no second token. A writable setpoint is
# written through the page's dialog (a value out of range refused, Enter at
# the confirmation cancelling, then a real write, verified): the new value
# shows on the page and the result on MQTT. Screenshots (desktop, phone
# size, the write dialog) are kept under target/browser/ as CI artefacts.
#
# Installs chromium (apt) and playwright-core (npm, into target/browser/)
# when missing. Loopback only; every wait is bounded. The shared Mosquitto
# on 1883 is only subscribed and published to under a unique prefix.
#
#   bash tests/browser/run.sh
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET = /* ]] || TARGET=$ROOT/$TARGET
FG=$TARGET/debug/fieldgate
OUT=$TARGET/browser
PLAYWRIGHT_VERSION=1.64.1
export NO_COLOR=1

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $CHROMIUM ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
command -v mosquitto_sub >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto-clients >/dev/null; }
mkdir -p "$OUT"
if [[ ! -d $OUT/node_modules/playwright-core ]]; then
    npm install --silent --no-audit --no-fund --prefix "$OUT" "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
fi
[[ -x $FG ]] || cargo build --quiet

source tests/lib/processes.sh
TMP=$(mktemp -d /tmp/fieldgate-browser.XXXXXX)
cleanup() {
    stop_all
    [[ ${BROWSER_KEEP:-0} = 1 ]] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# Nothing will listen on DEAD_PORT: a failing device.
read -r SIM_PORT DEAD_PORT HTTP_PORT < <(free_ports 3)
GW_ID="browser-$$"
PREFIX="fieldgate-ci/browser/ci/$GW_ID"   # topic_prefix/site/id
TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
mkdir -p "$TMP/data"
printf '%s\n' "$TOKEN" > "$TMP/token"

cat > "$TMP/sim.toml" <<TOML
seed = 11
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:$SIM_PORT"
model = "pump"
points = [
  { signal = "bearing_temp", area = "input", address = 0, type = "f32" },
  { signal = "current", area = "input", address = 2, type = "u16", scale = 0.01 },
  { signal = "running", area = "holding", address = 0, type = "bit", bit = 0 },
  # A constant: what is written to it stays, as in a PLC's setpoint.
  { name = "setpoint", value = 40.0, area = "holding", address = 1, type = "u16", scale = 0.1 },
]
TOML

# The limit is below the pump's normal temperature: the alarm is active
# from the first poll.
cat > "$TMP/fieldgate.toml" <<TOML
[gateway]
id = "$GW_ID"
site = "ci"
data_dir = "$TMP/data"
shutdown_timeout = "5s"
[mqtt]
host = "127.0.0.1"
port = 1883
client_id = "fieldgate-$GW_ID"
topic_prefix = "fieldgate-ci/browser"
[store]
durability = "normal"
[http]
listen = "127.0.0.1:$HTTP_PORT"
allow_actions = true
token_file = "token"
[[devices]]
name = "pump"
tcp = "127.0.0.1:$SIM_PORT"
poll_interval = "500ms"
tags = [
  { name = "bearing_temp", area = "input", address = 0, type = "f32", unit = "degC" },
  { name = "current", area = "input", address = 2, type = "u16", scale = 0.01, unit = "A" },
  { name = "running", area = "holding", address = 0, type = "bit", bit = 0 },
  { name = "setpoint", area = "holding", address = 1, type = "u16", scale = 0.1, unit = "degC", writable = true, min = 20.0, max = 80.0 },
]
[[devices]]
name = "dead"
tcp = "127.0.0.1:$DEAD_PORT"
poll_interval = "1s"
timeout = "300ms"
tags = [{ name = "level", area = "holding", address = 0, unit = "cm" }]
[[rules]]
name = "bearing_hot"
tag = "pump.bearing_temp"
condition = "above"
limit = 1.0
priority = "high"
TOML

timeout -k 5 120 "$FG" sim -c "$TMP/sim.toml" > "$TMP/sim.log" 2>&1 &
PIDS+=($!)
wait_port "$SIM_PORT"
timeout -k 5 120 mosquitto_sub -h 127.0.0.1 -p 1883 -q 1 -v \
    -t "$PREFIX/alarms/bearing_hot" -t "$PREFIX/cmd/pump/setpoint/result" \
    > "$TMP/alarms.txt" 2> "$TMP/sub.log" &
PIDS+=($!)
timeout -k 5 120 "$FG" run -c "$TMP/fieldgate.toml" > "$TMP/fieldgate.log" 2>&1 &
PIDS+=($!)
wait_port "$HTTP_PORT"

status=0
timeout -k 5 90 node tests/browser/status_page.mjs \
    "http://127.0.0.1:$HTTP_PORT/" "$TOKEN" "$OUT" "$CHROMIUM" || status=$?

# The acknowledgement reached MQTT as any ack would (the retained alarm
# message moves to active_acked, then shelved).
mqtt_ok=0
for _ in $(seq 50); do
    if grep -q '"state":"active_acked"' "$TMP/alarms.txt" && grep -q '"state":"shelved"' "$TMP/alarms.txt"; then
        mqtt_ok=1; break
    fi
    sleep 0.1
done
if [[ $mqtt_ok = 1 ]]; then
    echo "ok: MQTT saw the alarm acknowledged and shelved ($PREFIX/alarms/bearing_hot)"
else
    echo "FAIL: MQTT did not see active_acked and shelved on $PREFIX/alarms/bearing_hot:" >&2
    cat "$TMP/alarms.txt" >&2
    status=1
fi
# The writes' results: the one the gateway refused (out of range, posted
# directly) and the one the page made, verified; the write cancelled with
# Enter at the confirmation sent nothing.
RESULTS="$PREFIX/cmd/pump/setpoint/result"
write_ok=0
for _ in $(seq 50); do
    if grep "^$RESULTS " "$TMP/alarms.txt" | grep '"result":"verified"' | grep -q '"read_back":42.5' \
        && grep "^$RESULTS " "$TMP/alarms.txt" | grep '"result":"rejected"' | grep -q '"reason":"out_of_range"'; then
        write_ok=1; break
    fi
    sleep 0.1
done
results=$(grep -c "^$RESULTS " "$TMP/alarms.txt" || true)
if [[ $write_ok = 1 && $results = 2 ]]; then
    echo "ok: MQTT saw the write refused (out_of_range), then verified (read back 42.5), nothing else ($RESULTS)"
else
    echo "FAIL: MQTT did not see exactly a rejected out_of_range and a verified 42.5 on $RESULTS ($results results):" >&2
    grep "^$RESULTS " "$TMP/alarms.txt" >&2 || true
    status=1
fi
# Stop the gateway, then clear the retained messages (status, alarm, work
# orders) this run left on the shared broker.
kill "${PIDS[2]}" 2>/dev/null || true
sleep 1
timeout 5 mosquitto_sub -h 127.0.0.1 -p 1883 -t "$PREFIX/#" --retained-only -W 2 -v 2>/dev/null \
    | cut -d' ' -f1 | sort -u | while read -r topic; do
        mosquitto_pub -h 127.0.0.1 -p 1883 -r -n -t "$topic" 2>/dev/null || true
    done || true

if [[ $status != 0 ]]; then
    echo "--- fieldgate log" >&2; tail -n 40 "$TMP/fieldgate.log" >&2
    exit "$status"
fi
echo "browser: passed (screenshots in $OUT)"
