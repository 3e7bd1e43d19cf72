#!/usr/bin/env python3
"""A pymodbus 3.16 Modbus server with known values, for fieldgate's interop tests.

    pymodbus_server.py --tcp 15502
    pymodbus_server.py --serial /tmp/ttyA --baud 19200      (RTU, 8N1)

Unit id 1 (any other unit id gets exception 04 from pymodbus). Register map,
0-based protocol addresses:

    holding 0       u16 1234
    holding 1       i16 -42                 (0xFFD6)
    holding 2-3     f32 21.5, ABCD          (0x41AC 0x0000)
    holding 4-5     f32 21.5, CDAB          (0x0000 0x41AC)
    holding 6-7     u32 123456789, ABCD     (0x075B 0xCD15)
    holding 8-11    string "PUMP-01", 4 registers, high byte first, NUL-padded
    holding 12-49   0
    holding 50-59   do not exist: reading them gives exception 02
    holding 60-99   0
    input 0-1       f32 -3.25, ABCD         (0xC050 0x0000)
    input 2-99      0
    coil 0 = true, coil 1 = false, coils 2-99 false
    discrete 0 = true, discrete 1-99 false

The map is written with pymodbus 3.16's SimData/SimDevice, whose addresses are
the 0-based protocol addresses. (The deprecated ModbusSequentialDataBlock(a, ...)
is off by one: it stores SimData(a - 1, ...), so ModbusSequentialDataBlock(1, ...)
holds protocol address 0. It is not used here.)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import struct
import sys

from pymodbus import FramerType
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

UNIT = 1
SIZE = 100  # addresses 0-99 of every area


def regs_f32(value: float) -> list[int]:
    """An f32 as two registers, ABCD (big-endian words)."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def regs_u32(value: int) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">I", value))
    return [hi, lo]


def regs_string(text: str, registers: int) -> list[int]:
    raw = text.encode("ascii").ljust(2 * registers, b"\0")
    assert len(raw) == 2 * registers, "string too long"
    return list(struct.unpack(f">{registers}H", raw))


def holding_map() -> list[int]:
    regs = [0] * SIZE
    regs[0] = 1234
    regs[1] = struct.unpack(">H", struct.pack(">h", -42))[0]  # 0xFFD6
    regs[2:4] = regs_f32(21.5)  # ABCD
    regs[4:6] = list(reversed(regs_f32(21.5)))  # CDAB
    regs[6:8] = regs_u32(123456789)
    regs[8:12] = regs_string("PUMP-01", 4)
    return regs


def input_map() -> list[int]:
    regs = [0] * SIZE
    regs[0:2] = regs_f32(-3.25)
    return regs


def build_device() -> SimDevice:
    hold = holding_map()
    assert hold[1] == 0xFFD6 and hold[2:6] == [0x41AC, 0, 0, 0x41AC]
    coils = [False] * SIZE
    coils[0] = True
    discretes = [False] * SIZE
    discretes[0] = True
    # Four separate blocks (coils, discrete inputs, holding, input); a gap
    # between two SimData entries is an invalid address (exception 02).
    return SimDevice(
        id=UNIT,
        simdata=(
            [SimData(0, values=coils, datatype=DataType.BITS)],
            [SimData(0, values=discretes, datatype=DataType.BITS)],
            [
                SimData(0, values=hold[:50], datatype=DataType.REGISTERS),
                SimData(60, values=hold[60:], datatype=DataType.REGISTERS),
            ],
            [SimData(0, values=input_map(), datatype=DataType.REGISTERS)],
        ),
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT", help="Modbus TCP on 127.0.0.1:PORT")
    where.add_argument("--serial", metavar="PATH", help="Modbus RTU on a serial port (8N1)")
    parser.add_argument("--baud", type=int, default=19200)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="pymodbus_server: %(levelname)s %(message)s",
    )
    device = build_device()
    if args.tcp is not None:
        print(f"pymodbus_server: tcp 127.0.0.1:{args.tcp} unit {UNIT}", flush=True)
        await StartAsyncTcpServer(device, address=("127.0.0.1", args.tcp))
    else:
        # pyserial on a socat pty refuses even parity: 8N1 there.
        print(f"pymodbus_server: rtu {args.serial} {args.baud} 8N1 unit {UNIT}", flush=True)
        await StartAsyncSerialServer(
            device,
            framer=FramerType.RTU,
            port=args.serial,
            baudrate=args.baud,
            bytesize=8,
            parity="N",
            stopbits=1,
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(0)
