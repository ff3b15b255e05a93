"""End-to-end sync rate vs Harper's raw upsert ceiling, measured in the same run.

Loads N position-like rows into the emulator, then (1) upserts the very records the engine would
write, in the order it writes them (its snapshot read's), into fresh tables of the same
definition: every installed encoding with one client, the best with two (the best out-of-process
ceiling), and inside Harper (bench/harper_upsert.py's component: the in-process ceiling), then
the best once more with the records in a query's order (real BigQuery's snapshot order; the
emulator's differs and costs Harper more), and (2) runs `harperbq sync run --once` as a
subprocess over the same rows with the best ceiling's encoding and `HARPERBQ_PROFILE=1`,
`--engine-runs` times, each into a fresh database dropped after it (as is every ceiling
run's, so Harper holds the same data at every writer run) and each right
after one more ceiling run of the best encoding, so a drift over the bench weighs on both
alike: the ceiling is the best of all its writer runs and the engine the best of its runs, one
estimator on both sides (on this shared machine a single run of either moves by 5 % or more).
Prints JSON and one summary line: engine/best ceiling (aim >= 0.9), the same from the sync's
first write on (its start excluded), each engine run against the ceiling run just before it,
engine/in-process, engine/query-order ceiling, the stage totals and the sync
process's peak RSS (the highest run's own VmHWM, sampled while it runs:
`getrusage(RUSAGE_CHILDREN)` would report this bench's peak, which Linux carries into a child
across exec).

Also the helpers the other sync benches share: the config they write, the rows they load, and a
deadline that leaves no thread behind.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from google.cloud import bigquery

import harper_upsert
from harperbq.bigquery.client import emulator_client, make_read_client
from harperbq.bigquery.read import StorageReader, run_query
from harperbq.bigquery.sql import Column, Query, TableRef, columns_from_schema, select_list
from harperbq.bigquery.types import records_from_batch
from harperbq.config import BigQueryConfig
from harperbq.devstack import emulator, harper
from harperbq.devstack.paths import harper_install_dir
from harperbq.harper.client import HarperClient
from harperbq.harper.encoding import Encoding
from harperbq.harper.schema import ensure_target_table
from harperbq.retry import RetryPolicy
from harperbq.sync.table.keys import WindowIds
from harperbq.sync.table.source import column_spec

Record = dict[str, Any]

REPO = Path(__file__).resolve().parents[1]
SCHEMA = [
    bigquery.SchemaField("timestamp", "TIMESTAMP"),
    bigquery.SchemaField("mmsi", "STRING"),
    bigquery.SchemaField("vessel_name", "STRING"),
    bigquery.SchemaField("latitude", "FLOAT64"),
    bigquery.SchemaField("longitude", "FLOAT64"),
    bigquery.SchemaField("speed_knots", "FLOAT64"),
    bigquery.SchemaField("course", "INT64"),
    bigquery.SchemaField("heading", "INT64"),
    bigquery.SchemaField("status", "STRING"),
    bigquery.SchemaField("destination", "STRING"),
]


def rows_table(n: int, start_s: float) -> pa.Table:
    rng = np.random.default_rng(7)
    vessels = 2_000
    mmsi = (200_000_000 + np.arange(n) % vessels).astype(str)
    seconds = start_s + np.arange(n) // vessels * 60.0
    return pa.table(
        {
            "timestamp": pa.array((seconds * 1e6).astype("int64"), pa.timestamp("us", tz="UTC")),
            "mmsi": mmsi,
            "vessel_name": np.char.add("VESSEL ", mmsi),
            "latitude": rng.uniform(-60, 60, n),
            "longitude": rng.uniform(-180, 180, n),
            "speed_knots": rng.uniform(0, 25, n).round(1),
            "course": rng.integers(0, 360, n),
            "heading": rng.integers(0, 360, n),
            "status": np.where(rng.random(n) < 0.8, "UNDERWAY", "MOORED"),
            "destination": np.full(n, "SGSIN"),
        }
    )


def load(bq: bigquery.Client, ref: TableRef, table: pa.Table) -> None:
    bq.create_dataset(ref.dataset, exists_ok=True)
    bq.create_table(bigquery.Table(str(ref), schema=SCHEMA), exists_ok=True)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    buffer.seek(0)
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET)
    bq.load_table_from_file(buffer, str(ref), job_config=config, size=None).result()


def engine_records(
    bq: bigquery.Client, ref: TableRef, emu: emulator.Emulator
) -> tuple[list[Column], list[Record]]:
    """The very records the engine writes, converted, with their ids, in the order it writes
    them: its first read of a table is a snapshot, a Storage Read session as of an instant
    (`FeedSource._snapshot`), and Harper's rate depends on the rows' order (see
    `query_order`), so the ceiling writes this sequence, not another."""
    columns = columns_from_schema(bq.get_table(str(ref)).schema)
    cfg = BigQueryConfig.model_validate(
        {"projectId": emu.project, "endpoint": emu.endpoint, "storageEndpoint": emu.grpc_endpoint}
    )
    reader = StorageReader(make_read_client(cfg), emu.project, RetryPolicy(), cfg.read_streams)
    at = datetime.now(UTC)
    return columns, _with_ids(reader.read(ref, [c.name for c in columns], "", at), columns)


def query_order(bq: bigquery.Client, ref: TableRef, columns: list[Column]) -> list[Record]:
    """The same records in a query's order. The emulator answers a snapshot read in a different
    order (each page spans most of the table's timestamps, where a query's page spans two or
    three), and Harper takes longer for those pages (its indexes are written all over rather
    than at their ends); real BigQuery reads a snapshot in storage order, like this one. The
    bench reports the engine against this order's rate too."""
    query = Query(f"SELECT {select_list(columns)} FROM {ref.sql}")  # noqa: S608
    return _with_ids(run_query(bq, query, policy=RetryPolicy()).batches(), columns)


