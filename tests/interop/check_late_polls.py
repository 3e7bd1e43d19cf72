#!/usr/bin/env python3
"""Checks the data messages of run.sh's pymodbus-rtu-late test.

    check_late_polls.py SUB_LOG

SUB_LOG holds one data message (JSON) a line, as `mosquitto_sub -F '%p'`
wrote them, of fieldgate polling pymodbus_late.py's device: a = holding 0
(1.0), b = holding 100 (2.0), c = holding 200 (3.0), no deadband, so every
poll publishes all three. The device answered its first read of address 0
after 450 ms, past the 300 ms timeout.

Fails (exit 1, a PROBLEM line each) when a good reading carries another
register's value (the shifted a = 3.0, b = 1.0, c = 2.0), when the first
poll does not show the late answer as a = bad:timeout, when fewer than 20
polls arrived, when more than 8 polls were not all good, or when the last
poll is not all good. Prints a summary either way.
"""

from __future__ import annotations

import json
import sys

EXPECTED = {"a": 1.0, "b": 2.0, "c": 3.0}
MIN_POLLS = 20
MAX_LOST = 8


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        polls = [json.loads(line) for line in f if line.strip()]
    problems = []
    good_polls = 0
    for poll in polls:
        seq = poll.get("seq")
        tags = poll.get("tags", {})
        all_good = True
        for name, want in EXPECTED.items():
            reading = tags.get(name)
            if reading is None:
                problems.append(f"seq {seq}: no reading of {name}")
                all_good = False
            elif reading.get("q") == "good":
                if reading.get("v") != want:
                    problems.append(
                        f"seq {seq}: {name} = {reading.get('v')} good, but {name} holds {want}"
                    )
            else:
                all_good = False
        good_polls += all_good
    print(f"{len(polls)} polls, {good_polls} all good; the first ones:")
    for poll in polls[:3]:
        print("  ", json.dumps(poll.get("tags")))
    if len(polls) < MIN_POLLS:
        problems.append(f"only {len(polls)} polls published (every 200 ms for 10 s expected)")
    else:
        first = polls[0].get("tags", {}).get("a", {})
        if first.get("q") != "bad:timeout":
            problems.append(f"the first poll should show the late answer as a = bad:timeout: {first}")
        if good_polls < len(polls) - MAX_LOST:
            problems.append(f"only {good_polls} of {len(polls)} polls all good: the line did not recover")
        last = polls[-1].get("tags", {})
        if not all(r.get("q") == "good" for r in last.values()):
            problems.append(f"the last poll is not all good: {last}")
    for p in problems[:20]:
        print("PROBLEM", p)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
