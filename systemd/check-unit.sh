#!/usr/bin/env bash
# Checks systemd/fieldgate.service and systemd/fieldgate-bridge.service:
# `systemd-analyze verify` must print nothing, and the offline security review must score at most
# MAX_EXPOSURE (2.0, "OK"). Run from anywhere; `.ci/run` runs it after the
# example configs are checked. Skips (exit 0, with a line saying so) where
# systemd-analyze is missing.
#
# verify insists that ExecStart= binaries exist, and /usr/bin/fieldgate
# does not on a build machine: it checks a copy of the unit whose
# /usr/bin/fieldgate points at the binary cargo builds (FIELDGATE_BIN to
# use another), under the same file name, so the unit name is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=2.0

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "skip: systemd-analyze not found; the units were not checked"
    exit 0
fi
echo "$(systemd-analyze --version | head -n 1)"

bin=${FIELDGATE_BIN:-}
if [ -z "$bin" ]; then
    cargo build --quiet --bin fieldgate
    bin="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/fieldgate"
fi
[ -x "$bin" ] || { echo "error: $bin is not an executable"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for unit in systemd/fieldgate.service systemd/fieldgate-bridge.service; do
name=$(basename "$unit")
sed "s#/usr/bin/fieldgate#$bin#g" "$unit" > "$tmp/$name"

# Only this unit (not the ones it names) is checked, so a broken unit
# elsewhere on the machine cannot fail this step. Any output is a finding
# (an unknown directive, a bad value, a missing binary): verify's exit code
# alone ignores some of them.
out=$(systemd-analyze verify --man=no --recursive-errors=no "$tmp/$name" 2>&1) || {
    printf '%s\n' "$out"
    echo "error: systemd-analyze verify failed on $unit"
    exit 1
}
if [ -n "$out" ]; then
    printf '%s\n' "$out"
    echo "error: systemd-analyze verify warned about $unit"
    exit 1
fi
echo "verify: $unit OK"

report=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || {
    printf '%s\n' "$report"
    echo "error: systemd-analyze security failed on $unit"
    exit 1
}
# "→ Overall exposure level for fieldgate.service: 1.3 OK 🙂"
line=$(printf '%s\n' "$report" | grep 'Overall exposure level' || true)
score=$(printf '%s\n' "$line" | sed -n 's/.*: \([0-9][0-9]*\.[0-9]\).*/\1/p')
if [ -z "$score" ]; then
    printf '%s\n' "$report"
    echo "error: no 'Overall exposure level' line in the security report"
    exit 1
fi
if awk -v s="$score" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(s > max) }'; then
    printf '%s\n' "$report" | grep '✗' || true
    echo "error: $unit exposure $score is above $MAX_EXPOSURE"
    exit 1
fi
echo "security: $unit exposure $score (at most $MAX_EXPOSURE)"
done
