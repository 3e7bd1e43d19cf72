#!/usr/bin/env python3
"""A scripted Sparkplug B host application, to check fieldgate's edge node
with a decoder that is not ours: pysparkplug 0.6.1 (PyPI) over paho-mqtt
1.6.

It subscribes to `spBv1.0/#`, decodes every message with pysparkplug by
its message type (NBirth, DBirth, NData, DData with the birth that binds
its aliases, DDeath, NDeath, State, NCmd) and checks the rules of the
Sparkplug B 3.0 specification a host relies on:

  - NBIRTH comes before any DBIRTH, DDATA, DDEATH or NDATA of its session
    (a session: from NBIRTH to NDEATH); DBIRTH before a device's DDATA;
    no DDATA of a device between its DDEATH and its next DBIRTH
  - seq: 0 on NBIRTH, then one more (mod 256) on every message of the
    session; DBIRTH, DDATA, DDEATH and NDATA carry one
  - bdSeq: the NBIRTH has it (Int64, 0-255); a rebirth keeps it, a new
    session changes it; the NDEATH's equals that of its session's NBIRTH
  - births: every metric has a name and a datatype; aliases are unique
    across the node and its devices; `Node Control/Rebirth` is there
  - DDATA and NDATA: every alias is bound by the latest birth (DBIRTH of
    the device, NBIRTH for the node); every value sits in the field its
    datatype asks for; a null metric has no value
  - properties (read from pysparkplug's own protobuf classes, as its
    Metric leaves them out): `Quality` is Int32 192 or 0, `engUnit` and
    `description` are strings
  - is_historical metrics are stamped no later than their session's
    first NBIRTH (history is what waited before the births)
  - every payload has a timestamp

It can act too: as the primary host (`--primary ID`: a retained
`spBv1.0/STATE/ID` JSON `{"online":true,"timestamp":ms}` at start, its
Will the same offline; `--offline-after S --offline-for S`: offline then
online again, expecting the node's NDEATH and then new births), and send
NCMD `Node Control/Rebirth` (`--rebirth-after S,...`), expecting a new
NBIRTH with the same bdSeq. Times are counted from the first NBIRTH.

It ends after the `--ndeaths`-th NDEATH of a born session (plus a second
for stragglers), or at `--timeout` (a failure), prints a summary and exits
1 on any violation, any message it cannot decode or any expectation not
met, 0 otherwise. Prints `host: ready` once subscribed (and online).

    python tests/interop/sparkplug_host.py --broker 127.0.0.1:1883 \
        --devices pump1,pump2,motor1,fan1 --ndeaths 1
"""

import argparse
import queue
import signal
import sys
import time
from collections import Counter

import paho.mqtt.client as mqtt
import pysparkplug as spb

# pysparkplug's generated protobuf classes: what its Metric drops
# (properties) and what its decoders do not check (a DDEATH's seq, an
# NDEATH's timestamp) are read from the same bytes through them.
from pysparkplug import _protobuf as spb_pb

BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
QUALITY = "Quality"
# How long an answer may take: an NBIRTH after NCMD rebirth or after the
# host comes online, an NDEATH after the host goes offline.
ANSWER_WITHIN = 5.0
DT = spb.DataType


def now_ms():
    return int(time.time() * 1000)


class Session:
    """What the host knows of one edge node."""

    def __init__(self):
        self.born = False  # an NBIRTH, no NDEATH since
        self.bd_seq = None  # of the born (or last) session
        self.nbirth = None
        self.first_nbirth_ts = None  # of the session: history is older
        self.next_seq = None
        self.dbirths = {}  # device -> DBirth (latest of the session)
        self.alive = set()  # devices born and not dead
        self.dead = set()  # devices with a DDEATH since their DBIRTH
        self.round = None  # devices born since the latest NBIRTH
        self.data_seen = False  # a DDATA or NDATA since the latest NBIRTH
        self.aliases = {}  # alias -> device (None: the node)
        self.sessions = []  # [bd_seq, births, how it ended]


