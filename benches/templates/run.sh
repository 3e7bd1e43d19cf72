#!/usr/bin/env bash
# `fieldgate check` on one plant of N pumps written three ways (gen.py):
# RUNS runs of each, interleaved, each timed by GNU time; prints the median
# wall time, the median CPU time (user + system) and the largest peak RSS.
# Usage: benches/templates/run.sh [FIELDGATE] [N] [RUNS]
#   FIELDGATE defaults to target/release/fieldgate, N to 200, RUNS to 9.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fieldgate="$(realpath "${1:-target/release/fieldgate}")"
n="${2:-200}"
runs="${3:-9}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

python3 "$here/gen.py" "$out" "$n"
cd "$out"
configs=(templated by-hand-csv by-hand-inline)
for c in "${configs[@]}"; do
  "$fieldgate" check -c "$c.toml" >/dev/null   # must pass, and warms the page cache
done
for _ in $(seq "$runs"); do
  for c in "${configs[@]}"; do
    /usr/bin/time -f "%e %U %S %M" -a -o "$c.times" "$fieldgate" check -c "$c.toml" >/dev/null
  done
done

printf '%-16s %6s %6s %10s %10s %10s\n' config lines "kB" "wall s" "cpu s" "max RSS"
for c in "${configs[@]}"; do
  files=("$c.toml")
  if [ "$c" = templated ]; then files+=(devices.csv); fi
  lines=$(cat "${files[@]}" | wc -l)
  bytes=$(cat "${files[@]}" | wc -c)
  python3 - "$c" "$lines" "$bytes" "$c.times" <<'EOF'
import statistics, sys
name, lines, size, path = sys.argv[1:]
rows = [list(map(float, l.split())) for l in open(path) if l.strip()]
wall = statistics.median(r[0] for r in rows)
cpu = statistics.median(r[1] + r[2] for r in rows)
rss = max(r[3] for r in rows) / 1024
print(f"{name:<16} {lines:>6} {int(size)/1000:>6.0f} {wall:>10.3f} {cpu:>10.3f} {rss:>7.1f} MiB  ({len(rows)} runs)")
EOF
done
