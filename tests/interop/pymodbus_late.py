#!/usr/bin/env python3
"""A pymodbus 3.16 RTU server that answers its first read of address 0 late.

    pymodbus_late.py --serial /tmp/ttyA --baud 9600 --late-ms 450

The device of issue #15 item 1 (RTU, 8N1, unit 1): holding registers, 0-based
protocol addresses, f32 ABCD

    holding 0-1     f32 1.0     (0x3F80 0x0000)
    holding 100-101 f32 2.0     (0x4000 0x0000)
    holding 200-201 f32 3.0     (0x4040 0x0000)
    every other holding register up to 209: 0

The first read (FC 3) that starts at address 0 is answered after --late-ms
milliseconds; every other request at once. A client with a shorter timeout
has given up by then, and the late answer lands in its tty buffer: a client
that does not clear its line takes it as the answer to its next request of
the same shape (the registers of address 0 read as those of 100), and stays
one answer behind from then on.

Written with SimData/SimDevice (0-based protocol addresses; the deprecated
ModbusSequentialDataBlock(a, ...) is off by one), and an async `action`
called before each access is answered.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pymodbus import FramerType
from pymodbus.server import StartAsyncSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from pymodbus_server import regs_f32

UNIT = 1
SIZE = 210
READ_HOLDING = 3


def holding_map() -> list[int]:
    regs = [0] * SIZE
    regs[0:2] = regs_f32(1.0)
    regs[100:102] = regs_f32(2.0)
    regs[200:202] = regs_f32(3.0)
    assert regs[0:2] == [0x3F80, 0] and regs[200:202] == [0x4040, 0]
    return regs


def late_once(late_ms: int):
    """An action that delays the first read of address 0 by `late_ms`."""
    done = False

    async def action(function_code, _start, address, _count, _registers, set_values):
        nonlocal done
        if not done and function_code == READ_HOLDING and address == 0 and set_values is None:
            done = True
            print(f"pymodbus_late: answering the read of address 0 after {late_ms} ms", flush=True)
            await asyncio.sleep(late_ms / 1000)
        return None

    return action


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serial", required=True, metavar="PATH", help="serial port (8N1)")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--late-ms", type=int, default=450)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="pymodbus_late: %(levelname)s %(message)s",
    )
    device = SimDevice(
        id=UNIT,
        simdata=(
            [SimData(0, values=[False] * 8, datatype=DataType.BITS)],
            [SimData(0, values=[False] * 8, datatype=DataType.BITS)],
            [SimData(0, values=holding_map(), datatype=DataType.REGISTERS)],
            [SimData(0, values=[0] * 8, datatype=DataType.REGISTERS)],
        ),
        action=late_once(args.late_ms),
    )
    # pyserial on a socat pty refuses even parity: 8N1 there.
    print(f"pymodbus_late: rtu {args.serial} {args.baud} 8N1 unit {UNIT}", flush=True)
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
