#!/usr/bin/env python3
"""Checks a kill storm (tests/interop/kill_storm.sh) after the fact.

Inputs: what the persistent subscriber received (mosquitto_sub -F
'%U %r %t %p': receive time, retain flag, topic, payload, one message a
line), the broker's retained messages as a newcomer gets them, the store
left by the clean stop (python's sqlite3, read only), `fieldgate alarms
--json` and `fieldgate workorders --json` on that store, and the kill
times (epoch seconds, phase).

The checks, each printed as "ok ..." or "FAIL ...", then
"kill-storm: N passed, M failed" (exit 1 on any failure):

* reused seq: per topic, no seq with two different payloads (received or
  in the outbox; the `hist` mark is not part of the payload);
* beyond the counter: no seq received above the store's `topic_seq`, which
  the next start would issue again;
* completeness: every seq from 1 to the store's `topic_seq` received or
  still in the outbox, but for one gap per kill and topic. After a crash
  the numbering goes on above the topic's seq reservation, so a kill may
  leave a gap of any length made of seqs never issued; besides those, only
  data messages younger than the group interval at the kill may be missing
  (write-behind: every message is acknowledged, or committed, or younger
  than `flush_interval`, 250 ms at least while the broker is down). So a
  data gap needs a kill within that interval plus a poll of the `ts` of the
  message before it, and the message after it made after the kill; an
  alarm or work-order gap needs the message after it to come from a new
  store identity (the run after a crash: alarms and work orders are
  committed before they are published, so none is lost, only numbers
  skipped);
* order: per topic, the first delivery of each seq, the live ones (no
  `hist`) in increasing seq for the life of each gateway process, the
  `hist` ones in increasing seq within each connection (the forwarder's
  guarantee, docs/mqtt.md); a connection starts at each `online` status;
* alarms: every rule's retained alarm (and the last the subscriber got)
  equals its state in the store, with the last seq;
* work orders: every work order in the store was received, and its
  retained message is its last version;
* rule state committed with the change it produced: no alarm change
  (`cause: "condition"`) published under two consecutive seqs with the
  same state, no work order made again with the same status and
  occurrences (a new `updated_at`; the republish of the current state on
  every broker session keeps `updated_at`, and alarms' republish has
  `cause: null`). Within one process a change is published once; twice
  means a restart restored a saved state older than what it had published.
"""

import argparse
import datetime
import json
import sqlite3
import sys
from collections import defaultdict


