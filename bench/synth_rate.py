"""Synthesizer throughput: position rows/s generated in-process and loaded into the emulator.

Compares the generation rate with the original JavaScript generator's (HarperFast/harper-bigquery-
sync, `src/generator.js`): measured in the same run when a checkout of that repository is given
(--original-dir or $HARPERBQ_ORIGINAL_DIR; it is only imported by node from there, never copied),
else the figure measured earlier on this machine, stated below. Rounds of ours and of the
original's alternate (--rounds); each side's best round counts. Prints one JSON document and a
one-line summary. Starts its own BigQuery emulator (loopback, temp dir) unless --no-emulator.
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harperbq.bigquery.client import emulator_client
from harperbq.devstack import emulator
from harperbq.synth.params import SynthParams
from harperbq.synth.tables import Generator
from harperbq.synth.write import ensure_tables, load_arrow, table_ids

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
AIM = 10.0  # issue 15: at least 10x the original generator's rate
# The original's rate when it cannot be run here: the figure of issue 15, measured earlier on this
# machine (2 shared cores) beside this bench. This bench's own harness (`_NODE_HARNESS`) measured
# 176 597 rows/s on 2026-12-02; the higher figure is kept as the conservative one.
STATED_ORIGINAL = {
    "rows_per_s": 196_000,
    "how": "stated: issue 15's figure for the original JS generator, measured earlier on this "
    "machine; no checkout given (--original-dir) to time src/generator.js in this run",
}
# Times generateBatch of the original generator, imported from the checkout given (never copied).
_NODE_HARNESS = """
const { default: Generator } = await import(process.env.ORIGINAL_GENERATOR);
const log = console.log; console.log = () => {};
const gen = new Generator({ totalVessels: Number(process.env.VESSELS) });
console.log = log;
gen.generateBatch(10000);
const target = Number(process.env.ROWS);
let rows = 0;
const t0 = process.hrtime.bigint();
while (rows < target) rows += gen.generateBatch(10000).length;
const s = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ rows, seconds: s, node: process.version }));
"""


def generation(vessels: int, minutes: int, rounds: int = 1) -> tuple[Generator, dict[str, object]]:
    """The first `minutes` in 10-minute windows, after the setup call; more rounds: see main."""
    started = time.perf_counter()
    gen = Generator(SynthParams(total_vessels=vessels))
    gen.positions(T0, T0 + 1)  # builds the fleet, the routes and the schedules
    setup_s = time.perf_counter() - started
    result = generation_round(gen, vessels, minutes, 0)
    return gen, {"setup_s": round(setup_s, 2), **result}


def generation_round(gen: Generator, vessels: int, minutes: int, k: int) -> dict[str, object]:
    """Round k: the k-th span of `minutes` after T0, in 10-minute windows, as `synth start`."""
    rows = 0
    cpu = time.process_time()
    started = time.perf_counter()
    first = k * (minutes // 10)
    for w in range(first, first + minutes // 10):
        rows += gen.positions(T0 + w * 600, T0 + (w + 1) * 600).num_rows
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - cpu
    return {
        "vessels": vessels,
        "window_minutes": minutes,
        "rows": rows,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed),
        "cpu_seconds": round(cpu_s, 3),  # both threads (text columns are built in a second one)
        "rows_per_vessel_day": round(rows / vessels * 1440 / minutes, 1),
    }


def original_rate(checkout: str | None, vessels: int, rows: int) -> dict[str, object]:
    """The original generator's rows/s: run under node from `checkout`, else the stated figure."""
    node = shutil.which("node")
    script = Path(checkout) / "src" / "generator.js" if checkout else None
    if script is None or not script.is_file() or node is None:
        missing = "no node" if node is None else f"no src/generator.js in {checkout}"
        stated = dict(STATED_ORIGINAL)
        if checkout:
            stated["how"] = f"{stated['how']} ({missing})"
        return stated
    env = {
        **os.environ,
        "ORIGINAL_GENERATOR": script.resolve().as_uri(),
        "VESSELS": str(vessels),
        "ROWS": str(rows),
    }
    out = (
        subprocess.run(
            [node, "--input-type=module", "-e", _NODE_HARNESS],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    got = json.loads(out)
    commit = _commit(Path(checkout)) if checkout else None
    return {
        "rows_per_s": round(got["rows"] / got["seconds"]),
        "rows": got["rows"],
        "seconds": round(got["seconds"], 3),
        "how": f"measured in this run: {script} (commit {commit or 'unknown'}) under node "
        f"{got['node']}, generateBatch(10000) x {got['rows'] // 10000}, {vessels:,} vessels, "
        "after one warm-up batch",
    }


def _commit(checkout: Path) -> str | None:
    marker = checkout / "COMMIT"
    if marker.is_file():
        return marker.read_text().strip()[:7]
    try:
        head = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() or None


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
    parser.add_argument(
        "--original-dir",
        default=os.environ.get("HARPERBQ_ORIGINAL_DIR"),
        help="checkout of HarperFast/harper-bigquery-sync: time its generator in this run",
    )
    parser.add_argument("--original-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best counts")
    args = parser.parse_args()
    # Ours and the original's rounds alternate, and each side's best round counts: on this shared
    # machine the load moves by the second, and the best round is the least disturbed one.
    gen_obj, first = generation(args.vessels, args.minutes)
    ours = [first]
    theirs = [original_rate(args.original_dir, args.vessels, args.original_rows)]
    measured_here = "rows" in theirs[0]
    for k in range(1, args.rounds):
        ours.append(generation_round(gen_obj, args.vessels, args.minutes, k))
        if measured_here:
            theirs.append(original_rate(args.original_dir, args.vessels, args.original_rows))
    gen = {**max(ours, key=lambda r: int(str(r["rows_per_s"]))), "setup_s": first["setup_s"]}
    gen["rounds_rows_per_s"] = [r["rows_per_s"] for r in ours]
    original = dict(max(theirs, key=lambda r: int(str(r["rows_per_s"]))))
    if measured_here:
        original["rounds_rows_per_s"] = [r["rows_per_s"] for r in theirs]
    base = original["rows_per_s"]
    assert isinstance(base, int)
    rate = gen["rows_per_s"]
    assert isinstance(rate, int)
    ratio = rate / base
    result: dict[str, object] = {
        "generate": gen,
        "original": original,
        "ratio_to_original": round(ratio, 2),
        "how_compared": f"best of {args.rounds} alternating rounds each"
        if measured_here
        else f"our best of {args.rounds} rounds against the stated figure",
        "aim": f">= {AIM:g}x ({round(AIM * base):,} rows/s)",
    }
    if not args.no_emulator:
        result["emulator_load"] = emulator_load(args.load_vessels, 60)
    print(json.dumps(result, indent=2))
    measured = "measured in this run" if measured_here else "stated"
    line = (
        f"synth_rate: generate {gen['rows_per_s']:,} rows/s ({gen['vessels']:,} vessels), "
        f"{ratio:.1f}x the original's {base:,} rows/s ({measured}; aim {AIM:g}x)"
    )
    load = result.get("emulator_load")
    if isinstance(load, dict):
        line += f"; emulator load {load['rows_per_s']:,} rows/s ({load['rows']:,} rows, Parquet)"
    print(line)


if __name__ == "__main__":
    main()