def _with_ids(batches: Iterable[pa.RecordBatch], columns: list[Column]) -> list[Record]:
    records: list[Record] = []
    ids = WindowIds(["mmsi", "timestamp"])
    for batch in batches:
        converted, _ = records_from_batch(batch, columns)
        for record in converted:
            record["id"] = ids.id_for(record)
        records += converted
    return records


def upsert_rate(
    node: harper.HarperNode,
    database: str,
    table: str,
    records: list[Record],
    chunk: int,
    encoding: Encoding,
    clients: int,
) -> dict[str, Any]:
    """`records` upserted into `<database>.<table>` by `clients` concurrent clients (each its
    own connection, every `clients`-th record), timed from the first request to
    the last confirmation."""
    shares = [records[i::clients] for i in range(clients)]
    connections = [
        HarperClient(node.url, node.username, node.password, timeout_s=300, encoding=encoding)
        for _ in shares
    ]
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            done = list(
                pool.map(
                    lambda pair: pair[0].upsert(database, table, pair[1], chunk_rows=chunk),
                    zip(connections, shares, strict=True),
                )
            )
        elapsed = time.perf_counter() - started
    finally:
        for connection in connections:
            connection.close()
    assert sum(r.distinct_ids for r in done) == len(records)
    return {
        "encoding": encoding.value,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(len(records) / elapsed),
    }


def ceiling_run(
    node: harper.HarperNode,
    client: HarperClient,
    columns: list[Column],
    database: str,
    records: list[Record],
    chunk: int,
    encoding: Encoding,
    clients: int,
) -> dict[str, Any]:
    """One out-of-process ceiling run into a fresh database, dropped after it, as is each engine
    run's: every writer run finds Harper holding the same (none of the earlier runs' data)."""
    specs = [column_spec(c) for c in columns]
    ensure_target_table(client, database, "Positions", specs, cursor_column="timestamp")
    try:
        return upsert_rate(node, database, "Positions", records, chunk, encoding, clients)
    finally:
        client.drop_database(database)


def ceilings(
    node: harper.HarperNode,
    client: HarperClient,
    columns: list[Column],
    records: list[Record],
    in_query_order: list[Record],
    chunk: int,
    encodings: list[Encoding],
) -> dict[str, Any]:
    """Harper's raw rates for the same records and table definition (reads and conversion are
    excluded): every usable encoding with one client, then the best of them with two clients;
    the best out-of-process rate is the highest of those (and of the runs beside the engine's,
    `main`). Then the in-process ceiling (bench/harper_upsert.py's component: `table.put`
    inside Harper). Last, the best encoding once more with the records in a query's order
    (`query_order`)."""
    runs: list[dict[str, Any]] = []

    def measure(encoding: Encoding, clients: int, rows: list[Record]) -> dict[str, Any]:
        database = f"ceiling{len(runs)}"
        return ceiling_run(node, client, columns, database, rows, chunk, encoding, clients)

    for encoding in encodings:
        runs.append(measure(encoding, 1, records))
    best_single = max(runs, key=lambda r: r["rows_per_s"])
    runs.append(measure(Encoding(best_single["encoding"]), 2, records))
    best = max(runs, key=lambda r: r["rows_per_s"])
    specs = [column_spec(c) for c in columns]
    inside = harper_upsert.in_process_part(client, node, "ceiling_inside", records, specs)
    client.drop_database("ceiling_inside")
    ordered = ceiling_run(
        node,
        client,
        columns,
        "ceiling_query",
        in_query_order,
        chunk,
        Encoding(best["encoding"]),
        best["clients"],
    )
    return {
        "rows": len(records),
        "chunk_rows": chunk,
        "out_of_process": runs,
        "best": best,
        "in_process": inside,
        "query_order": ordered,
    }