def parse_ts(text):
    """RFC 3339 UTC ("2026-12-07T02:28:15.035Z") to epoch seconds."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def near(a, b, tolerance):
    """Two RFC 3339 stamps within `tolerance` seconds (both absent: equal)."""
    if not isinstance(a, str) or not isinstance(b, str):
        return a == b
    return abs(parse_ts(a) - parse_ts(b)) <= tolerance


def strip_hist(payload):
    """The payload as stored: the forwarder adds `"hist":true` on the wire."""
    if not payload:
        return payload
    try:
        obj = json.loads(payload)
    except ValueError:
        return payload
    if isinstance(obj, dict):
        obj.pop("hist", None)
    return json.dumps(obj, sort_keys=True)


def read_messages(path):
    """[(received_at, retained, topic, payload_text)]"""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split(" ", 3)
            if len(parts) < 3:
                continue
            payload = parts[3] if len(parts) == 4 else ""
            out.append((float(parts[0]), parts[1] == "1", parts[2], payload))
    return out


# Moments the store keeps on the gateway's monotonic timeline (an alarm's
# `since`, a work order's `updated_at`) are written as wall-clock time
# through the clock's mapping of the moment they are rendered (src/clock.rs),
# so the CLI's rendering after the last restart may differ from the
# message's by the few milliseconds the timeline and the wall clock moved
# apart across the kills. Compared within this tolerance; the largest
# difference is printed.
TIME_TOLERANCE = 1.0
TIME_FIELDS = ("since", "updated_at")
drift = [0.0]


def same(have, want):
    """Field by field; timestamps within TIME_TOLERANCE."""
    for k, w in want.items():
        h = have.get(k)
        if k in TIME_FIELDS and isinstance(h, str) and isinstance(w, str):
            d = abs(parse_ts(h) - parse_ts(w))
            drift[0] = max(drift[0], d)
            if d > TIME_TOLERANCE:
                return False
        elif h != w:
            return False
    return True


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"ok {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}{': ' + detail if detail else ''}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--received", required=True)
    ap.add_argument("--retained", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--alarms", required=True)
    ap.add_argument("--workorders", required=True)
    ap.add_argument("--kills", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--flush-ms", type=int, required=True)
    ap.add_argument("--poll-ms", type=int, required=True)
    ap.add_argument("--stop-rc", type=int, required=True)
    a = ap.parse_args()
    r = Report()

    kills = []
    with open(a.kills) as f:
        for line in f:
            if line.strip():
                t, phase = line.split()
                kills.append((float(t), phase))
    by_phase = defaultdict(int)
    for _, p in kills:
        by_phase[p] += 1
    print(
        f"{len(kills)} kills: "
        + ", ".join(f"{n} {p}" for p, n in by_phase.items())
    )

    r.check(a.stop_rc == 0, "the final SIGTERM stopped the gateway with exit 0",
            f"exit {a.stop_rc}")

    db = sqlite3.connect(f"file:{a.store}?mode=ro", uri=True)
    last = dict(db.execute("SELECT topic, seq FROM topic_seq"))
    stored = defaultdict(dict)  # topic -> seq -> payload
    for topic, seq, payload in db.execute("SELECT topic, seq, payload FROM outbox"):
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", "replace")
        stored[topic][seq] = strip_hist(payload)
    in_outbox = sum(len(v) for v in stored.values())

    msgs = read_messages(a.received)
    status = f"{a.prefix}/status"
    data_pre = f"{a.prefix}/data/"
    alarm_pre = f"{a.prefix}/alarms/"
    wo_pre = f"{a.prefix}/workorders/"

    # topic -> seq -> {normalised payload: parsed object}
    got = defaultdict(lambda: defaultdict(dict))
    unparsable = []
    for at, retained, topic, text in msgs:
        if topic == status or not text:
            continue
        try:
            obj = json.loads(text)
            seq = obj["seq"]
        except (ValueError, KeyError, TypeError):
            unparsable.append(f"{topic} {text[:80]}")
            continue
        got[topic][seq][strip_hist(text)] = obj
    r.check(not unparsable, "every message is JSON with a seq",
            f"{len(unparsable)}: {unparsable[:3]}")
    total = sum(len(v) for v in got.values())
    dups = sum(1 for at, ret, t, p in msgs if t != status and p) - total
    print(f"{len(msgs)} messages received on {len(got)} topics, "
          f"{total} distinct (topic, seq); {in_outbox} rows left in the outbox")

    # 1. No seq with two payloads.
    reused = []
    for topic, seqs in got.items():
        for seq, versions in seqs.items():
            texts = set(versions)
            if seq in stored.get(topic, {}):
                texts.add(stored[topic][seq])
            if len(texts) > 1:
                reused.append(f"{topic} seq {seq}: " + " | ".join(sorted(texts))[:300])
    r.check(not reused, "no seq reused (same seq, different payload) on any topic",
            f"{len(reused)} reused, e.g. {reused[:3]}")

    # 2. Nothing received beyond the store's counter.
    beyond = []
    for topic, seqs in got.items():
        top = max(seqs)
        if top > last.get(topic, 0):
            beyond.append(f"{topic}: received {top}, store's topic_seq {last.get(topic)}")
    r.check(not beyond, "no seq received beyond the store's topic_seq (it would be issued again)",
            "; ".join(beyond[:5]))

    # 3. Completeness.
    window_ms = max(a.flush_ms, 250)
    slack = (window_ms + a.poll_ms) / 1000 + 0.05
    hard_gaps, attributed, unattributed = [], [], []
    for topic, top in sorted(last.items()):
        have = set(got.get(topic, {})) | set(stored.get(topic, {}))
        missing = [s for s in range(1, top + 1) if s not in have]
        if not missing:
            continue
        # Runs of consecutive missing seqs.
        runs, start = [], missing[0]
        for prev, s in zip(missing, missing[1:] + [None]):
            if s != prev + 1:
                runs.append((start, prev))
                start = s
        def store_of(seq):
            versions = got.get(topic, {}).get(seq)
            if versions:
                return next(iter(versions.values())).get("store")
            if seq in stored.get(topic, {}):
                return json.loads(stored[topic][seq]).get("store")
            return None

        if not topic.startswith(data_pre):
            skipped = [(lo, hi) for lo, hi in runs
                       if lo > 1 and hi < top
                       and store_of(lo - 1) is not None and store_of(hi + 1) is not None
                       and store_of(lo - 1) != store_of(hi + 1)]
            lost = [run for run in runs if run not in skipped]
            if lost or len(skipped) > len(kills):
                hard_gaps.append(f"{topic}: missing {lost[:5]} (and {len(skipped)} skipped at a crash)")
            else:
                attributed.extend(f"{topic} {lo}..{hi} skipped at a crash" for lo, hi in skipped)
            continue

        def ts_of(seq):
            versions = got.get(topic, {}).get(seq)
            if versions:
                return parse_ts(next(iter(versions.values()))["ts"])
            if seq in stored.get(topic, {}):
                return parse_ts(json.loads(stored[topic][seq])["ts"])
            return None

        used = set()
        for lo, hi in runs:
            before = ts_of(lo - 1) if lo > 1 else float("-inf")
            after = ts_of(hi + 1) if hi < top else float("inf")
            before = float("-inf") if before is None else before
            after = float("inf") if after is None else after
            # The last message before the gap was made within the window
            # before the kill (what was older is delivered or stored), and
            # the one after it by the next run.
            at = next((i for i, (k, _) in enumerate(kills)
                       if i not in used and k - slack <= before <= k + slack
                       and after >= k - slack), None)
            n = hi - lo + 1
            if at is not None:
                used.add(at)
                attributed.append(f"{topic} {lo}..{hi} at kill {at + 1} ({kills[at][1]})")
            else:
                unattributed.append(f"{topic} {lo}..{hi} ({n} seqs)")
    r.check(not hard_gaps, "alarms and work orders: every seq issued received "
            "(a gap only where a crash skipped numbers)",
            "; ".join(hard_gaps[:5]))
    r.check(not unattributed,
            "data: every seq from 1 to the store's last received or still in the outbox, "
            f"but for one gap per kill whose last message was made within {window_ms} ms "
            "(+ a poll) of the kill"
            + (f" ({len(attributed)} such gaps)" if attributed
               else "" if unattributed else " (none missing)"),
            f"{len(unattributed)} gaps at no kill or older: {unattributed[:5]}")
    for g in attributed[:10]:
        print(f"   gap {g}")

    # 4. Order of first deliveries.
    seen = set()
    process, connection = None, 0
    live_top, hist_top = {}, {}
    disorder = []
    for at, retained, topic, text in msgs:
        if topic == status:
            if text and not retained:
                s = json.loads(text)
                if s.get("state") == "online":
                    if s.get("started") != process:
                        process = s.get("started")
                        live_top = {}
                    connection += 1
                    hist_top = {}
            continue
        if retained or not text:
            continue
        try:
            obj = json.loads(text)
            seq = obj["seq"]
        except (ValueError, KeyError, TypeError):
            continue
        if (topic, seq) in seen:
            continue
        seen.add((topic, seq))
        tops = hist_top if obj.get("hist") else live_top
        if seq <= tops.get(topic, 0):
            kind = "hist" if obj.get("hist") else "live"
            disorder.append(f"{topic} {kind} seq {seq} after {tops[topic]} "
                            f"(connection {connection})")
        tops[topic] = max(seq, tops.get(topic, 0))
    r.check(not disorder,
            f"order: live seqs increase per process, hist per connection ({connection} connections)",
            f"{len(disorder)}: {disorder[:5]}")

    # 5. Alarms: retained == last received == the store's state.
    retained = {}
    for at, ret, topic, text in read_messages(a.retained):
        if ret and text:
            retained[topic] = json.loads(text)
    with open(a.alarms) as f:
        alarms = json.load(f)
    fields = ("state", "active", "acked", "chattering", "shelved_until", "since")
    wrong = []
    for alarm in alarms:
        topic = alarm_pre + alarm["rule"]
        want = {k: alarm.get(k) for k in fields}
        top = last.get(topic)
        if top in stored.get(topic, {}):
            print(f"   {topic}: its last change (seq {top}) is still in the outbox")
            continue
        ret = retained.get(topic)
        if ret is None:
            wrong.append(f"{topic}: no retained message")
            continue
        have = {k: ret.get(k) for k in fields}
        if not same(have, want) or ret.get("seq") != top:
            wrong.append(f"{topic}: retained seq {ret.get('seq')} {have}, "
                         f"store seq {top} {want}")
        versions = got.get(topic, {}).get(top, {})
        if not versions:
            wrong.append(f"{topic}: the subscriber never got seq {top}")
        elif not all(same(v, want) for v in versions.values()):
            wrong.append(f"{topic}: the subscriber's seq {top} differs from the store's state")
    r.check(alarms and not wrong,
            f"alarms: the retained state of all {len(alarms)} rules equals the store's",
            "; ".join(wrong[:5]) or "no rules in the store")

    # 6. Work orders.
    with open(a.workorders) as f:
        orders = json.load(f)
    lost, stale = [], []
    for wo in orders:
        topic = wo_pre + wo["id"]
        if not got.get(topic) and not stored.get(topic):
            lost.append(f"{wo['id']} ({wo['key']})")
            continue
        top = last.get(topic)
        if top in stored.get(topic, {}):
            continue
        ret = retained.get(topic)
        want = {k: wo.get(k) for k in ("key", "status", "occurrences", "updated_at")}
        have = {k: (ret or {}).get(k) for k in want}
        if not same(have, want) or (ret or {}).get("seq") != top:
            stale.append(f"{topic}: retained {have} seq {(ret or {}).get('seq')}, "
                         f"store {want} seq {top}")
    keys = sorted(wo["key"].split("/")[2] for wo in orders)
    r.check(orders and not lost,
            f"work orders: all {len(orders)} raised were received ({', '.join(keys)})",
            f"never received: {lost}" if lost else "no work order in the store")
    r.check(not stale, "work orders: the retained message is the store's last version",
            "; ".join(stale[:5]))

    # 7. The rule state is committed with the change it produced: a change
    # published again under a new seq (the same alarm state after a change
    # of the condition, a work order again with the same occurrences and
    # status) means a restart found a saved state older than the messages.
    repeated = []
    for topic, seqs in sorted(got.items()):
        if not (topic.startswith(alarm_pre) or topic.startswith(wo_pre)):
            continue
        prev = None
        for seq in sorted(seqs):
            obj = next(iter(seqs[seq].values()))
            if topic.startswith(alarm_pre):
                key = (obj.get("state"), obj.get("chattering"))
                again = obj.get("cause") == "condition"
            else:
                key = (obj.get("status"), obj.get("occurrences"))
                # Every new broker session republishes the open work
                # orders as they are (same `updated_at`): not a new
                # version. The same status and occurrences made again
                # (a new `updated_at`) is one.
                # (Stamps are rendered again from the monotonic timeline at
                # each republish: a few ms of difference is the same one.)
                again = prev is not None and not near(prev[2], obj.get("updated_at"), 0.005)
            if again and prev and prev[1] == key and prev[0] == seq - 1:
                what = "state" if topic.startswith(alarm_pre) else "status, occurrences"
                repeated.append(f"{topic.removeprefix(a.prefix + '/')} seq {seq - 1} and {seq}: "
                                f"{what} {key}")
            prev = (seq, key, obj.get("updated_at"))
    r.check(not repeated,
            "rule state committed with its messages: no alarm change or work-order "
            "version published twice under two seqs",
            f"{len(repeated)}: " + "; ".join(repeated[:6]))

    print(f"{dups} duplicate deliveries (at least once); timeline stamps rendered by the CLI "
          f"differ from the messages' by at most {drift[0] * 1000:.0f} ms")
    print(f"kill-storm: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
