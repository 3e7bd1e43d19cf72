#!/usr/bin/env bash
# fieldgate's Sparkplug B edge node read by a host that is not ours:
#
#   fieldgate demo (simulated plant, gateway)  ->  mosquitto (our own, on a free port)
#                                              ->  tests/interop/sparkplug_host.py
#                                                  (paho-mqtt 1.6 + pysparkplug 0.6.1)
#
# The host decodes every message with pysparkplug and checks the
# specification's rules (births before data, seq, bdSeq, aliases bound by
# the latest birth, no data of a dead device...; its docstring has the
# list). First the checker itself, then two runs of `fieldgate demo`
# (config/demo.toml turns Sparkplug on):
#
#   sparkplug-host-catches  tests/interop/sparkplug_bad_node.py breaks the
#                           rules (data before births, a seq gap, an unbound
#                           alias, data of a dead device, a wrong NDEATH
#                           bdSeq...): the host must fail, naming each
#   sparkplug-edge-node     births; data; pump2 drops off for 10 s (DDEATH)
#                           and comes back (DBIRTH); NCMD Node Control/Rebirth
#                           at 4 s and at 12 s (pump2 dead) answered by new
#                           births with the same bdSeq; the stop's NDEATH
#   sparkplug-primary-host  config/demo.toml plus primary_host_id: the host's
#                           STATE online -> births; offline 6 s later -> the
#                           node's NDEATH, nothing while offline; online 8 s
#                           later -> new session (bdSeq + 1), births, what
#                           waited decoded as is_historical; the stop's NDEATH
#
# Builds nothing: it runs the fieldgate binary .ci/run built (the newer of
# target/debug and target/release). Installs mosquitto (apt) when missing
# and a venv at target/sparkplug-venv with pysparkplug 0.6.1 and paho-mqtt
# 1.6.1 (pysparkplug pins paho 1.x, so the venv is its own), reused when
# present. The shared Mosquitto on 1883 is never touched. Loopback only;
# every wait is bounded; about 75 s.
#
#   bash tests/interop/sparkplug.sh
#
# Set SPARKPLUG_KEEP=1 to keep the temp folder (logs, config).
# Ends with "sparkplug: N passed, M failed"; exits non-zero if any failed.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/tests/interop
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET = /* ]] || TARGET=$ROOT/$TARGET
VENV=$TARGET/sparkplug-venv
PY=$VENV/bin/python
export NO_COLOR=1
export DEBIAN_FRONTEND=noninteractive
STARTED=$SECONDS

die() { printf 'sparkplug: %s\n' "$*" >&2; exit 1; }

FG=""
for f in "$TARGET/debug/fieldgate" "$TARGET/release/fieldgate"; do
    [[ -x $f ]] || continue
    [[ -z $FG || $f -nt $FG ]] && FG=$f
done
[[ -n $FG ]] || die "no fieldgate binary under $TARGET/{debug,release}: build it first (cargo build)"

command -v mosquitto >/dev/null ||
    { apt-get update -qq </dev/null && apt-get install -y -qq mosquitto </dev/null >/dev/null; }

venv_ok() {
    [[ -x $PY ]] && "$PY" - <<'EOF' >/dev/null 2>&1
import paho.mqtt, pysparkplug
assert pysparkplug.__version__ == "0.6.1", pysparkplug.__version__
assert paho.mqtt.__version__ == "1.6.1", paho.mqtt.__version__
EOF
}

if ! venv_ok; then
    echo "==> python venv at ${VENV#"$ROOT"/} with pysparkplug==0.6.1, paho-mqtt==1.6.1"
    rm -rf "$VENV"
    if ! timeout 300 python3 -m venv "$VENV" </dev/null; then
        # Debian's own python3 needs python3-venv for ensurepip.
        rm -rf "$VENV"
        timeout 600 apt-get update -qq </dev/null
        timeout 900 apt-get install -y -qq python3-venv </dev/null >/dev/null
        timeout 300 python3 -m venv "$VENV" </dev/null
    fi
    timeout 900 "$PY" -m pip install -q --disable-pip-version-check \
        "pysparkplug==0.6.1" "paho-mqtt==1.6.1" </dev/null
    venv_ok || die "the venv at $VENV does not import pysparkplug 0.6.1 with paho-mqtt 1.6.1"
fi

source tests/lib/processes.sh
TMP=$(mktemp -d /tmp/fieldgate-sparkplug.XXXXXX)
cleanup() {
    stop_all
    if [[ ${SPARKPLUG_KEEP:-0} = 1 ]]; then echo "sparkplug: kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT INT TERM

read -r MQ_PORT < <(free_ports 1)
mosquitto_config "$TMP" "$MQ_PORT"
start_broker
DEVICES=pump1,pump2,motor1,fan1

PASSED=0
FAILED=0

# start_host NAME TIMEOUT ARGS...: the host in the background (HOST: its
# pid), its output in $TMP/NAME.host.log; waits until it is subscribed.
start_host() {
    local name=$1 limit=$2 i
    shift 2
    timeout -k 5 $((limit + 15)) "$PY" -u "$HERE/sparkplug_host.py" \
        --broker "127.0.0.1:$MQ_PORT" --timeout "$limit" "$@" >"$TMP/$name.host.log" 2>&1 &
    HOST=$!
    PIDS+=("$HOST")
    for i in $(seq 100); do
        grep -q '^host: ready' "$TMP/$name.host.log" && return 0
        kill -0 "$HOST" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^host: ready' "$TMP/$name.host.log"
}

# stop_host: the host ends by itself a second after the last NDEATH it
# expects; if that never comes, it is stopped after 5 s (and says so).
# Returns its exit status.
stop_host() {
    local i
    for i in $(seq 50); do
        kill -0 "$HOST" 2>/dev/null || break
        sleep 0.1
    done
    kill -TERM "$HOST" 2>/dev/null || true
    wait "$HOST"
}

result() {
    if (($2)); then
        echo "PASS $1"
        PASSED=$((PASSED + 1))
    else
        local f
        for f in "$TMP/$1".*.log; do
            echo "---- ${f##*/} (last 40 lines)"
            tail -n 40 "$f"
        done
        FAILED=$((FAILED + 1))
    fi
}