class Host:
    def __init__(self, args):
        self.args = args
        self.q = queue.Queue()
        self.violations = []
        self.notes = []
        self.counts = Counter()
        self.nodes = {}  # (group, node) -> Session
        self.node_key = None  # the first node seen: the one acted upon
        self.t0 = None  # monotonic time of the first NBIRTH
        self.metrics = 0
        self.historical = 0
        self.nulls = 0
        self.quality = Counter()
        self.props = Counter()
        self.device_deaths = Counter()
        self.device_rebirths = Counter()  # DBIRTH after a DDEATH
        self.died = set()  # a DDEATH, no DBIRTH with values since
        self.ndeaths_ended = 0  # NDEATHs that ended a born session
        self.unborn_ndeaths = []
        self.rebirth_plan = sorted(float(x) for x in args.rebirth_after.split(",") if x)
        self.rebirth_pending = []  # (sent at, bd_seq)
        self.rebirths_answered = 0
        self.dead_dbirths = []  # DBIRTHs of a device whose every tag was null
        self.primary = args.primary
        self.host_online = False
        self.offline_sent = None
        self.online_again_sent = None
        self.ndeath_after_offline = None
        self.nbirth_after_online = None
        self.history_after_online = 0
        self.client = None

    # ------------------------------------------------------------ reporting

    def violation(self, topic, seq, what):
        line = f"VIOLATION {topic} seq={seq}: {what}"
        self.violations.append(line)
        print(line, flush=True)

    def event(self, what):
        """A line of the log (births, deaths, actions), timed from the first NBIRTH."""
        t = f"{time.monotonic() - self.t0:6.2f}" if self.t0 is not None else "     -"
        print(f"{t} {what}", flush=True)

    def note(self, what):
        self.notes.append(what)
        print(f"note: {what}", flush=True)

    # ----------------------------------------------------------------- mqtt

    def state_payload(self, online, ts):
        return spb.State(timestamp=ts, online=online).encode()

    def connect(self):
        host, port = self.args.broker.rsplit(":", 1)
        c = mqtt.Client(client_id=f"sparkplug-host-interop-{int(time.time())}", clean_session=True)
        self.online_ts = now_ms()
        if self.primary:
            # A host's Will: its STATE offline with the timestamp of its
            # online message (Sparkplug 3.0).
            c.will_set(self.state_topic(), self.state_payload(False, self.online_ts), 1, True)
        c.on_connect = lambda cl, ud, flags, rc: self.q.put(("connected", rc))
        c.on_subscribe = lambda cl, ud, mid, granted: self.q.put(("subscribed", granted))
        c.on_message = lambda cl, ud, msg: self.q.put(
            ("message", time.monotonic(), msg.topic, bytes(msg.payload), msg.retain)
        )
        c.connect(host, int(port), keepalive=30)
        c.loop_start()
        self.client = c
        deadline = time.monotonic() + 10
        connected = subscribed = False
        while not subscribed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit("host: could not connect and subscribe within 10 s")
            try:
                ev = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if ev[0] == "connected":
                if ev[1] != 0:
                    raise SystemExit(f"host: CONNACK {ev[1]}")
                connected = True
                c.subscribe("spBv1.0/#", qos=1)
            elif ev[0] == "subscribed":
                subscribed = connected
            else:
                self.q.put(ev)
        if self.primary:
            self.publish_state(True, self.online_ts)
        print("host: ready", flush=True)

    def state_topic(self):
        return f"spBv1.0/STATE/{self.primary}"

    def publish_state(self, online, ts=None):
        ts = ts if ts is not None else now_ms()
        info = self.client.publish(self.state_topic(), self.state_payload(online, ts), 1, True)
        info.wait_for_publish(5)
        self.host_online = online
        self.event(f"host: STATE {'online' if online else 'offline'} ({ts})")

    def send_rebirth(self):
        group, node = self.node_key
        cmd = spb.NCmd(
            timestamp=now_ms(),
            metrics=(
                spb.Metric(timestamp=now_ms(), name=REBIRTH, datatype=DT.BOOLEAN, value=True),
            ),
        )
        self.client.publish(
            f"spBv1.0/{group}/NCMD/{node}", cmd.encode(include_dtypes=True), 0, False
        )
        s = self.nodes[self.node_key]
        self.rebirth_pending.append((time.monotonic(), s.bd_seq))
        self.event(f"host: NCMD {REBIRTH} to {group}/{node}")

    # -------------------------------------------------------------- checks

    def check_value(self, topic, seq, name, raw_metric, datatype):
        """The value is in the field its datatype asks for; null has none."""
        field = raw_metric.WhichOneof("value")
        if raw_metric.is_null:
            self.nulls += 1
            if field is not None:
                self.violation(topic, seq, f"metric {name}: is_null but carries {field}")
            return
        try:
            want = DT(datatype).field
        except (ValueError, NotImplementedError) as e:
            self.violation(topic, seq, f"metric {name}: datatype {datatype}: {e}")
            return
        if field is None:
            self.violation(topic, seq, f"metric {name}: no value and not is_null")
        elif field != want:
            self.violation(
                topic, seq, f"metric {name}: datatype {DT(datatype).name} in {field}, not {want}"
            )

    def check_properties(self, topic, seq, name, raw_metric):
        if not raw_metric.HasField("properties"):
            return
        ps = raw_metric.properties
        if len(ps.keys) != len(ps.values):
            self.violation(
                topic, seq, f"metric {name}: {len(ps.keys)} property keys, {len(ps.values)} values"
            )
            return
        for key, v in zip(ps.keys, ps.values):
            self.props[key] += 1
            if key == QUALITY:
                if v.type != DT.INT32 or v.WhichOneof("value") != "int_value":
                    self.violation(topic, seq, f"metric {name}: Quality not an Int32")
                elif v.int_value not in (0, 192):
                    self.violation(
                        topic, seq, f"metric {name}: Quality {v.int_value}, not 0 or 192"
                    )
                else:
                    self.quality["good" if v.int_value == 192 else "bad"] += 1
            elif key in ("engUnit", "description"):
                if v.type != DT.STRING or v.WhichOneof("value") != "string_value":
                    self.violation(topic, seq, f"metric {name}: property {key} not a String")

    def decode(self, cls, topic, raw, seq=None, **kw):
        try:
            return cls.decode(raw, **kw)
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            self.counts["undecodable"] += 1
            self.violation(
                topic,
                seq,
                f"pysparkplug cannot decode it as {cls.__name__}: {type(e).__name__}: {e}",
            )
            return None

    def take_seq(self, s, topic, raw_pb, kind):
        """The seq of a message after the NBIRTH; None if it has none."""
        if not raw_pb.HasField("seq"):
            self.violation(topic, None, f"{kind} without seq")
            return None
        seq = raw_pb.seq
        if s.next_seq is not None and seq != s.next_seq:
            self.violation(topic, seq, f"{kind} seq {seq}, expected {s.next_seq}")
        s.next_seq = (seq + 1) % 256
        return seq

    def check_birth_metrics(self, s, topic, seq, birth, raw_pb, device):
        names = set()
        for m, r in zip(birth.metrics, raw_pb.metrics):
            self.metrics += 1
            if not m.name:
                self.violation(topic, seq, "birth metric without a name")
                continue
            if m.name in names:
                self.violation(topic, seq, f"metric {m.name} twice in a birth")
            names.add(m.name)
            if not r.HasField("datatype") or m.datatype == DT.UNKNOWN:
                self.violation(topic, seq, f"birth metric {m.name} without a datatype")
                continue
            if m.alias is not None:
                owner = s.aliases.get(m.alias, device)
                if owner != device:
                    self.violation(
                        topic,
                        seq,
                        f"alias {m.alias} ({m.name}) already bound by {owner or 'the node'}",
                    )
                s.aliases[m.alias] = device
            if m.is_historical:
                self.violation(topic, seq, f"birth metric {m.name} is_historical")
            if not r.HasField("timestamp"):
                self.counts["metrics without timestamp"] += 1
            self.check_value(topic, seq, m.name, r, m.datatype)
            self.check_properties(topic, seq, m.name, r)

    def check_data_metrics(self, s, topic, seq, data, raw_pb, birth):
        for m, r in zip(data.metrics, raw_pb.metrics):
            self.metrics += 1
            name = m.name or f"#{m.alias}"
            dt = m.datatype if m.datatype != DT.UNKNOWN else None
            if dt is None:
                self.violation(
                    topic, seq, f"metric {name}: no datatype in the message or its birth"
                )
                continue
            if r.HasField("datatype") and r.datatype != birth.get_dtype(m.name):
                self.violation(
                    topic,
                    seq,
                    f"metric {name}: datatype {r.datatype}, born {birth.get_dtype(m.name)}",
                )
            if not r.HasField("timestamp"):
                self.counts["metrics without timestamp"] += 1
            self.check_value(topic, seq, name, r, dt)
            self.check_properties(topic, seq, name, r)
            if m.is_historical:
                self.historical += 1
                if self.online_again_sent is not None and s.born:
                    self.history_after_online += 1
                if m.timestamp is None:
                    self.violation(topic, seq, f"historical metric {name} without a timestamp")
                elif m.timestamp > s.first_nbirth_ts:
                    self.violation(
                        topic,
                        seq,
                        f"historical metric {name} stamped {m.timestamp}, after its session's NBIRTH ({s.first_nbirth_ts})",
                    )

    def bound(self, topic, seq, raw_pb, birth, kind):
        """Every alias of a DATA message is bound by `birth`."""
        ok = True
        for r in raw_pb.metrics:
            if r.HasField("alias"):
                try:
                    birth.get_name(r.alias)
                except KeyError:
                    self.violation(
                        topic, seq, f"{kind} alias {r.alias} not bound by the latest birth"
                    )
                    ok = False
            elif r.HasField("name"):
                try:
                    birth.get_dtype(r.name)
                except KeyError:
                    self.violation(topic, seq, f"{kind} metric {r.name} not in the latest birth")
                    ok = False
            else:
                self.violation(topic, seq, f"{kind} metric with neither name nor alias")
                ok = False
        return ok

    # ------------------------------------------------------------- messages

    def on_message(self, at, topic, raw, retained):
        try:
            t = spb.Topic.from_str(topic)
        except (ValueError, IndexError) as e:
            self.violation(topic, None, f"not a Sparkplug topic: {e}")
            return
        kind = str(t.message_type)
        self.counts[kind] += 1
        if t.message_type == spb.MessageType.STATE:
            st = self.decode(spb.State, topic, raw)
            if st is not None and t.sparkplug_host_id != self.primary:
                self.note(f"STATE of another host {t.sparkplug_host_id}: {st}")
            return
        if t.message_type in (spb.MessageType.NCMD, spb.MessageType.DCMD):
            self.decode(spb.NCmd if kind == "NCMD" else spb.DCmd, topic, raw)
            return
        if retained:
            self.violation(topic, None, f"{kind} retained (edge-node messages are not)")
        key = (t.group_id, t.edge_node_id)
        if self.node_key is None:
            self.node_key = key
        s = self.nodes.setdefault(key, Session())
        try:
            raw_pb = spb_pb.Payload.FromString(raw)
        except Exception as e:  # noqa: BLE001
            self.counts["undecodable"] += 1
            self.violation(topic, None, f"not a Sparkplug B payload: {e}")
            return
        if kind != "NDEATH" and not raw_pb.HasField("timestamp"):
            self.violation(
                topic, raw_pb.seq if raw_pb.HasField("seq") else None, "payload without timestamp"
            )
        handler = getattr(self, f"on_{kind.lower()}", None)
        if handler is None:
            self.violation(topic, None, f"unexpected message type {kind}")
            return
        handler(s, at, topic, t.device_id, raw, raw_pb)

    def end_round(self, s, why):
        """The births of an NBIRTH are complete: every expected device had its DBIRTH."""
        if s.round is None:
            return
        want = set(self.args.devices.split(",")) if self.args.devices else set()
        missing = sorted(want - s.round)
        if missing:
            self.violation(
                f"NBIRTH bdSeq={s.bd_seq}", 0, f"no DBIRTH of {', '.join(missing)} before {why}"
            )
        s.round = None

    def on_nbirth(self, s, at, topic, device, raw, raw_pb):
        seq = raw_pb.seq if raw_pb.HasField("seq") else None
        b = self.decode(spb.NBirth, topic, raw, seq)
        if b is None:
            return
        if seq != 0:
            self.violation(topic, seq, "NBIRTH seq is not 0")
        if self.primary and not self.host_online:
            self.violation(topic, seq, "NBIRTH while the primary host is offline")
        bd = [m for m in b.metrics if m.name == BD_SEQ]
        if len(bd) != 1:
            self.violation(topic, seq, f"NBIRTH has {len(bd)} bdSeq metrics")
            return
        bd = bd[0]
        if (
            bd.datatype not in (DT.INT64, DT.UINT64)
            or not isinstance(bd.value, int)
            or not 0 <= bd.value <= 255
        ):
            self.violation(
                topic, seq, f"bdSeq {bd.value!r} ({bd.datatype.name}) not an Int64 0-255"
            )
        ctl = [m for m in b.metrics if m.name == REBIRTH]
        if len(ctl) != 1 or ctl[0].datatype != DT.BOOLEAN:
            self.violation(topic, seq, f"NBIRTH without a Boolean {REBIRTH}")
        self.end_round(s, "the next NBIRTH")
        if s.born:
            # A rebirth: same session, same bdSeq.
            if bd.value != s.bd_seq:
                self.violation(
                    topic,
                    seq,
                    f"rebirth with bdSeq {bd.value}, session has {s.bd_seq} (no NDEATH between)",
                )
            s.sessions[-1][1] += 1
            if self.rebirth_pending:
                self.rebirth_pending.pop(0)
                self.rebirths_answered += 1
            else:
                self.note(f"NBIRTH (rebirth) of bdSeq {bd.value} nobody asked for")
        else:
            if s.sessions and bd.value == s.sessions[-1][0]:
                self.violation(
                    topic, seq, f"new session with the bdSeq of the last one ({bd.value})"
                )
            s.sessions.append([bd.value, 1, "open"])
            s.first_nbirth_ts = b.timestamp
            if self.online_again_sent is not None and self.nbirth_after_online is None:
                self.nbirth_after_online = at
        if self.t0 is None:
            self.t0 = at
        s.born = True
        s.bd_seq = bd.value
        s.nbirth = b
        s.next_seq = 1
        s.dbirths = {}
        s.alive = set()
        s.dead = set()
        s.round = set()
        s.data_seen = False
        s.aliases = {}
        self.event(f"NBIRTH bdSeq={bd.value}: {len(b.metrics)} metrics")
        self.check_birth_metrics(s, topic, seq, b, raw_pb, None)

    def unborn(self, s, topic, seq, kind):
        if not s.born:
            self.violation(
                topic, seq, f"{kind} outside a session (no NBIRTH since the last NDEATH)"
            )
            return True
        return False

    def on_dbirth(self, s, at, topic, device, raw, raw_pb):
        seq = raw_pb.seq if raw_pb.HasField("seq") else None
        if self.unborn(s, topic, seq, "DBIRTH"):
            return
        seq = self.take_seq(s, topic, raw_pb, "DBIRTH")
        b = self.decode(spb.DBirth, topic, raw, seq)
        if b is None:
            return
        # The specification's DBIRTH-order rule reads as if every DBIRTH
        # followed the NBIRTH at once, yet its device lifecycle (and
        # Tahu's examples) births a device that comes back after its
        # DDEATH mid-session, which hosts accept: counted, not refused.
        if s.data_seen:
            self.counts["DBIRTH after data"] += 1
        if device in s.alive:
            self.counts["DBIRTH of a born device"] += 1
        s.dead.discard(device)
        s.alive.add(device)
        s.dbirths[device] = b
        if s.round is not None:
            s.round.add(device)
        # Every tag null: the device was not polled yet, or is not
        # answering (a rebirth while it is down births it so).
        tags = [m for m in b.metrics if not m.name.startswith("Alarms/")]
        nulls = sum(1 for m in tags if m.is_null)
        if tags and nulls == len(tags):
            self.dead_dbirths.append((device, seq))
        elif device in self.died:
            # Back after its DDEATH: a birth with values.
            self.died.discard(device)
            self.device_rebirths[device] += 1
        self.event(
            f"DBIRTH {device} seq={seq}: {len(b.metrics)} metrics, {nulls} of {len(tags)} tags null"
        )
        # Aliases of the device's previous birth are its own again.
        s.aliases = {a: d for a, d in s.aliases.items() if d != device}
        self.check_birth_metrics(s, topic, seq, b, raw_pb, device)

    def on_ddata(self, s, at, topic, device, raw, raw_pb):
        seq = raw_pb.seq if raw_pb.HasField("seq") else None
        if self.unborn(s, topic, seq, "DDATA"):
            return
        seq = self.take_seq(s, topic, raw_pb, "DDATA")
        s.data_seen = True
        if device in s.dead:
            self.violation(topic, seq, f"DDATA of {device} between its DDEATH and its next DBIRTH")
            return
        birth = s.dbirths.get(device)
        if birth is None:
            self.violation(topic, seq, f"DDATA of {device} before its DBIRTH in this session")
            return
        if not self.bound(topic, seq, raw_pb, birth, "DDATA"):
            return
        d = self.decode(spb.DData, topic, raw, seq, birth=birth)
        if d is not None:
            self.check_data_metrics(s, topic, seq, d, raw_pb, birth)

    def on_ndata(self, s, at, topic, device, raw, raw_pb):
        seq = raw_pb.seq if raw_pb.HasField("seq") else None
        if self.unborn(s, topic, seq, "NDATA"):
            return
        seq = self.take_seq(s, topic, raw_pb, "NDATA")
        s.data_seen = True
        if not self.bound(topic, seq, raw_pb, s.nbirth, "NDATA"):
            return
        d = self.decode(spb.NData, topic, raw, seq, birth=s.nbirth)
        if d is not None:
            self.check_data_metrics(s, topic, seq, d, raw_pb, s.nbirth)

    def on_ddeath(self, s, at, topic, device, raw, raw_pb):
        seq = raw_pb.seq if raw_pb.HasField("seq") else None
        if self.unborn(s, topic, seq, "DDEATH"):
            return
        seq = self.take_seq(s, topic, raw_pb, "DDEATH")
        if self.decode(spb.DDeath, topic, raw, seq) is None:
            return
        if device not in s.alive:
            self.violation(
                topic, seq, f"DDEATH of {device}, not born (or already dead) in this session"
            )
        self.event(f"DDEATH {device} seq={seq}")
        s.alive.discard(device)
        s.dead.add(device)
        self.died.add(device)
        self.device_deaths[device] += 1

    def on_ndeath(self, s, at, topic, device, raw, raw_pb):
        d = self.decode(spb.NDeath, topic, raw)
        if d is None:
            return
        # pysparkplug 0.6.1 drops an NDEATH's timestamp (its test is
        # inverted): read it from the protobuf.
        if not raw_pb.HasField("timestamp"):
            self.violation(topic, None, "NDEATH without timestamp")
        m = d.bd_seq_metric
        if m.name != BD_SEQ or not isinstance(m.value, int):
            self.violation(topic, None, f"NDEATH's metric is {m.name}={m.value!r}, not bdSeq")
            return
        if raw_pb.HasField("seq"):
            self.note(f"NDEATH bdSeq={m.value} carries a seq ({raw_pb.seq})")
        if not s.born:
            # A session that never published its births (it waited for
            # the primary host) ends with an NDEATH no NBIRTH announced;
            # a host ignores an NDEATH whose bdSeq is not its node's.
            self.unborn_ndeaths.append(m.value)
            self.event(f"NDEATH bdSeq={m.value} (a session never born)")
            if s.bd_seq is not None and m.value == s.bd_seq:
                self.violation(topic, None, f"a second NDEATH for bdSeq {m.value}")
            return
        if m.value != s.bd_seq:
            self.violation(
                topic, None, f"NDEATH bdSeq {m.value}, its session's NBIRTH had {s.bd_seq}"
            )
        self.event(f"NDEATH bdSeq={m.value}")
        self.end_round(s, "the NDEATH")
        s.born = False
        s.sessions[-1][2] = "NDEATH"
        s.next_seq = None
        s.alive = set()
        s.dead = set()
        self.ndeaths_ended += 1
        if (
            self.offline_sent is not None
            and self.online_again_sent is None
            and self.ndeath_after_offline is None
        ):
            self.ndeath_after_offline = at

    # ----------------------------------------------------------------- run

    def actions(self, now):
        if self.t0 is None:
            return
        since = now - self.t0
        while self.rebirth_plan and since >= self.rebirth_plan[0]:
            self.rebirth_plan.pop(0)
            self.send_rebirth()
        for sent, bd in self.rebirth_pending:
            if now - sent > ANSWER_WITHIN:
                self.violation(
                    f"NCMD bdSeq={bd}",
                    None,
                    f"no rebirth within {ANSWER_WITHIN:.0f} s of NCMD {REBIRTH}",
                )
                self.rebirth_pending.remove((sent, bd))
                break
        a = self.args
        if self.primary and a.offline_after is not None:
            if self.offline_sent is None and since >= a.offline_after:
                self.offline_sent = now
                self.publish_state(False)
            elif (
                self.offline_sent is not None
                and self.online_again_sent is None
                and now - self.offline_sent >= a.offline_for
            ):
                if self.ndeath_after_offline is None:
                    self.violation("STATE", None, "no NDEATH after the primary host went offline")
                self.online_again_sent = now
                self.publish_state(True)
            elif (
                self.online_again_sent is not None
                and self.nbirth_after_online is None
                and now - self.online_again_sent > ANSWER_WITHIN
            ):
                self.violation(
                    "STATE",
                    None,
                    f"no NBIRTH within {ANSWER_WITHIN:.0f} s of the host coming back online",
                )
                self.nbirth_after_online = -1

    def run(self):
        self.connect()
        deadline = time.monotonic() + self.args.timeout
        end_at = None
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        while not stop:
            now = time.monotonic()
            if end_at is None and self.args.ndeaths and self.ndeaths_ended >= self.args.ndeaths:
                end_at = now + 1.0
            if end_at is not None and now >= end_at:
                break
            if now >= deadline:
                self.violation(
                    "host",
                    None,
                    f"timed out after {self.args.timeout} s with {self.ndeaths_ended} of {self.args.ndeaths} NDEATHs",
                )
                break
            try:
                ev = self.q.get(timeout=0.1)
            except queue.Empty:
                ev = None
            if ev is not None and ev[0] == "message":
                self.on_message(*ev[1:])
            self.actions(time.monotonic())
        # Drain what already arrived.
        while True:
            try:
                ev = self.q.get_nowait()
            except queue.Empty:
                break
            if ev[0] == "message":
                self.on_message(*ev[1:])
        if self.primary:
            self.publish_state(False)
        self.client.disconnect()
        self.client.loop_stop()
        return self.finish()

    def finish(self):
        a = self.args
        for s in self.nodes.values():
            if s.born:
                self.end_round(s, "the end")
        if self.rebirth_plan or self.rebirth_pending:
            self.violation(
                "NCMD",
                None,
                f"rebirths not answered: {len(self.rebirth_plan) + len(self.rebirth_pending)}",
            )
        for dev in filter(None, (a.expect_death or "").split(",")):
            if self.device_deaths[dev] == 0:
                self.violation("DDEATH", None, f"no DDEATH of {dev}")
            elif self.device_rebirths[dev] == 0:
                self.violation("DBIRTH", None, f"no DBIRTH of {dev} with values after its DDEATH")
        if a.expect_historical and self.history_after_online == 0:
            self.violation(
                "DDATA", None, "no is_historical metric after the primary host came back"
            )
        if a.offline_after is not None and self.primary and self.nbirth_after_online in (None, -1):
            self.violation("NBIRTH", None, "no births after the primary host came back")
        if not self.nodes:
            self.violation("host", None, "no edge node seen")
        elif self.ndeaths_ended < a.ndeaths:
            self.violation(
                "NDEATH",
                None,
                f"{self.ndeaths_ended} NDEATHs of born sessions, expected {a.ndeaths}",
            )

        print("---- sparkplug host summary (pysparkplug " + spb.__version__ + ")")
        order = [
            "NBIRTH",
            "DBIRTH",
            "DDATA",
            "NDATA",
            "DDEATH",
            "NDEATH",
            "STATE",
            "NCMD",
            "DCMD",
            "undecodable",
        ]
        print("messages: " + ", ".join(f"{k} {self.counts[k]}" for k in order if self.counts[k]))
        for (g, n), s in self.nodes.items():
            for bd, births, how in s.sessions:
                print(
                    f"node {g}/{n} session bdSeq {bd}: {births} NBIRTH ({births - 1} rebirths), ended by {how}"
                )
            if self.unborn_ndeaths:
                print(
                    f"node {g}/{n}: NDEATH of sessions never born (waiting for the host): bdSeq {self.unborn_ndeaths}"
                )
        print(
            f"metrics: {self.metrics} decoded, {self.historical} historical"
            f" ({self.history_after_online} after the host came back), {self.nulls} null"
        )
        print("properties: " + ", ".join(f"{k} {v}" for k, v in sorted(self.props.items())))
        print(f"quality: good {self.quality['good']}, bad {self.quality['bad']}")
        if self.counts["metrics without timestamp"]:
            print(f"metrics without timestamp: {self.counts['metrics without timestamp']}")
        for dev in sorted(set(self.device_deaths) | set(self.device_rebirths)):
            print(
                f"device {dev}: {self.device_deaths[dev]} DDEATH, {self.device_rebirths[dev]} DBIRTH with values after one"
            )
        print(f"rebirth requests answered: {self.rebirths_answered}")
        if self.counts["DBIRTH after data"]:
            print(f"DBIRTH mid-session (after data): {self.counts['DBIRTH after data']}")
        if self.counts["DBIRTH of a born device"]:
            print(
                f"DBIRTH of a device already born (no DDEATH between): {self.counts['DBIRTH of a born device']}"
            )
        for dev, seq in self.dead_dbirths:
            print(f"DBIRTH of {dev} (seq {seq}) with every tag null")
        if self.primary:
            gap = (
                f"{self.ndeath_after_offline - self.offline_sent:.2f} s"
                if self.ndeath_after_offline and self.offline_sent
                else "-"
            )
            back = (
                f"{self.nbirth_after_online - self.online_again_sent:.2f} s"
                if self.nbirth_after_online not in (None, -1) and self.online_again_sent
                else "-"
            )
            print(
                f"primary host {self.primary}: NDEATH {gap} after offline, NBIRTH {back} after online"
            )
        print(f"violations: {len(self.violations)}")
        for v in self.violations:
            print("  " + v)
        return 1 if self.violations else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", required=True, help="HOST:PORT")
    p.add_argument(
        "--devices", default="", help="devices every NBIRTH must be followed by a DBIRTH of"
    )
    p.add_argument("--primary", default=None, help="act as this primary host (STATE)")
    p.add_argument("--offline-after", type=float, default=None, help="s after the first NBIRTH")
    p.add_argument("--offline-for", type=float, default=8.0)
    p.add_argument("--rebirth-after", default="", help="s after the first NBIRTH, comma separated")
    p.add_argument("--expect-death", default="", help="devices that must die and be born again")
    p.add_argument("--expect-historical", action="store_true")
    p.add_argument(
        "--ndeaths", type=int, default=1, help="end after this many NDEATHs of born sessions"
    )
    p.add_argument("--timeout", type=float, default=60.0)
    sys.exit(Host(p.parse_args()).run())


if __name__ == "__main__":
    main()
