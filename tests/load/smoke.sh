#!/usr/bin/env bash
# Smoke test of the load harness (BENCHMARKS.md, "Load harness"): short W1
# and W3 runs that prove the harness still works and that nothing is lost
# through a broker outage. Correctness only (every committed value reaches
# the subscriber, clean stop, the backlog is delivered after the outage);
# never speed: the debug build is used, which CI has already built for
# `cargo test`, and figures from it mean nothing.
#
#   bash tests/load/smoke.sh
#
# Loopback only; every run is bounded (the harness's waits, and `timeout`).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET = /* ]] || TARGET=$ROOT/$TARGET
export NO_COLOR=1

# W3 starts a Mosquitto of its own on a free port (the shared one on 1883
# is never touched).
command -v mosquitto >/dev/null || { apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null; }

cargo build --quiet --bin fieldgate --example fieldgate-load
LOAD=$TARGET/debug/examples/fieldgate-load
RESULTS=$TARGET/load/smoke.jsonl
mkdir -p "$TARGET/load"

timeout -k 5 120 "$LOAD" W1 --seconds 5 --results "$RESULTS" --check
timeout -k 5 120 "$LOAD" W3 --seconds 8 --outage 3 --results "$RESULTS" --check
echo "load smoke: W1 and W3 lost nothing"