# The checker first: a node that breaks the rules must fail the host,
# with each violation it committed named.
echo "==> sparkplug-host-catches"
ok=1
if ! start_host sparkplug-host-catches 15 --devices d1,d2 --ndeaths 1; then
    echo "FAIL sparkplug-host-catches: the host never got ready"
    ok=0
else
    "$PY" "$HERE/sparkplug_bad_node.py" "127.0.0.1:$MQ_PORT" >"$TMP/expected.txt" || ok=0
    if stop_host; then
        echo "FAIL sparkplug-host-catches: the host passed a node that breaks the rules"
        ok=0
    fi
    while read -r phrase; do
        grep -qF -- "$phrase" "$TMP/sparkplug-host-catches.host.log" ||
            { echo "FAIL sparkplug-host-catches: not reported: $phrase"; ok=0; }
    done <"$TMP/expected.txt"
    [[ -s $TMP/expected.txt ]] || ok=0
fi
result sparkplug-host-catches "$ok"

# run_case NAME DURATION DEMO_ARGS -- HOST_ARGS: the host first (it must
# see the first NBIRTH), then the demo for DURATION; passes when both end
# well.
run_case() {
    local name=$1 duration=$2 demo_args=() ok=1 rc
    shift 2
    while [[ $1 != -- ]]; do demo_args+=("$1"); shift; done
    shift
    echo "==> $name"
    if ! start_host "$name" $((duration + 25)) --devices "$DEVICES" "$@"; then
        echo "FAIL $name: the host never got ready"
        ok=0
    else
        rc=0
        timeout -k 5 $((duration + 30)) "$FG" demo --plain --duration "${duration}s" \
            --broker "127.0.0.1:$MQ_PORT" "${demo_args[@]}" >"$TMP/$name.demo.log" 2>&1 || rc=$?
        if ((rc != 0)); then
            echo "FAIL $name: fieldgate demo exited $rc"
            ok=0
        fi
        if ! stop_host; then
            echo "FAIL $name: the host found violations (or timed out)"
            ok=0
        fi
    fi
    sed -n '/^---- sparkplug host summary/,$p' "$TMP/$name.host.log"
    result "$name" "$ok"
}

run_case sparkplug-edge-node 34 -- \
    --rebirth-after 4,12 --expect-death pump2 --ndeaths 1

# The demo's configuration with a primary host: copied with its tag maps
# (read relative to the config file).
mkdir -p "$TMP/config"
cp -r config/tags "$TMP/config/"
sed '/^\[sparkplug\]/a primary_host_id = "scada"' config/demo.toml >"$TMP/config/demo.toml"
grep -q '^primary_host_id = "scada"' "$TMP/config/demo.toml" || die "could not add primary_host_id"
# Its [http] token_file, which the built-in demo writes itself.
(umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$TMP/config/demo.token")

run_case sparkplug-primary-host 28 -c "$TMP/config/demo.toml" -- \
    --primary scada --offline-after 6 --offline-for 8 --expect-historical --ndeaths 2

echo "sparkplug: took $((SECONDS - STARTED)) s"
echo "sparkplug: $PASSED passed, $FAILED failed"
((FAILED == 0))
