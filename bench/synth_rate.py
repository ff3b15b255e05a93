"""Synthesizer throughput: position rows/s generated in-process and loaded into the emulator.

Prints one JSON document and a one-line summary. Starts its own BigQuery emulator (loopback, temp
dir) unless --no-emulator.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from harperbq.bigquery.client import emulator_client
from harperbq.devstack import emulator
from harperbq.synth.params import SynthParams
from harperbq.synth.tables import Generator
from harperbq.synth.write import ensure_tables, load_arrow, table_ids

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def generation(vessels: int, minutes: int) -> dict[str, float]:
    started = time.perf_counter()
    gen = Generator(SynthParams(total_vessels=vessels))
    gen.positions(T0, T0 + 1)  # builds the fleet, the routes and the schedules
    setup_s = time.perf_counter() - started
    rows = 0
    started = time.perf_counter()
    for k in range(minutes // 10):
        rows += gen.positions(T0 + k * 600, T0 + (k + 1) * 600).num_rows
    elapsed = time.perf_counter() - started
    return {
        "vessels": vessels,
        "window_minutes": minutes,
        "setup_s": round(setup_s, 2),
        "rows": rows,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed),
        "rows_per_vessel_day": round(rows / vessels * 1440 / minutes, 1),
    }


def emulator_load(vessels: int, minutes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        emu = emulator.new_emulator(Path(tmp), project="bench")
        emulator.start(emu)
        try:
            client = emulator_client(emu.project, emu.endpoint)
            params = SynthParams(dataset="bench", total_vessels=vessels)
            ensure_tables(client, params)
            table = Generator(params).positions(T0, T0 + minutes * 60)
            started = time.perf_counter()
            load_arrow(client, table_ids(client, params)["positions"], table)
            elapsed = time.perf_counter() - started
            loaded = int(
                next(
                    iter(
                        client.query("SELECT COUNT(*) AS n FROM `bench.vessel_positions`").result()
                    )
                )["n"]
            )
        finally:
            emulator.stop(emu)
    return {"rows": loaded, "seconds": round(elapsed, 3), "rows_per_s": round(loaded / elapsed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vessels", type=int, default=100_000)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--load-vessels", type=int, default=12_000, help="~1 M rows per hour")
    parser.add_argument("--no-emulator", action="store_true")
    args = parser.parse_args()
    result: dict[str, object] = {"generate": generation(args.vessels, args.minutes)}
    if not args.no_emulator:
        result["emulator_load"] = emulator_load(args.load_vessels, 60)
    print(json.dumps(result, indent=2))
    gen = result["generate"]
    assert isinstance(gen, dict)
    line = f"synth_rate: generate {gen['rows_per_s']:,} rows/s ({gen['vessels']:,} vessels)"
    load = result.get("emulator_load")
    if isinstance(load, dict):
        line += f"; emulator load {load['rows_per_s']:,} rows/s ({load['rows']:,} rows, Parquet)"
    print(line)


if __name__ == "__main__":
    main()
