#!/usr/bin/env bash
# Two fieldgate bridges sharing one subscription group on Mosquitto (our
# own, on a free port; the shared one on 1883 is left alone), two gateways
# publishing work orders, a fake Maximo: each work order is created
# exactly once, a gateway's reconnect creates nothing more, and a work
# order closed in the CMMS is closed on its gateway. The scenario is the
# Rust test `cmms_bridge::two_bridges_on_an_outside_broker` (the gateways
# and bridges run in its process; the broker is Mosquitto).
#
#   bash tests/interop/cmms_bridge.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; }

source tests/lib/processes.sh
TMP=$(mktemp -d /tmp/fieldgate-bridge.XXXXXX)
cleanup() { stop_all; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

read -r MQ_PORT < <(free_ports 1)
mosquitto_config "$TMP" "$MQ_PORT"
start_broker

FIELDGATE_TEST_BROKER="127.0.0.1:$MQ_PORT" \
    cargo test --quiet --test integration -- --ignored --exact \
    cmms_bridge::two_bridges_on_an_outside_broker
echo "cmms-bridge: passed"