def engine(config: Path, password: str) -> dict[str, Any]:
    """The `--once` run's time, peak RSS and stage totals (`HARPERBQ_PROFILE`, src/harperbq/
    profile.py: a few clock reads per page, not per row)."""
    env = dict(os.environ, BENCH_HARPER_PASSWORD=password, HARPERBQ_PROFILE="1")
    log = config.with_suffix(".log")
    started = time.perf_counter()
    code, peak_kib = run_measured(
        [sys.executable, "-m", "harperbq", "sync", "run", "--once", "--config", str(config)],
        env,
        log,
    )
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"sync failed ({code}): {log.read_text()[-2000:]}")
    return {
        "seconds": round(elapsed, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "profile_s": stage_totals(log.read_text()),
    }


def stage_totals(log: str) -> dict[str, float]:
    """The stage totals the sync printed at exit (`harperbq profile (s): read=1.23 ...`)."""
    for line in reversed(log.splitlines()):
        if line.startswith("harperbq profile (s): "):
            pairs = line.removeprefix("harperbq profile (s): ").split()
            return {k: float(v) for k, v in (pair.split("=") for pair in pairs)}
    return {}


def vm_hwm_kib(pid: int) -> int:
    """The process's own peak resident set (VmHWM) in KiB; 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0  # a zombie: no memory left to report


def run_measured(
    argv: list[str], env: dict[str, str], log: Path, every_s: float = 0.05
) -> tuple[int, int]:
    """(exit code, peak RSS in KiB) of a command, output to `log`. The peak is the child's own
    VmHWM, read every `every_s` until it exits (VmHWM never decreases, so the last read before
    the exit is the peak up to then)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, vm_hwm_kib(proc.pid))
            time.sleep(every_s)
    return proc.returncode, peak


def wait_at_most(wait: Callable[[threading.Event], bool], timeout_s: float) -> bool:
    """`wait(stop)` (e.g. `SyncService.wait`) with `stop` set after `timeout_s`. The timer is
    cancelled and joined however `wait` ends: a pending non-daemon timer would keep the
    interpreter alive for the rest of `timeout_s` after the bench printed its result."""
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    try:
        return wait(stop)
    finally:
        timer.cancel()
        timer.join()


