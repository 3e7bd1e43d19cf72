#!/usr/bin/env python3
"""An edge node that breaks the rules, so that sparkplug_host.py is seen to
catch what it checks (a checker that never fails proves nothing). Encodes
with pysparkplug, publishes over paho-mqtt 1.6; prints, one a line, the
violations the host must report (a phrase of each).

    python tests/interop/sparkplug_bad_node.py 127.0.0.1:PORT > expected.txt
"""

import sys

import paho.mqtt.client as mqtt
import pysparkplug as spb

DT = spb.DataType


def metric(name, datatype, value, alias=None, historical=False, ts=1):
    return spb.Metric(
        timestamp=ts,
        name=name,
        datatype=datatype,
        value=value,
        alias=alias,
        is_historical=historical,
    )


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    c = mqtt.Client(client_id="sparkplug-bad-node", clean_session=True)
    c.connect(host, int(port), keepalive=10)
    c.loop_start()
    expected = []

    def pub(kind, payload, device=None, expect=None):
        topic = f"spBv1.0/bad/{kind}/node" + (f"/{device}" if device else "")
        raw = payload if isinstance(payload, bytes) else payload.encode(include_dtypes=True)
        c.publish(topic, raw, 0).wait_for_publish(5)
        if expect:
            expected.append(expect)

    def data(seq, alias, **kw):
        metrics = (metric(None, DT.DOUBLE, 1.0, alias, **kw),)
        return spb.DData(timestamp=100, seq=seq, metrics=metrics)

    pub("DDATA", data(3, 9), "d1", "DDATA outside a session")
    pub(
        "NBIRTH",
        spb.NBirth(
            timestamp=100,
            seq=0,
            metrics=(
                metric("bdSeq", DT.INT64, 4),
                metric("Node Control/Rebirth", DT.BOOLEAN, False, 1),
            ),
        ),
    )
    pub("DDATA", data(1, 9), "d1", "DDATA of d1 before its DBIRTH")
    pub(
        "DBIRTH",
        spb.DBirth(
            timestamp=100,
            seq=2,
            metrics=(metric("t", DT.DOUBLE, 1.0, 9), metric("u", DT.DOUBLE, 1.0, 1)),
        ),
        "d1",
        "alias 1 (u) already bound by the node",
    )
    pub("DDATA", data(5, 9), "d1", "DDATA seq 5, expected 3")
    pub("DDATA", data(6, 77), "d1", "DDATA alias 77 not bound by the latest birth")
    pub(
        "DDATA",
        data(7, 9, historical=True, ts=200),
        "d1",
        "stamped 200, after its session's NBIRTH (100)",
    )
    pub("DDEATH", spb.DDeath(timestamp=100, seq=8), "d1")
    pub("DDATA", data(9, 9), "d1", "DDATA of d1 between its DDEATH and its next DBIRTH")
    pub("NDATA", b"\xff\xff not protobuf", None, "not a Sparkplug B payload")
    pub(
        "NDEATH",
        spb.NDeath(timestamp=100, bd_seq_metric=metric("bdSeq", DT.INT64, 5)),
        None,
        "NDEATH bdSeq 5, its session's NBIRTH had 4",
    )
    c.loop_stop()
    c.disconnect()
    expected.append("no DBIRTH of d2 before the NDEATH")
    print("\n".join(expected))


if __name__ == "__main__":
    main()
