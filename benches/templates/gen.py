#!/usr/bin/env python3
"""Writes one plant of N identical pumps three ways, for the `fieldgate check`
benchmark of templates (BENCHMARKS.md, "Templates and device lists"):

  templated.toml + devices.csv    one [[templates]] and a device list of N rows
  by-hand-csv.toml                N [[devices]] naming one CSV tag map, and
                                  every rule and meter written out
  by-hand-inline.toml             the same with each device's tags inline

All three name tags/pump.csv's tags (written beside them) and resolve to the
same devices, rules and meters: every pump has three rules and one meter,
every tenth a higher bearing limit, every twentieth a shorter service
interval. Usage: gen.py OUT_DIR [N]   (N defaults to 200).
"""

import os
import sys

TAGS = [
    # name, address, type, bit, scale, unit, deadband, description
    ("bearing_temp", 30001, "f32", "", "", "degC", "0.5", "Drive-end bearing temperature"),
    ("vibration", 30003, "f32", "", "", "mm/s", "0.1", "Bearing housing vibration (RMS)"),
    ("current", 30005, "u16", "", "0.01", "A", "0.2", "Motor current"),
    ("discharge_pressure", 30006, "u16", "", "0.01", "bar", "0.05", "Discharge pressure"),
    ("flow", 30007, "u16", "", "0.1", "m3/h", "0.5", "Flow through the pump"),
    ("runtime_hours", 30008, "u32", "", "0.1", "h", "", "Runtime counter in the drive"),
    ("running", 40001, "bit", "0", "", "", "", "Pump running (status word bit 0)"),
    ("fault", 40001, "bit", "1", "", "", "", "Drive fault (status word bit 1)"),
]

HEAD = """[gateway]
id = "gw-bench"
site = "plant-a"
data_dir = "/var/lib/fieldgate"

[mqtt]
host = "broker.plant.local"
"""


def pumps(n):
    """Name, address, asset and the two per-pump differences of each pump."""
    for i in range(1, n + 1):
        yield {
            "name": f"pump{i:03}",
            "tcp": f"10.{20 + i // 250}.{i % 250 // 50}.{i % 50 + 10}:502",
            "asset": f"P-{1000 + i}",
            "limit": 85.0 if i % 10 == 0 else None,
            "every": "1500h" if i % 20 == 0 else None,
        }


def tags_csv():
    lines = ["name,address,type,bit,scale,unit,deadband,description"]
    for t in TAGS:
        lines.append(",".join(str(x) for x in t))
    return "\n".join(lines) + "\n"


def inline_tags():
    rows = []
    for name, address, typ, bit, scale, unit, deadband, description in TAGS:
        fields = [f'name = "{name}"', f"address = {address}", f'type = "{typ}"']
        if bit:
            fields.append(f"bit = {bit}")
        if scale:
            fields.append(f"scale = {scale}")
        if unit:
            fields.append(f'unit = "{unit}"')
        if deadband:
            fields.append(f"deadband = {deadband}")
        fields.append(f'description = "{description}"')
        rows.append("  { " + ", ".join(fields) + " },")
    return "tags = [\n" + "\n".join(rows) + "\n]\n"


def templated(n):
    toml = 'devices = "devices.csv"\n\n' + HEAD + """
[[templates]]
name = "pump"
tags = "tags/pump.csv"
word_order = "CDAB"
location = "Pump house"

[[templates.rules]]
name = "bearing_hot"
tag = "bearing_temp"
condition = "above"
limit = 80.0
deadband = 2.0
on_delay = "10s"
priority = "high"
workorder.title = "{asset}: bearing temperature {value} {unit} above {limit} {unit}"
workorder.problem_code = "BRG-HOT"
workorder.procedure = "SOP-PUMP-012"
workorder.snapshot = ["vibration", "current"]

[[templates.rules]]
name = "pressure_band"
tag = "discharge_pressure"
condition = "outside"
low = 2.0
high = 6.5
deadband = 0.2

[[templates.rules]]
name = "dry_run"
condition = "expr"
expr = "{device}.running && {device}.flow < 1.0"
on_delay = "30s"
priority = "critical"
workorder.title = "{device}: running dry"

[[templates.meters]]
name = "service"
tag = "running"
every = "2000h"
workorder = { title = "{asset}: scheduled service", procedure = "SOP-PUMP-020" }
"""
    rows = ["name,template,tcp,asset,bearing_hot.limit,service.every"]
    for p in pumps(n):
        limit = "" if p["limit"] is None else str(p["limit"])
        every = p["every"] or ""
        rows.append(f'{p["name"]},pump,{p["tcp"]},{p["asset"]},{limit},{every}')
    return toml, "\n".join(rows) + "\n"


def by_hand(n, inline):
    out = [HEAD]
    for p in pumps(n):
        out.append(f"""
[[devices]]
name = "{p["name"]}"
tcp = "{p["tcp"]}"
word_order = "CDAB"
asset = "{p["asset"]}"
location = "Pump house"
""")
        out.append(inline_tags() if inline else 'tags = "tags/pump.csv"\n')
    for p in pumps(n):
        d, asset = p["name"], p["asset"]
        limit = p["limit"] if p["limit"] is not None else 80.0
        out.append(f"""
[[rules]]
name = "{d}_bearing_hot"
tag = "{d}.bearing_temp"
condition = "above"
limit = {limit}
deadband = 2.0
on_delay = "10s"
priority = "high"
workorder.title = "{asset}: bearing temperature {{value}} {{unit}} above {{limit}} {{unit}}"
workorder.problem_code = "BRG-HOT"
workorder.procedure = "SOP-PUMP-012"
workorder.snapshot = ["{d}.vibration", "{d}.current"]

[[rules]]
name = "{d}_pressure_band"
tag = "{d}.discharge_pressure"
condition = "outside"
low = 2.0
high = 6.5
deadband = 0.2

[[rules]]
name = "{d}_dry_run"
condition = "expr"
expr = "{d}.running && {d}.flow < 1.0"
on_delay = "30s"
priority = "critical"
workorder.title = "{d}: running dry"
""")
    for p in pumps(n):
        d, asset = p["name"], p["asset"]
        out.append(f"""
[[meters]]
name = "{d}_service"
tag = "{d}.running"
every = "{p["every"] or "2000h"}"
workorder = {{ title = "{asset}: scheduled service", procedure = "SOP-PUMP-020" }}
""")
    return "".join(out)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) == 3 else 200
    os.makedirs(os.path.join(out, "tags"), exist_ok=True)
    files = {"tags/pump.csv": tags_csv()}
    files["templated.toml"], files["devices.csv"] = templated(n)
    files["by-hand-csv.toml"] = by_hand(n, inline=False)
    files["by-hand-inline.toml"] = by_hand(n, inline=True)
    for name, text in files.items():
        with open(os.path.join(out, name), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
