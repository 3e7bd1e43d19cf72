#!/usr/bin/env python3
"""Write-back (issue #19) against pymodbus: the commands run.sh publishes, and
the checks of what came of them, for pymodbus-tcp-write and pymodbus-rtu-write.

    check_writes.py prepare  --tcp PORT | --serial PATH [--baud B]
    check_writes.py commands
    check_writes.py check    --tcp PORT | --serial PATH [--baud B]
                             --results FILE --writes FILE --server-log FILE
                             --functions tcp|rtu

prepare, before fieldgate starts: gives the registers the commands write known
values (an `old` to find in the results; register 18 with bits 0, 2 and 15 set,
which the write of its bit 3 must keep), with FC16 and FC15 only, and reads
them back (pymodbus keeps a client's writes).

commands: one line per command, `DEVICE/TAG<TAB>PAYLOAD`, in the order to
publish them.

check, after fieldgate stopped:
  * every command has exactly one result on `.../cmd/+/+/result` (the
    `mosquitto_sub -v` output in --results): `verified` with `read_back` and
    `old` as expected, or `rejected` with its reason;
  * `fieldgate writes --json` (in --writes) lists every command with the same
    result, device, tag, value and `by`;
  * an independent pymodbus client reads the raw words and coil: 42.5 at
    scale 0.1 is 425, the f32 in CDAB order, the u32 in ABCD, bit 3 set with
    bits 0, 2 and 15 kept, the string NUL-padded; the refused commands left
    their registers as they were;
  * the server's debug log (pymodbus_server.py -v, in --server-log) shows
    exactly one write request per accepted command, none for a refused one,
    each with the function code the device's `write_functions` calls for.
Prints what it found; exits 1 with the reasons when anything differs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import struct
import sys
from collections import Counter
from typing import Any

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

UNIT = 1
DEVICE = "pym"
BY = "interop"


def f32_cdab(value: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [lo, hi]


def u32_abcd(value: int) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">I", value)))


def text_regs(text: str, registers: int) -> list[int]:
    raw = text.encode("ascii").ljust(2 * registers, b"\0")
    return list(struct.unpack(f">{registers}H", raw))


# What prepare writes (address, registers), all with FC16, and the coil
# (with FC15). Register 12 = 40.0 degC at scale 0.1; 18 = bits 0, 2, 15.
PREPARE_REGS = [
    (12, [400]),
    (14, f32_cdab(1.5)),
    (16, [0, 7]),
    (18, [0x8005]),
    (20, text_regs("OLD", 4)),
]
PREPARE_COIL = (2, False)

# (id, tag, v, result, reason, old). The refused commands come last, so
# that a refused command wrongly written would show in the registers.
# 100.0078125 is 0x42C80400: exact in an f32, and neither word is 0, so a
# swapped word order shows.
COMMANDS: list[tuple[str, str, Any, str, str | None, Any]] = [
    ("w-setpoint", "setpoint", 42.5, "verified", None, 40.0),
    ("w-flow", "flow", 100.0078125, "verified", None, 1.5),
    ("w-total", "total", 305419896, "verified", None, 7),
    ("w-horn", "horn", True, "verified", None, False),
    ("w-label", "label", "TANK-9", "verified", None, "OLD"),
    ("w-run", "run", True, "verified", None, False),
    ("w-setpoint-high", "setpoint", 95.0, "rejected", "out_of_range", None),
    ("w-u-readonly", "u", 1, "rejected", "not_writable", None),
]

# The raw words (or coil) each address must hold at the end.
EXPECT_REGS = {
    0: 1234,  # `u`: not writable, as pymodbus_server.py set it
    12: 425,  # 42.5 at scale 0.1; the refused 95.0 would be 950
    14: 0x0400,  # 100.0078125 = 0x42C80400, CDAB: low word first
    15: 0x42C8,
    16: 0x1234,  # 305419896 = 0x12345678, ABCD
    17: 0x5678,
    18: 0x800D,  # 0x8005 with bit 3 set
    20: 0x5441,  # "TA"
    21: 0x4E4B,  # "NK"
    22: 0x2D39,  # "-9"
    23: 0x0000,  # NUL padding
}
EXPECT_COIL = (2, True)

# The write requests fieldgate must send, (function code, address), one per
# accepted command. TCP: the default write functions; RTU: the device takes
# only 15 and 16.
EXPECT_FUNCTIONS = {
    "tcp": Counter([(6, 12), (16, 14), (16, 16), (6, 18), (16, 20), (5, 2)]),
    "rtu": Counter([(16, 12), (16, 14), (16, 16), (16, 18), (16, 20), (15, 2)]),
}
WRITE_CODES = (5, 6, 15, 16)


def client(args: argparse.Namespace) -> ModbusTcpClient | ModbusSerialClient:
    if args.tcp is not None:
        c: ModbusTcpClient | ModbusSerialClient = ModbusTcpClient(
            "127.0.0.1", port=args.tcp, timeout=1, retries=1
        )
    else:
        c = ModbusSerialClient(
            args.serial,
            framer=FramerType.RTU,
            baudrate=args.baud,
            bytesize=8,
            parity="N",
            stopbits=1,
            timeout=1,
            retries=1,
        )
    if not c.connect():
        sys.exit(f"check_writes: cannot connect to the pymodbus server ({args.tcp or args.serial})")
    return c


def ok(reply: Any, what: str) -> Any:
    if reply.isError():
        sys.exit(f"check_writes: {what}: {reply}")
    return reply


def read_regs(c: Any, address: int, count: int) -> list[int]:
    reply = ok(c.read_holding_registers(address, count=count, device_id=UNIT), f"read holding {address}")
    return list(reply.registers)


def read_coil(c: Any, address: int) -> bool:
    reply = ok(c.read_coils(address, count=1, device_id=UNIT), f"read coil {address}")
    return bool(reply.bits[0])


def prepare(args: argparse.Namespace) -> int:
    c = client(args)
    try:
        for address, regs in PREPARE_REGS:
            ok(c.write_registers(address, regs, device_id=UNIT), f"write holding {address}")
        address, value = PREPARE_COIL
        ok(c.write_coils(address, [value], device_id=UNIT), f"write coil {address}")
        for address, regs in PREPARE_REGS:
            got = read_regs(c, address, len(regs))
            if got != regs:
                sys.exit(f"check_writes: pymodbus did not keep holding {address}: {got} != {regs}")
        if read_coil(c, address) != value:
            sys.exit(f"check_writes: pymodbus did not keep coil {address}")
    finally:
        c.close()
    print("check_writes: prepared holding 12-23 and coil 2")
    return 0


def commands(_: argparse.Namespace) -> int:
    for cid, tag, v, *_rest in COMMANDS:
        print(f"{DEVICE}/{tag}\t{json.dumps({'v': v, 'id': cid, 'by': BY})}")
    return 0


# The f32 tags: fieldgate writes an f32's value with f32's shortest digits
# (0x42C80400 as 100.00781, not 100.0078125), so they compare as f32.
F32_TAGS = {"flow"}


def same(a: Any, b: Any, f32: bool = False) -> bool:
    """Equal values, numbers compared as numbers (42.5 == 42.50000001 from
    an f64 round trip through scale 0.1) or as f32, bools only with bools."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if f32:
            return struct.pack(">f", a) == struct.pack(">f", b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def check_result(what: str, msg: dict, tag: str, v: Any, result: str, reason: str | None,
                 old: Any, errors: list[str]) -> None:
    def want(key: str, expected: Any) -> None:
        if key not in msg:
            errors.append(f"{what}: no `{key}` (expected {expected!r}): {msg}")
        elif not same(msg[key], expected, f32=tag in F32_TAGS and key != "v"):
            errors.append(f"{what}: `{key}` is {msg[key]!r}, expected {expected!r}: {msg}")

    want("result", result)
    want("device", DEVICE)
    want("tag", tag)
    want("v", v)
    want("by", BY)
    if result == "verified":
        want("read_back", v)
        want("old", old)
    else:
        want("reason", reason)
        for key in ("written", "read_back"):
            if msg.get(key) is not None:
                errors.append(f"{what}: refused, yet `{key}` is {msg[key]!r}: {msg}")


def check_results(path: str, errors: list[str]) -> None:
    by_id: dict[str, list[tuple[str, dict]]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            topic, _, payload = line.partition(" ")
            try:
                msg = json.loads(payload)
            except json.JSONDecodeError:
                errors.append(f"result on {topic} is not JSON: {payload!r}")
                continue
            if not isinstance(msg, dict):
                errors.append(f"result on {topic} is not an object: {payload!r}")
                continue
            by_id.setdefault(str(msg.get("id")), []).append((topic, msg))
    known = {cid for cid, *_ in COMMANDS}
    for cid in sorted(set(by_id) - known):
        errors.append(f"a result for no command sent (id {cid}): {by_id[cid]}")
    for cid, tag, v, result, reason, old in COMMANDS:
        got = by_id.get(cid, [])
        if len(got) != 1:
            errors.append(f"command {cid}: {len(got)} results on MQTT, expected 1: {got}")
            continue
        topic, msg = got[0]
        if not topic.endswith(f"/cmd/{DEVICE}/{tag}/result"):
            errors.append(f"command {cid}: result on {topic}, expected .../cmd/{DEVICE}/{tag}/result")
        check_result(f"MQTT result of {cid}", msg, tag, v, result, reason, old, errors)
        print(f"  result  {cid:<16} {msg.get('result')} {msg.get('reason') or ''}"
              f" old={msg.get('old')!r} read_back={msg.get('read_back')!r}".rstrip())


def check_writes(path: str, errors: list[str]) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        errors.append(f"fieldgate writes --json: not JSON ({e})")
        return
    if not isinstance(items, list):
        errors.append(f"fieldgate writes --json: not an array: {items!r}")
        return
    by_id: dict[str, list[dict]] = {}
    for item in items:
        if isinstance(item, dict):
            by_id.setdefault(str(item.get("id")), []).append(item)
    if len(items) != len(COMMANDS):
        errors.append(f"fieldgate writes --json: {len(items)} writes, expected {len(COMMANDS)}")
    for cid, tag, v, result, reason, old in COMMANDS:
        got = by_id.get(cid, [])
        if len(got) != 1:
            errors.append(f"fieldgate writes --json: command {cid} {len(got)} times, expected once")
            continue
        check_result(f"fieldgate writes, {cid}", got[0], tag, v, result, reason, old, errors)
    print(f"  writes  {len(items)} recorded")


def check_device(args: argparse.Namespace, errors: list[str]) -> None:
    c = client(args)
    try:
        regs = dict(enumerate(read_regs(c, 0, 1)))
        regs.update({12 + i: r for i, r in enumerate(read_regs(c, 12, 12))})
        coil = read_coil(c, EXPECT_COIL[0])
    finally:
        c.close()
    for address, want in EXPECT_REGS.items():
        if regs[address] != want:
            errors.append(f"holding {address} is 0x{regs[address]:04X}, expected 0x{want:04X}")
    if coil != EXPECT_COIL[1]:
        errors.append(f"coil {EXPECT_COIL[0]} is {coil}, expected {EXPECT_COIL[1]}")
    words = " ".join(f"{a}=0x{regs[a]:04X}" for a in sorted(EXPECT_REGS))
    print(f"  device  {words} coil{EXPECT_COIL[0]}={int(coil)}")


REQUEST = re.compile(r"decoded PDU function_code\((\d+) sub -?\d+\) -> \w+\(.*?address=(\d+)")


def check_functions(path: str, kind: str, errors: list[str]) -> None:
    """The write requests in pymodbus's log, less prepare's (FC16 to each of
    PREPARE_REGS, FC15 to the coil), are fieldgate's."""
    seen: Counter = Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = REQUEST.search(line)
            if m and int(m.group(1)) in WRITE_CODES:
                seen[(int(m.group(1)), int(m.group(2)))] += 1
    seen.subtract(Counter([(16, a) for a, _ in PREPARE_REGS] + [(15, PREPARE_COIL[0])]))
    if any(n < 0 for n in seen.values()):
        errors.append(f"pymodbus log: prepare's own writes missing ({dict(seen)}); is the server run with -v?")
        return
    fieldgate = +seen
    want = EXPECT_FUNCTIONS[kind]
    if fieldgate != want:
        errors.append(f"write requests (function, address) fieldgate sent: {sorted(fieldgate.elements())},"
                      f" expected {sorted(want.elements())}")
    print(f"  wire    {' '.join(f'FC{fc}@{a}' for fc, a in sorted(fieldgate.elements()))}")


def check(args: argparse.Namespace) -> int:
    errors: list[str] = []
    check_results(args.results, errors)
    check_writes(args.writes, errors)
    check_device(args, errors)
    check_functions(args.server_log, args.functions, errors)
    for e in errors:
        print(f"check_writes: {e}")
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["prepare", "commands", "check"])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--tcp", type=int, metavar="PORT")
    where.add_argument("--serial", metavar="PATH")
    parser.add_argument("--baud", type=int, default=19200)
    parser.add_argument("--results")
    parser.add_argument("--writes")
    parser.add_argument("--server-log")
    parser.add_argument("--functions", choices=sorted(EXPECT_FUNCTIONS))
    args = parser.parse_args()
    if args.mode == "commands":
        return commands(args)
    if args.tcp is None and args.serial is None:
        parser.error("--tcp or --serial")
    if args.mode == "prepare":
        return prepare(args)
    if not (args.results and args.writes and args.server_log and args.functions):
        parser.error("check needs --results, --writes, --server-log and --functions")
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
