#!/usr/bin/env bash
# Interop tests: fieldgate against third-party Modbus peers, and a third-party
# Modbus client against fieldgate's simulator.
#
#   bash tests/interop/run.sh
#
#   pymodbus-tcp-read     fieldgate read  <- pymodbus TCP server (known values)
#   pymodbus-tcp-scan     fieldgate scan  <- pymodbus TCP server
#   pymodbus-tcp-errors   fieldgate read  <- exception 02 (hole), exception 04 (unit)
#   pymodbus-rtu-read     fieldgate read  <- pymodbus RTU server on a socat pty pair
#   pymodbus-rtu-scan     fieldgate scan  <- the same, over RTU
#   pymodbus-rtu-late     fieldgate run   <- pymodbus RTU server answering its first
#                           read late (issue #15 item 1), published to Mosquitto
#   pymodbus-tcp-write    fieldgate run   -> pymodbus TCP server: write commands
#   pymodbus-rtu-write      from Mosquitto (issue #19), results, `fieldgate
#                           writes`, the registers read back by pymodbus
#                           (check_writes.py); RTU with FC15/FC16 only
#   mbpoll-sim-holding    mbpoll          -> fieldgate sim -c config/sim/plant.toml
#   mbpoll-sim-floats       (a copy on a free port): holding registers, ABCD and
#   mbpoll-sim-bits         CDAB floats, coils and discrete inputs, a write,
#   mbpoll-sim-write-errors exceptions 02 and 0B
#
# Installs what it needs (as root, or with sudo): socat, mbpoll, mosquitto and
# mosquitto-clients from apt, a venv at target/interop-venv with pymodbus
# 3.16.1 and pyserial; both are reused when present. The Mosquitto is the
# test's own, on a free port (a system one on 1883 is never touched).
# Everything listens on 127.0.0.1 on free ports. Every background process runs
# under `timeout` and is killed by the EXIT trap.
# Set INTEROP_KEEP=1 to keep the temp folder (logs, configs) for a look, and
# INTEROP_ONLY="name ..." to run only those tests.
# Ends with "interop: N passed, M failed"; exits non-zero if any test failed.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/tests/interop
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET = /* ]] || TARGET=$ROOT/$TARGET
VENV=$TARGET/interop-venv
PY=$VENV/bin/python
FG=$TARGET/debug/fieldgate
export DEBIAN_FRONTEND=noninteractive
# fieldgate's logs go to stderr; ask for them without colours.
export NO_COLOR=1

say() { printf '==> %s\n' "$*"; }
die() { printf 'interop: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- installs --

SUDO=()
if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install packages"
    SUDO=(sudo -n)
fi

# Command and the Debian package that brings it.
DEBS=(socat:socat mbpoll:mbpoll mosquitto:mosquitto mosquitto_sub:mosquitto-clients)

install_debs() {
    local missing=() entry
    for entry in "${DEBS[@]}"; do
        command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
    done
    ((${#missing[@]} == 0)) && return 0
    say "apt-get install ${missing[*]}"
    timeout 600 "${SUDO[@]}" apt-get update -qq </dev/null
    timeout 900 "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null
    for entry in "${DEBS[@]}"; do
        command -v "${entry%%:*}" >/dev/null 2>&1 ||
            die "${entry%%:*} still missing after apt-get install ${entry#*:}"
    done
}

venv_ok() {
    [[ -x $PY ]] && "$PY" - <<'EOF' >/dev/null 2>&1
import pymodbus, serial
assert pymodbus.__version__ == "3.16.1", pymodbus.__version__
EOF
}

install_venv() {
    venv_ok && return 0
    say "python venv at ${VENV#"$ROOT"/} with pymodbus==3.16.1 and pyserial"
    if [[ ! -x $PY ]] || ! "$PY" -m pip --version >/dev/null 2>&1; then
        rm -rf "$VENV"
        if ! timeout 300 python3 -m venv "$VENV" </dev/null; then
            # Debian's own python3 needs python3-venv for ensurepip.
            rm -rf "$VENV"
            timeout 600 "${SUDO[@]}" apt-get update -qq </dev/null
            timeout 900 "${SUDO[@]}" apt-get install -y -qq python3-venv </dev/null >/dev/null
            timeout 300 python3 -m venv "$VENV" </dev/null
        fi
    fi
    timeout 900 "$PY" -m pip install -q --disable-pip-version-check \
        "pymodbus==3.16.1" pyserial </dev/null
    venv_ok || die "the venv at $VENV does not import pymodbus 3.16.1 and pyserial"
}

install_debs
install_venv

say "cargo build"
timeout 1800 cargo build --quiet </dev/null
[[ -x $FG ]] || die "no binary at $FG after cargo build"

# ------------------------------------------------------- background helpers --

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fieldgate-interop.XXXXXX")
BG_PIDS=()

stop_bg() {
    local pid
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BG_PIDS[@]}"; do
        # Bounded: every background process runs under `timeout -k`.
        wait "$pid" 2>/dev/null || true
    done
    BG_PIDS=()
}

cleanup() {
    local rc=$?
    stop_bg
    if [[ ${INTEROP_KEEP:-} == 1 ]]; then
        echo "interop: kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_bg NAME CMD...: run CMD in the background for at most 5 minutes, its
# output in $TMP/NAME.log; sets BG_PID.
start_bg() {
    local name=$1
    shift
    timeout -k 5 300 "$@" </dev/null >"$TMP/$name.log" 2>&1 &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
}

alive() { kill -0 "$1" 2>/dev/null; }

# holds_open PID FILE: PID or one of its children (PID may be `timeout`) has
# FILE open.
holds_open() {
    local pid fd
    for pid in "$1" $(cat "/proc/$1/task/$1/children" 2>/dev/null); do
        for fd in /proc/"$pid"/fd/*; do
            [[ $(readlink "$fd" 2>/dev/null) == "$2" ]] && return 0
        done
    done
    return 1
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# wait_port PID PORT LOG: up to 50 x 0.1 s for a listener on PORT.
wait_port() {
    local pid=$1 port=$2 log=$3 i
    for ((i = 0; i < 50; i++)); do
        port_open "$port" && return 0
        alive "$pid" || { fail_msg "process exited before listening on $port" "$log"; return 1; }
        sleep 0.1
    done
    fail_msg "nothing listens on 127.0.0.1:$port after 5 s" "$log"
    return 1
}

# --------------------------------------------------------------- reporting --

PASSED=0
FAILED=0
FAILED_NAMES=()
CUR=""

fail_msg() {
    printf 'FAIL %s: %s\n' "$CUR" "$1"
    local f
    shift
    for f in "$@"; do
        [[ -s $f ]] || continue
        printf -- '---- %s\n' "${f#"$TMP"/}"
        tail -n 60 "$f"
    done
    printf -- '----\n'
}

# run_test NAME FUNCTION: errexit does not apply inside a function called
# from a condition, so every test checks each step itself and returns 1.
run_test() {
    CUR=$1
    if [[ -n ${INTEROP_ONLY:-} && " $INTEROP_ONLY " != *" $1 "* ]]; then
        return 0
    fi
    if "$2"; then
        echo "ok $1"
        PASSED=$((PASSED + 1))
    else
        echo "not ok $1"
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$1")
    fi
}

# run NAME CMD...: run CMD (at most 30 s); stdout in $TMP/NAME.out, stderr in
# $TMP/NAME.out.err, both after the command line in $TMP/NAME.out.show; sets
# RC and OUT.
run() {
    local name=$1
    shift
    OUT=$TMP/$name.out
    RC=0
    timeout -k 5 30 "$@" </dev/null >"$OUT" 2>"$OUT.err" || RC=$?
    {
        printf '$'
        printf ' %q' "$@"
        printf '\n'
        cat "$OUT"
        [[ ! -s $OUT.err ]] || { echo "[stderr]"; cat "$OUT.err"; }
        echo "[exit code $RC]"
    } >"$OUT.show"
}

# expect_rc WANT [LOG...]: the last run's exit code.
expect_rc() {
    local want=$1
    shift
    [[ $RC == "$want" ]] && return 0
    fail_msg "exit code $RC, expected $want" "$OUT.show" "$@"
    return 1
}

# expect_row TAG VALUE QUALITY [LOG...]: in fieldgate read's table, the row
# of TAG has VALUE in column VALUE and QUALITY in column QUALITY.
expect_row() {
    local tag=$1 value=$2 quality=$3 row
    shift 3
    row=$(awk -v t="$tag" '$1 == t' "$OUT")
    if [[ -z $row ]]; then
        fail_msg "no row for tag $tag" "$OUT.show" "$@"
        return 1
    fi
    # The UNIT column is empty here, so the fields are TAG VALUE QUALITY ...
    if ! awk -v t="$tag" -v v="$value" -v q="$quality" \
        '$1 == t && $2 == v && $3 == q { found = 1 } END { exit !found }' "$OUT"; then
        fail_msg "tag $tag: expected value $value, quality $quality; row: $row" "$OUT.show" "$@"
        return 1
    fi
}

# The expected table of pymodbus_server.py, as fieldgate read prints it.
PYM_EXPECT=(
    "u 1234"
    "i -42"
    "f_abcd 21.5"
    "f_cdab 21.5"
    "big 123456789"
    'label "PUMP-01"'
    "in_f -3.25"
    "c0 true"
    "c1 false"
    "d0 true"
)

expect_pym_table() {
    local line rows
    for line in "${PYM_EXPECT[@]}"; do
        # shellcheck disable=SC2086 # "TAG VALUE" splits in two
        expect_row $line good "$@" || return 1
    done
    rows=$(awk 'NR > 1 && NF' "$OUT" | wc -l)
    if [[ $rows != "${#PYM_EXPECT[@]}" ]]; then
        fail_msg "expected ${#PYM_EXPECT[@]} tag rows, got $rows" "$OUT.show" "$@"
        return 1
    fi
}

# config SRC DST PORT: a copy of SRC with the chosen port (for 127.0.0.1:15502
# and `port = 15502`) and temp folder.
config() {
    sed -e "s|127\.0\.0\.1:15502|127.0.0.1:$3|g" -e "s|^port = 15502\$|port = $3|" \
        -e "s|/tmp/fieldgate-interop|$TMP|g" "$HERE/$1" >"$TMP/$2"
}

# ------------------------------------------------- pymodbus over Modbus TCP --

PYM_TCP_PID=""
PYM_TCP_PORT=""

start_pymodbus_tcp() {
    PYM_TCP_PORT=$(free_port)
    start_bg pymodbus-tcp "$PY" "$HERE/pymodbus_server.py" --tcp "$PYM_TCP_PORT"
    PYM_TCP_PID=$BG_PID
    wait_port "$PYM_TCP_PID" "$PYM_TCP_PORT" "$TMP/pymodbus-tcp.log" || return 1
    config pymodbus-tcp.toml tcp.toml "$PYM_TCP_PORT"
    config pymodbus-tcp-errors.toml tcp-errors.toml "$PYM_TCP_PORT"
}

pym_tcp_up() {
    if [[ -n $PYM_TCP_PID ]] && alive "$PYM_TCP_PID"; then
        return 0
    fi
    start_pymodbus_tcp
}

test_pymodbus_tcp_read() {
    pym_tcp_up || return 1
    run check-tcp "$FG" check -c "$TMP/tcp.toml"
    expect_rc 0 || return 1
    run read-tcp "$FG" read -c "$TMP/tcp.toml" pym
    expect_rc 0 "$TMP/pymodbus-tcp.log" || return 1
    expect_pym_table "$TMP/pymodbus-tcp.log"
}

test_pymodbus_tcp_scan() {
    pym_tcp_up || return 1
    run scan-tcp "$FG" scan --tcp "127.0.0.1:$PYM_TCP_PORT" --unit 1 --area holding \
        --range 0-19 --rate 200
    expect_rc 0 "$TMP/pymodbus-tcp.log" || return 1
    if ! awk '$1 == "2" && $2 == "41AC" { f = 1 } END { exit !f }' "$OUT"; then
        fail_msg "no row for address 2 with 41AC" "$OUT.show"
        return 1
    fi
    if ! awk '$1 == "1" && $2 == "FFD6" && $4 == "-42" { f = 1 } END { exit !f }' "$OUT"; then
        fail_msg "no row for address 1 with FFD6 and i16 -42" "$OUT.show"
        return 1
    fi
    # Holding 50-59 are a hole in the server's map: scan reports it and
    # still lists what answers on both sides of it.
    run scan-tcp-hole "$FG" scan --tcp "127.0.0.1:$PYM_TCP_PORT" --unit 1 --area holding \
        --range 40-69 --rate 200
    expect_rc 0 "$TMP/pymodbus-tcp.log" || return 1
    if ! grep -q '50-59.*exception 2' "$OUT" ||
        ! awk '$1 == "49" { a = 1 } $1 == "60" { b = 1 } $1 == "55" { c = 1 }
               END { exit !(a && b && !c) }' "$OUT"; then
        fail_msg "expected rows 40-49 and 60-69 and \"refused 50-59: exception 2\"" "$OUT.show"
        return 1
    fi
}

test_pymodbus_tcp_errors() {
    pym_tcp_up || return 1
    run read-holes "$FG" read -c "$TMP/tcp-errors.toml" holes
    expect_rc 1 "$TMP/pymodbus-tcp.log" || return 1
    expect_row h45 0 good || return 1
    expect_row in_hole - bad:exception:2 || return 1
    expect_row h62 0 good || return 1
    run read-nounit "$FG" read -c "$TMP/tcp-errors.toml" nounit
    expect_rc 1 "$TMP/pymodbus-tcp.log" || return 1
    expect_row u - bad:exception:4 || return 1
}

# ----------------------------------- pymodbus over RTU on a socat pty pair --

# start_pty_pair LOG A B: socat links a pty pair at $TMP/A and $TMP/B (up to
# 5 s), its output in $TMP/LOG.log.
start_pty_pair() {
    local log=$1 a=$TMP/$2 b=$TMP/$3 i
    start_bg "$log" socat -d -d "pty,raw,echo=0,link=$a" "pty,raw,echo=0,link=$b"
    local pid=$BG_PID
    for ((i = 0; i < 50; i++)); do
        [[ -e $a && -e $b ]] && return 0
        alive "$pid" || break
        sleep 0.1
    done
    fail_msg "socat made no pty pair at $a, $b in 5 s" "$TMP/$log.log"
    return 1
}

# wait_opened PID PATH LOG...: until PID holds the pty behind PATH open (up to
# 50 x 0.1 s): a serial server is ready then.
wait_opened() {
    local pid=$1 target i
    target=$(readlink -f "$2")
    shift 2
    for ((i = 0; i < 50; i++)); do
        holds_open "$pid" "$target" && return 0
        alive "$pid" || break
        sleep 0.1
    done
    fail_msg "the server did not open $target in 5 s" "$@"
    return 1
}

RTU_READY=""

start_rtu() {
    start_pty_pair socat ttyA ttyB || return 1
    start_bg pymodbus-rtu "$PY" "$HERE/pymodbus_server.py" --serial "$TMP/ttyA" --baud 19200
    wait_opened "$BG_PID" "$TMP/ttyA" "$TMP/pymodbus-rtu.log" "$TMP/socat.log" || return 1
    config pymodbus-rtu.toml rtu.toml 0
    RTU_READY=1
}

test_pymodbus_rtu_read() {
    [[ -n $RTU_READY ]] || start_rtu || return 1
    run check-rtu "$FG" check -c "$TMP/rtu.toml"
    expect_rc 0 || return 1
    run read-rtu "$FG" read -c "$TMP/rtu.toml" pym
    expect_rc 0 "$TMP/pymodbus-rtu.log" "$TMP/socat.log" || return 1
    expect_pym_table "$TMP/pymodbus-rtu.log" "$TMP/socat.log"
}

test_pymodbus_rtu_scan() {
    [[ -n $RTU_READY ]] || start_rtu || return 1
    run scan-rtu "$FG" scan --serial "$TMP/ttyB" --baud 19200 --parity none --stop-bits 1 \
        --unit 1 --area holding --range 0-11 --rate 200
    expect_rc 0 "$TMP/pymodbus-rtu.log" || return 1
    if ! awk '$1 == "2" && $2 == "41AC" { a = 1 } $1 == "8" && $2 == "5055" { b = 1 }
              END { exit !(a && b) }' "$OUT"; then
        fail_msg "expected rows 2 = 41AC and 8 = 5055" "$OUT.show" "$TMP/pymodbus-rtu.log"
        return 1
    fi
    run scan-rtu-coils "$FG" scan --serial "$TMP/ttyB" --baud 19200 --parity none \
        --unit 1 --area coil --range 0-7 --rate 200
    expect_rc 0 "$TMP/pymodbus-rtu.log" || return 1
    if ! awk '$1 == "0" && $2 == "1" { a = 1 } $1 == "1" && $2 == "0" { b = 1 }
              END { exit !(a && b) }' "$OUT"; then
        fail_msg "expected coil 0 = 1 and coil 1 = 0" "$OUT.show" "$TMP/pymodbus-rtu.log"
        return 1
    fi
}

# Issue #15 item 1 against a third-party device, in the poll loop: three f32
# tags read as three requests of the same shape; pymodbus answers the first
# read of address 0 after 450 ms, past fieldgate's 300 ms timeout. Before the
# fix the late answer stayed in the tty buffer and every later poll published
# a = 3.0, b = 1.0, c = 2.0, all good. Now: over ~10 s of `fieldgate run`,
# every good reading is its own register's value, the late poll is
# bad:timeout, and the polls after it are good.
test_pymodbus_rtu_late() {
    local mq_port mq_pid sub_pid i sub_id=interop-late-sub topic=fieldgate/ci/late/data/dev
    start_pty_pair socat-late ttyC ttyD || return 1
    start_bg pymodbus-late "$PY" "$HERE/pymodbus_late.py" --serial "$TMP/ttyC" --baud 9600 --late-ms 450
    wait_opened "$BG_PID" "$TMP/ttyC" "$TMP/pymodbus-late.log" "$TMP/socat-late.log" || return 1

    # The test's own broker, and a subscriber ready before fieldgate starts.
    mq_port=$(free_port)
    mkdir -p "$TMP/mq-late"
    cat >"$TMP/mq-late/mosquitto.conf" <<CONF
listener $mq_port 127.0.0.1
allow_anonymous true
persistence false
log_dest stdout
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
CONF
    # Started as root, Mosquitto drops to its own user: let it read here.
    chmod 0755 "$TMP" "$TMP/mq-late"
    chmod 0644 "$TMP/mq-late/mosquitto.conf"
    # Line-buffered, so its log shows the subscription as it happens.
    start_bg mosquitto-late stdbuf -oL mosquitto -c "$TMP/mq-late/mosquitto.conf"
    mq_pid=$BG_PID
    wait_port "$mq_pid" "$mq_port" "$TMP/mosquitto-late.log" || return 1
    start_bg late-sub mosquitto_sub -h 127.0.0.1 -p "$mq_port" -q 1 -i "$sub_id" -t "$topic" -F '%p'
    sub_pid=$BG_PID
    for ((i = 0; i < 50; i++)); do
        grep -q "$sub_id 1 $topic" "$TMP/mosquitto-late.log" 2>/dev/null && break
        alive "$sub_pid" || break
        sleep 0.1
    done
    if ((i == 50)) || ! alive "$sub_pid"; then
        fail_msg "mosquitto_sub did not subscribe to $topic in 5 s" "$TMP/late-sub.log" "$TMP/mosquitto-late.log"
        return 1
    fi

    config pymodbus-rtu-late.toml late.toml "$mq_port"
    run check-late "$FG" check -c "$TMP/late.toml"
    expect_rc 0 || return 1
    # 10 s of polling, then SIGTERM: a clean stop exits 0.
    run late-run timeout --preserve-status -s TERM -k 5 10 "$FG" run -c "$TMP/late.toml"
    expect_rc 0 "$TMP/pymodbus-late.log" || return 1
    # Everything was published before fieldgate exited; give the subscriber
    # a moment to write the last of it.
    sleep 1
    kill "$sub_pid" 2>/dev/null || true
    wait "$sub_pid" 2>/dev/null || true
    if ! grep -q "answering the read of address 0 after 450 ms" "$TMP/pymodbus-late.log"; then
        fail_msg "pymodbus never answered late: the scenario did not happen" "$TMP/pymodbus-late.log" "$OUT.show"
        return 1
    fi
    if ! "$PY" "$HERE/check_late_polls.py" "$TMP/late-sub.log" >"$TMP/late-check.out" 2>&1; then
        fail_msg "published readings" "$TMP/late-check.out" "$OUT.show" "$TMP/pymodbus-late.log"
        return 1
    fi
    sed 's/^/    /' "$TMP/late-check.out"
}

# ---------------------------------------- write-back against pymodbus (#19) --

# start_mosquitto NAME: the test's own broker on a free port (MQ_PORT, MQ_PID),
# its config in $TMP/NAME/ and its log (subscriptions too) in $TMP/NAME.log.
start_mosquitto() {
    local name=$1
    MQ_PORT=$(free_port)
    mkdir -p "$TMP/$name"
    cat >"$TMP/$name/mosquitto.conf" <<CONF
listener $MQ_PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest stdout
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
CONF
    # Started as root, Mosquitto drops to its own user: let it read here.
    chmod 0755 "$TMP" "$TMP/$name"
    chmod 0644 "$TMP/$name/mosquitto.conf"
    start_bg "$name" stdbuf -oL mosquitto -c "$TMP/$name/mosquitto.conf"
    MQ_PID=$BG_PID
    wait_port "$MQ_PID" "$MQ_PORT" "$TMP/$name.log"
}

# wait_subscribed MQLOG CLIENT PID TOPIC LOG...: until Mosquitto logged a
# subscription of CLIENT to a filter starting with TOPIC (up to 100 x 0.1 s),
# while PID lives.
wait_subscribed() {
    local mqlog=$1 client=$2 pid=$3 topic=$4 i
    shift 4
    for ((i = 0; i < 100; i++)); do
        grep -qF " $client 1 $topic" "$mqlog" 2>/dev/null && return 0
        grep -qF " $client 2 $topic" "$mqlog" 2>/dev/null && return 0
        alive "$pid" || break
        sleep 0.1
    done
    fail_msg "$client did not subscribe to $topic... in 10 s" "$mqlog" "$@"
    return 1
}

# Write-back through MQTT to pymodbus, KIND tcp or rtu: pymodbus (a server
# of its own, -v so that its log shows every request) gets known values
# first; fieldgate run takes the commands of check_writes.py from our
# Mosquitto, publishes a result for each, records them; then check_writes.py
# checks the results, `fieldgate writes --json` (read while the gateway
# runs), the raw registers and coil read by a pymodbus client of its own,
# and the function codes on the wire. About 5 s.
write_test() {
    local kind=$1 gw=w$1 cfg pym_log conn=() port fg_pid sub_pid n got i rc topic payload
    local base="fieldgate/ci/w$1" client="fieldgate-interop-w$1"
    pym_log=$TMP/pymodbus-$gw.log
    if [[ $kind == tcp ]]; then
        port=$(free_port)
        start_bg "pymodbus-$gw" "$PY" "$HERE/pymodbus_server.py" --tcp "$port" -v
        wait_port "$BG_PID" "$port" "$pym_log" || return 1
        conn=(--tcp "$port")
    else
        start_pty_pair "socat-$gw" ttyE ttyF || return 1
        start_bg "pymodbus-$gw" "$PY" "$HERE/pymodbus_server.py" --serial "$TMP/ttyE" --baud 19200 -v
        wait_opened "$BG_PID" "$TMP/ttyE" "$pym_log" "$TMP/socat-$gw.log" || return 1
        # The pty's master end: prepare and check use it while fieldgate
        # does not.
        conn=(--serial "$TMP/ttyF" --baud 19200)
    fi
    run "$gw-prepare" "$PY" "$HERE/check_writes.py" prepare "${conn[@]}"
    expect_rc 0 "$pym_log" || return 1

    start_mosquitto "mosquitto-$gw" || return 1
    config "pymodbus-$kind-write.toml" "$gw.toml" "$MQ_PORT"
    cfg=$TMP/$gw.toml
    [[ $kind != tcp ]] || sed -i "s|127\.0\.0\.1:15503|127.0.0.1:$port|" "$cfg"
    run "$gw-check" "$FG" check -c "$cfg"
    expect_rc 0 || return 1

    # The results' subscriber, ready before fieldgate starts.
    start_bg "$gw-results" stdbuf -oL mosquitto_sub -h 127.0.0.1 -p "$MQ_PORT" -q 1 \
        -i "interop-$gw-sub" -v -t "$base/cmd/+/+/result"
    sub_pid=$BG_PID
    wait_subscribed "$TMP/mosquitto-$gw.log" "interop-$gw-sub" "$sub_pid" "$base/cmd/+/+/result" \
        "$TMP/$gw-results.log" || return 1

    start_bg "$gw-run" "$FG" run -c "$cfg"
    fg_pid=$BG_PID
    # A command published before the gateway subscribed would be lost.
    wait_subscribed "$TMP/mosquitto-$gw.log" "$client" "$fg_pid" "$base/cmd/" "$TMP/$gw-run.log" || return 1

    n=0
    while IFS=$'\t' read -r topic payload; do
        n=$((n + 1))
        run "$gw-pub-$n" mosquitto_pub -h 127.0.0.1 -p "$MQ_PORT" -q 1 -i "interop-$gw-pub" \
            -t "$base/cmd/$topic" -m "$payload"
        expect_rc 0 "$TMP/mosquitto-$gw.log" || return 1
    done < <("$PY" "$HERE/check_writes.py" commands)
    ((n > 0)) || { fail_msg "check_writes.py commands listed no command"; return 1; }

    # Each command's result, through the outbox: up to 15 s for all.
    for ((i = 0; i < 150; i++)); do
        got=$(grep -c '/result {' "$TMP/$gw-results.log" 2>/dev/null) || true
        ((${got:-0} >= n)) && break
        alive "$fg_pid" || break
        sleep 0.1
    done
    if ((i == 150)) || ! alive "$fg_pid"; then
        fail_msg "expected $n results on $base/cmd/+/+/result" "$TMP/$gw-results.log" "$TMP/$gw-run.log" "$pym_log"
        return 1
    fi

    # The record, read while the gateway runs (the store read-only).
    run "$gw-writes" "$FG" writes --json -c "$cfg"
    expect_rc 0 "$TMP/$gw-run.log" || return 1
    cp "$OUT" "$TMP/$gw-writes.json"

    # SIGTERM (timeout passes it on): a clean stop exits 0.
    kill "$fg_pid" 2>/dev/null || true
    rc=0
    wait "$fg_pid" 2>/dev/null || rc=$?
    if ((rc != 0)); then
        fail_msg "fieldgate run exited $rc after SIGTERM, expected 0" "$TMP/$gw-run.log"
        return 1
    fi
    kill "$sub_pid" 2>/dev/null || true
    wait "$sub_pid" 2>/dev/null || true

    run "$gw-verify" "$PY" "$HERE/check_writes.py" check "${conn[@]}" \
        --results "$TMP/$gw-results.log" --writes "$TMP/$gw-writes.json" \
        --server-log "$pym_log" --functions "$kind"
    if [[ $RC != 0 ]]; then
        fail_msg "write-back" "$OUT.show" "$TMP/$gw-results.log" "$TMP/$gw-writes.json" "$TMP/$gw-run.log"
        return 1
    fi
    sed 's/^/    /' "$OUT"
}

test_pymodbus_tcp_write() { write_test tcp; }
test_pymodbus_rtu_write() { write_test rtu; }

# ------------------------------------------ mbpoll against fieldgate's sim --

SIM_PID=""
SIM_PORT=""

start_sim() {
    if ! "$FG" sim --help >/dev/null 2>&1; then
        fail_msg "fieldgate has no sim subcommand ($FG sim --help failed)"
        return 1
    fi
    # config/sim/plant.toml listens on 127.0.0.1:5020; a copy on a free port
    # keeps the test clear of anything else using 5020.
    SIM_PORT=$(free_port)
    sed "s|127\.0\.0\.1:5020|127.0.0.1:$SIM_PORT|g" "$ROOT/config/sim/plant.toml" >"$TMP/plant.toml"
    if ! grep -q "127.0.0.1:$SIM_PORT" "$TMP/plant.toml"; then
        fail_msg "config/sim/plant.toml no longer listens on 127.0.0.1:5020; update run.sh"
        return 1
    fi
    start_bg sim "$FG" sim -c "$TMP/plant.toml"
    SIM_PID=$BG_PID
    wait_port "$SIM_PID" "$SIM_PORT" "$TMP/sim.log"
}

# mb NAME MBPOLL-OPTIONS...: one mbpoll read of the sim, 0-based references.
mb() {
    local name=$1
    shift
    run "$name" mbpoll -m tcp -p "$SIM_PORT" -0 -1 -o 1 "$@" 127.0.0.1
}

# mb_write NAME UNIT REF VALUE: mbpoll writes one holding register.
mb_write() {
    run "$1" mbpoll -m tcp -p "$SIM_PORT" -0 -1 -o 1 -a "$2" -t 4 -r "$3" 127.0.0.1 "$4"
}

# mb_value REF: the value mbpoll printed for reference REF ("[REF]: <tab>V").
mb_value() {
    awk -v r="[$1]:" '$1 == r { print $2; exit }' "$OUT"
}

# expect_mb REF WANT: mbpoll printed WANT for REF.
expect_mb() {
    local got
    got=$(mb_value "$1")
    [[ $got == "$2" ]] && return 0
    fail_msg "mbpoll [$1]: got '${got}', expected '$2'" "$OUT.show" "$TMP/sim.log"
    return 1
}

# expect_mb_range REF LOW HIGH: mbpoll printed a number in [LOW, HIGH] for REF.
expect_mb_range() {
    local got
    got=$(mb_value "$1")
    if [[ -n $got ]] && awk -v v="$got" -v lo="$2" -v hi="$3" \
        'BEGIN { exit !(v ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ && v + 0 >= lo && v + 0 <= hi) }'; then
        return 0
    fi
    fail_msg "mbpoll [$1]: got '${got}', expected a number in $2..$3" "$OUT.show" "$TMP/sim.log"
    return 1
}

sim_up() {
    if [[ -n $SIM_PID ]] && alive "$SIM_PID"; then
        return 0
    fi
    start_sim
}

# Holding registers of every unit: status word and the asset tag string.
test_mbpoll_sim_holding() {
    sim_up || return 1
    local unit hex
    for unit in 1 2 3; do
        mb "mb-holding-$unit" -a "$unit" -t 4:hex -r 0 -c 5
        expect_rc 0 "$TMP/sim.log" || return 1
        # status: bit 0 running, bit 1 fault; nothing else.
        hex=$(mb_value 0)
        if [[ ! $hex =~ ^0x000[0-3]$ ]]; then
            fail_msg "unit $unit status word: got '$hex', expected 0x0000-0x0003" "$OUT.show"
            return 1
        fi
    done
    # "PUMP-001" / "PUMP-002" / "MOTOR-01": two ASCII characters a register.
    mb mb-asset-1 -a 1 -t 4:hex -r 1 -c 4
    expect_rc 0 "$TMP/sim.log" || return 1
    expect_mb 1 0x5055 && expect_mb 2 0x4D50 && expect_mb 3 0x2D30 && expect_mb 4 0x3031 || return 1
    mb mb-asset-2 -a 2 -t 4:hex -r 1 -c 4
    expect_rc 0 "$TMP/sim.log" || return 1
    expect_mb 4 0x3032 || return 1
    mb mb-asset-3 -a 3 -t 4:hex -r 1 -c 4
    expect_rc 0 "$TMP/sim.log" || return 1
    expect_mb 1 0x4D4F && expect_mb 2 0x544F && expect_mb 3 0x522D && expect_mb 4 0x3031 || return 1
    # pressure setpoint: 4.5 bar at scale 0.1.
    mb mb-setpoint -a 1 -t 4 -r 10 -c 1
    expect_rc 0 "$TMP/sim.log" || return 1
    expect_mb 10 45
}

# Input register floats: ABCD on the pumps (mbpoll -B), CDAB on the motor
# (mbpoll's default word order).
test_mbpoll_sim_floats() {
    sim_up || return 1
    local unit
    for unit in 1 2; do
        mb "mb-float-$unit" -a "$unit" -t 3:float -B -r 0 -c 2
        expect_rc 0 "$TMP/sim.log" || return 1
        expect_mb_range 0 10 150 || return 1 # bearing temperature, degC
        expect_mb_range 2 0 50 || return 1   # vibration, mm/s
    done
    # Read with the wrong word order, these would be ~1e-40 or ~1e+30.
    mb mb-float-3 -a 3 -t 3:float -r 0 -c 2
    expect_rc 0 "$TMP/sim.log" || return 1
    expect_mb_range 0 10 150 || return 1
    expect_mb_range 2 0 50 || return 1
    # u16 current x 0.01 A and pressure x 0.01 bar: plain registers.
    mb mb-input-1 -a 1 -t 3 -r 4 -c 2
    expect_rc 0 "$TMP/sim.log" || return 1
    expect_mb_range 4 100 10000 || return 1 # 1-100 A
    expect_mb_range 5 1 2000 || return 1    # 0.01-20 bar
}

# Coil 0 (running) and discrete input 0 (fault) agree with the status word.
test_mbpoll_sim_bits() {
    sim_up || return 1
    local unit status coil discrete
    for unit in 1 3; do
        mb "mb-status-$unit" -a "$unit" -t 4 -r 0 -c 1
        expect_rc 0 "$TMP/sim.log" || return 1
        status=$(mb_value 0)
        mb "mb-coil-$unit" -a "$unit" -t 0 -r 0 -c 1
        expect_rc 0 "$TMP/sim.log" || return 1
        coil=$(mb_value 0)
        mb "mb-discrete-$unit" -a "$unit" -t 1 -r 0 -c 1
        expect_rc 0 "$TMP/sim.log" || return 1
        discrete=$(mb_value 0)
        if [[ ! $status =~ ^[0-3]$ || $coil != $((status & 1)) || $discrete != $(((status >> 1) & 1)) ]]; then
            fail_msg "unit $unit: status $status, coil 0 = $coil, discrete 0 = $discrete disagree" \
                "$TMP/mb-status-$unit.out.show" "$TMP/mb-coil-$unit.out.show" "$TMP/mb-discrete-$unit.out.show"
            return 1
        fi
    done
}

# The writable setpoint keeps a write; a hole answers exception 02 and an
# unknown unit exception 0B.
test_mbpoll_sim_write_errors() {
    sim_up || return 1
    mb_write mb-write 1 10 52
    expect_rc 0 "$TMP/sim.log" || return 1
    mb mb-readback -a 1 -t 4 -r 10 -c 1
    expect_rc 0 "$TMP/sim.log" || return 1
    expect_mb 10 52 || return 1
    mb_write mb-restore 1 10 45
    expect_rc 0 "$TMP/sim.log" || return 1
    mb mb-hole -a 1 -t 4 -r 20 -c 1
    if [[ $RC == 0 ]] || ! grep -qi 'illegal data address' "$OUT" "$OUT.err"; then
        fail_msg "reading holding 20 (a hole, 20-29) should fail with illegal data address" "$OUT.show" "$TMP/sim.log"
        return 1
    fi
    mb mb-nounit -a 9 -t 4 -r 0 -c 1
    if [[ $RC == 0 ]] || ! grep -qi 'target device failed to respond' "$OUT" "$OUT.err"; then
        fail_msg "reading unit 9 (no such device) should fail with exception 0B" "$OUT.show" "$TMP/sim.log"
        return 1
    fi
}

# ------------------------------------------------------------------ run all --

say "interop tests (temp folder $TMP)"
run_test pymodbus-tcp-read test_pymodbus_tcp_read
run_test pymodbus-tcp-scan test_pymodbus_tcp_scan
run_test pymodbus-tcp-errors test_pymodbus_tcp_errors
run_test pymodbus-rtu-read test_pymodbus_rtu_read
run_test pymodbus-rtu-scan test_pymodbus_rtu_scan
run_test pymodbus-rtu-late test_pymodbus_rtu_late
run_test pymodbus-tcp-write test_pymodbus_tcp_write
run_test pymodbus-rtu-write test_pymodbus_rtu_write
stop_bg
run_test mbpoll-sim-holding test_mbpoll_sim_holding
run_test mbpoll-sim-floats test_mbpoll_sim_floats
run_test mbpoll-sim-bits test_mbpoll_sim_bits
run_test mbpoll-sim-write-errors test_mbpoll_sim_write_errors
stop_bg

if ((FAILED > 0)); then
    echo "failed: ${FAILED_NAMES[*]}"
fi
echo "interop: $PASSED passed, $FAILED failed"
((FAILED == 0))