def write_config(
    path: Path,
    node: harper.HarperNode,
    emu: emulator.Emulator,
    database: str,
    sync: dict[str, object],
    validation: dict[str, object] | None = None,
    harper_keys: dict[str, object] | None = None,
    **table: object,
) -> Path:
    """A config syncing the bench table into `database` (state in `<database>_state`); `table`
    overrides keys of the table entry, `harper_keys` adds keys to `harper`."""
    data = {
        "harper": {
            "url": node.url,
            "username": node.username,
            "password": "${BENCH_HARPER_PASSWORD}",
            "database": database,
            "stateDatabase": f"{database}_state",
            **(harper_keys or {}),
        },
        "bigquery": {
            "projectId": emu.project,
            "endpoint": emu.endpoint,
            "storageEndpoint": emu.grpc_endpoint,
            "tables": [
                {
                    "id": "positions",
                    "dataset": "bench",
                    "table": "positions",
                    "timestampColumn": "timestamp",
                    "columns": [f.name for f in SCHEMA],
                    "targetTable": "Positions",
                    "primaryKey": ["mmsi", "timestamp"],
                    **table,
                }
            ],
        },
        "sync": sync,
        **({"validation": validation} if validation is not None else {}),
    }
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument(
        "--engine-runs",
        type=int,
        default=3,
        help="`sync run --once` runs, each into a fresh database; the fastest is compared",
    )
    parser.add_argument(
        "--encodings",
        default=",".join(e.value for e in harper_upsert.available_encodings()),
        help="body encodings the out-of-process ceiling tries (every installed one)",
    )
    args = parser.parse_args()
    encodings = [Encoding(e.strip()) for e in args.encodings.split(",") if e.strip()]
    with tempfile.TemporaryDirectory(prefix="harperbq-bench-") as tmp:
        node = harper.new_node(Path(tmp) / "harper", name="bench")
        emu = emulator.new_emulator(Path(tmp) / "emulator", project="bench")
        harper.start(node, harper_install_dir())
        emulator.start(emu)
        try:
            bq = emulator_client(emu.project, emu.endpoint)
            ref = TableRef(emu.project, "bench", "positions")
            load(bq, ref, rows_table(args.rows, time.time() - 30 * 86_400))
            columns, records = engine_records(bq, ref, emu)
            in_query_order = query_order(bq, ref, columns)
            assert sorted(r["id"] for r in records) == sorted(r["id"] for r in in_query_order)
            with HarperClient(node.url, node.username, node.password, timeout_s=300) as client:
                raw = ceilings(
                    node, client, columns, records, in_query_order, args.chunk, encodings
                )
                best = raw["best"]
                runs, beside = [], []
                for i in range(args.engine_runs):
                    # Each engine run right after a ceiling run of the best encoding: a drift of
                    # the machine or of Harper over the bench then weighs on both alike.
                    beside.append(
                        ceiling_run(
                            node,
                            client,
                            columns,
                            f"ceiling_beside{i}",
                            records,
                            args.chunk,
                            Encoding(best["encoding"]),
                            best["clients"],
                        )
                    )
                    # the engine writes with the encoding that gave the best ceiling
                    config = write_config(
                        Path(tmp) / f"config{i}.yaml",
                        node,
                        emu,
                        f"bench{i}",
                        {"settle": "0s"},
                        harper_keys={"encoding": best["encoding"]},
                    )
                    runs.append(engine(config, node.password))
                    client.drop_database(f"bench{i}")
                    client.drop_database(f"bench{i}_state")
            del records, in_query_order
        finally:
            emulator.stop(emu)
            harper.stop(node)
    run = min(runs, key=lambda r: r["seconds"])
    end_to_end = args.rows / run["seconds"]
    # The process's start (imports, schema, feed decision, read session) is latency, not rate:
    # the rate from its first write on is the pipeline's (BigQuery read to Harper confirmation).
    start = run["profile_s"].get("start", 0.0)
    pipeline = args.rows / (run["seconds"] - start)
    raw["beside_engine"] = beside
    best = max([raw["best"], *beside], key=lambda r: r["rows_per_s"])
    raw["best"] = best
    # Each engine run against the ceiling run just before it: the drift-free estimate.
    paired = sorted(c["seconds"] / r["seconds"] for c, r in zip(beside, runs, strict=True))
    inside = raw["in_process"]["rows_per_s"]
    result = {
        "rows": args.rows,
        "ceiling": raw,
        "engine": {
            **run,
            "encoding": best["encoding"],
            "rows_per_s": round(end_to_end),
            "rows_per_s_after_start": round(pipeline),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),  # the highest of the runs
            "runs_s": [r["seconds"] for r in runs],
        },
        "ratio": round(end_to_end / best["rows_per_s"], 3),
        "ratio_after_start": round(pipeline / best["rows_per_s"], 3),
        "ratio_in_process": round(end_to_end / inside, 3),
        # Against the same records in a query's order: what Harper takes for real BigQuery's
        # snapshot order (storage order), which the emulator's snapshot reads do not keep.
        "ratio_query_order": round(end_to_end / raw["query_order"]["rows_per_s"], 3),
        "ratio_paired": [round(r, 3) for r in paired],
        "ratio_paired_median": round(paired[len(paired) // 2], 3),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "note": "2 cores shared by Harper, the emulator and the sync; compare the ratio, not rates",
    }
    print(json.dumps(result, indent=2))
    print(
        f"sync_throughput: engine {end_to_end:,.0f} rows/s vs best out-of-process ceiling "
        f"{best['rows_per_s']:,.0f} rows/s ({best['encoding']}, {best['clients']} client(s)) "
        f"= {result['ratio']:.2f} (aim >= 0.9), {result['ratio_after_start']:.2f} after the "
        f"process's {start:.1f} s start; vs in-process {inside:,.0f} rows/s = "
        f"{result['ratio_in_process']:.2f}; each run vs the ceiling run just before it "
        f"{', '.join(f'{r:.2f}' for r in paired)} (median {result['ratio_paired_median']:.2f}); "
        f"vs the same encoding in a query's order "
        f"{raw['query_order']['rows_per_s']:,.0f} rows/s = {result['ratio_query_order']:.2f}; "
        f"fastest of {len(runs)} engine runs "
        f"({', '.join(f'{r:.1f}' for r in result['engine']['runs_s'])} s); peak RSS "
        f"{result['engine']['peak_rss_mib']} MiB (highest run); stages (s) "
        + " ".join(f"{k} {v:.1f}" for k, v in run["profile_s"].items())
    )


if __name__ == "__main__":
    main()
