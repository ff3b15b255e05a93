"""Harper upsert rate: declared vs schemaless, each body encoding, and the in-process ceiling.

Three parts, one run, one Harper node of its own (started from the pinned npm install, stopped
afterwards), N position-like rows of 12 fields:
- tables: a table created the way harperbq creates targets (declared, typed attributes; indexes
  on `id` and `timestamp` only) against a schemaless one (Harper indexes every attribute), in
  chunks of 1 000 / 5 000 / 10 000 rows, through `HarperClient.upsert` (every id confirmed);
- encodings: the same rows into a fresh declared table per encoding (stdlib JSON, orjson, CBOR,
  MessagePack; `harper.encoding`), chunks of 5 000 (the client's default), two rounds in
  opposite orders so drift on a shared machine favours no encoding; the rate is rows over the
  summed time of both rounds;
- in-process: a tiny Harper component (written by the bench into Harper's components root and
  loaded by restarting the HTTP workers) receives the same rows once, then writes them with the
  table API (`table.put` in one transaction per 5 000 rows) into a fresh declared table, timing
  itself inside Harper: the physical limit of a writer, with no HTTP, parsing or operation layer.

Prints one JSON document, then one summary line: each encoding's rows/s, the in-process rows/s
and the best encoding's share of it, and the declared/schemaless ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from harperbq.devstack import harper
from harperbq.devstack.harper import HarperNode
from harperbq.devstack.paths import harper_install_dir
from harperbq.harper.client import HarperClient
from harperbq.harper.encoding import Encoding, resolve
from harperbq.harper.errors import HarperError
from harperbq.harper.schema import ColumnSpec, ensure_target_table

REPO = Path(__file__).resolve().parents[1]
CHUNKS = (1_000, 5_000, 10_000)
ENCODING_CHUNK = 5_000
COMPONENT = "harperbq-bench-ingest"
ENDPOINT = "HarperbqBenchIngest"
# The in-process writer. Staging and writing are separate requests so the timed part is only
# the table API: one transaction per chunk, every put of the chunk in it, commit awaited.
RESOURCES_JS = """\
// Written by harperbq's bench/harper_upsert.py: the in-process write ceiling.
// Resource, databases and transaction are globals Harper gives every component.

let staged = [];

export class ENDPOINT extends Resource {
  static loadAsInstance = false;

  async post(target, data) {
    const body = await (data === undefined ? target : data);
    if (body.stage) {
      for (const record of body.stage) staged.push(record);
      return { staged: staged.length };
    }
    const table = databases[body.database][body.table];
    const records = staged;
    staged = [];
    const started = performance.now();
    for (let i = 0; i < records.length; i += body.chunk) {
      const context = {};
      await transaction(context, async () => {
        const pending = [];
        for (const record of records.slice(i, i + body.chunk)) {
          const result = table.put(record.id, record, context);
          if (result && typeof result.then === 'function') pending.push(result);
        }
        await Promise.all(pending);
      });
    }
    return { rows: records.length, seconds: (performance.now() - started) / 1000 };
  }
}
""".replace("ENDPOINT", ENDPOINT)
CONFIG_YAML = "rest: true\njsResource:\n  files: 'resources.js'\n"
COLUMNS = [
    ColumnSpec("timestamp", "TIMESTAMP"),
    ColumnSpec("mmsi", "INT64"),
    ColumnSpec("vessel_name", "STRING"),
    ColumnSpec("latitude", "FLOAT64"),
    ColumnSpec("longitude", "FLOAT64"),
    ColumnSpec("speed_knots", "FLOAT64"),
    ColumnSpec("course", "FLOAT64"),
    ColumnSpec("heading", "INT64"),
    ColumnSpec("status", "STRING"),
    ColumnSpec("destination", "STRING"),
    ColumnSpec("draft", "FLOAT64"),
]
STATUSES = ("under_way_using_engine", "at_anchor", "moored", "engaged_in_fishing")
PORTS = ("SGSIN", "CNSHA", "NLRTM", "USLAX", "BEANR", "DEHAM", "AEJEA", "KRPUS")


def position_rows(n: int, prefix: str) -> list[dict[str, Any]]:
    """12 fields per row (id + the 11 columns), like an AIS position report."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    vessels = 2_000
    rows = []
    for i in range(n):
        vessel = i % vessels
        at = start + timedelta(seconds=(i // vessels) * 60, microseconds=vessel * 37)
        rows.append(
            {
                "id": f"{prefix}-{200_000_000 + vessel}-{i // vessels}",
                "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "mmsi": 200_000_000 + vessel,
                "vessel_name": f"VESSEL {vessel:04d}",
                "latitude": round(-60 + (vessel * 7.31 + i * 0.001) % 120, 6),
                "longitude": round(-180 + (vessel * 13.7 + i * 0.001) % 360, 6),
                "speed_knots": round((vessel % 23) + 0.1 * (i % 10), 1),
                "course": round((vessel * 11.3 + i) % 360, 1),
                "heading": (vessel * 11 + i) % 360,
                "status": STATUSES[vessel % len(STATUSES)],
                "destination": PORTS[vessel % len(PORTS)],
                "draft": round(5 + vessel % 12 + 0.5, 1),
            }
        )
    return rows


@contextmanager
def harper_node() -> Iterator[HarperNode]:
    """A node of our own (the in-process part installs a component, never into the dev stack)."""
    os.environ.setdefault("HARPERBQ_DEV_DIR", str(REPO / ".harperbq"))
    with tempfile.TemporaryDirectory(prefix="harperbq-bench-") as base:
        node = harper.new_node(Path(base) / "harper", name="bench")
        harper.start(node, harper_install_dir())
        try:
            yield node
        finally:
            harper.stop(node)


def measure(
    client: HarperClient, db: str, table: str, kind: str, chunk: int, rows: list[dict[str, Any]]
) -> float:
    if kind == "declared":
        ensure_target_table(client, db, table, COLUMNS, cursor_column="timestamp")
    else:
        client.create_table(db, table)
    started = time.perf_counter()
    result = client.upsert(db, table, rows, chunk_rows=chunk)
    seconds = time.perf_counter() - started
    assert result.distinct_ids == len(rows)
    return seconds


def tables_part(client: HarperClient, db: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for index, chunk in enumerate(CHUNKS):
        order = ("declared", "schemaless") if index % 2 == 0 else ("schemaless", "declared")
        for kind in order:
            seconds = measure(client, db, f"{kind}_{chunk}", kind, chunk, rows)
            results.append(
                {
                    "table": kind,
                    "chunk_rows": chunk,
                    "rows": len(rows),
                    "seconds": round(seconds, 3),
                    "rows_per_s": round(len(rows) / seconds, 1),
                }
            )

    def rate(kind: str, chunk: int) -> float:
        return next(
            float(r["rows_per_s"])
            for r in results
            if r["table"] == kind and r["chunk_rows"] == chunk
        )

    declared = statistics.mean(rate("declared", c) for c in CHUNKS)
    schemaless = statistics.mean(rate("schemaless", c) for c in CHUNKS)
    return {
        "declared_indexes": ["id", "timestamp"],
        "results": results,
        "ratio_by_chunk": {
            str(c): round(rate("declared", c) / rate("schemaless", c), 2) for c in CHUNKS
        },
        "declared_rows_per_s": round(declared, 1),
        "schemaless_rows_per_s": round(schemaless, 1),
        "ratio": round(declared / schemaless, 2),
    }


def available_encodings() -> list[Encoding]:
    usable = []
    for encoding in Encoding:
        try:
            resolve(encoding)
        except ValueError as exc:
            print(f"skipping encoding {encoding.value}: {exc}", flush=True)
            continue
        usable.append(encoding)
    return usable


def encodings_part(node: HarperNode, db: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    encodings = available_encodings()
    seconds: dict[Encoding, list[float]] = {e: [] for e in encodings}
    for round_ in range(2):
        order = encodings if round_ % 2 == 0 else encodings[::-1]
        for encoding in order:
            with HarperClient(
                node.url, node.username, node.password, timeout_s=300, encoding=encoding
            ) as client:
                table = f"enc_{encoding.value}_{round_}"
                seconds[encoding].append(
                    measure(client, db, table, "declared", ENCODING_CHUNK, rows)
                )
    rates = {e.value: round(2 * len(rows) / sum(seconds[e]), 1) for e in encodings}
    return {
        "chunk_rows": ENCODING_CHUNK,
        "rounds": 2,
        "seconds": {e.value: [round(s, 3) for s in seconds[e]] for e in encodings},
        "rows_per_s": rates,
        "vs_json": {name: round(rate / rates["json"], 3) for name, rate in rates.items()},
    }


def install_component(client: HarperClient, node: HarperNode) -> httpx.Client:
    """Write the component into Harper's components root, restart the HTTP workers, and wait
    until its endpoint answers; returns a client for that endpoint."""
    config = client.operation({"operation": "get_configuration"}, idempotent=True)
    root = Path(str(config.get("componentsRoot") or node.root / "components"))
    folder = root / COMPONENT
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(CONFIG_YAML)
    (folder / "resources.js").write_text(RESOURCES_JS)
    try:
        client.operation({"operation": "restart_service", "service": "http_workers"})
    except HarperError as exc:  # the worker answering may be the one restarting
        print(f"restart_service: {exc} (waiting for the endpoint anyway)", flush=True)
    http = httpx.Client(
        base_url=f"http://{node.host}:{node.http_port}",
        auth=(node.username, node.password),
        timeout=300,
    )
    deadline = time.monotonic() + 90
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = http.post(f"/{ENDPOINT}/", json={"stage": []})
            if answer.status_code == 200:
                return http
            last = f"HTTP {answer.status_code}: {answer.text[:300]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    http.close()
    raise RuntimeError(f"the bench component did not answer within 90 s: {last}")


def in_process_part(
    client: HarperClient,
    node: HarperNode,
    db: str,
    rows: list[dict[str, Any]],
    columns: Sequence[ColumnSpec] = COLUMNS,
) -> dict[str, Any]:
    """`columns`: the table definition (this bench's own by default; bench/sync_throughput.py
    passes the synced table's so the in-process ceiling writes what the engine writes)."""
    # the table exists before the workers restart, so the component's workers load it
    ensure_target_table(client, db, "in_process", list(columns), cursor_column="timestamp")
    http = install_component(client, node)
    try:
        for start in range(0, len(rows), 10_000):
            staged = http.post(f"/{ENDPOINT}/", json={"stage": rows[start : start + 10_000]})
            staged.raise_for_status()
        assert staged.json()["staged"] == len(rows), staged.text
        answer = http.post(
            f"/{ENDPOINT}/", json={"database": db, "table": "in_process", "chunk": ENCODING_CHUNK}
        )
        answer.raise_for_status()
        timing = answer.json()
    finally:
        http.close()
    found = client.sql(f"SELECT COUNT(*) AS n FROM {db}.in_process")  # noqa: S608 - ours
    assert timing["rows"] == len(rows) == found[0]["n"], (timing, found)
    return {
        "chunk_rows": ENCODING_CHUNK,
        "seconds": round(timing["seconds"], 3),
        "rows_per_s": round(len(rows) / timing["seconds"], 1),
        "how": "table.put inside Harper, one transaction per chunk, timed by the component",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per table (100 000)")
    parser.add_argument(
        "--parts",
        default="tables,encodings,in-process",
        help="which parts to run, comma separated (all three)",
    )
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    rows = position_rows(args.rows, "p")
    report: dict[str, Any] = {
        "benchmark": "harper_upsert",
        "harper": "own node",
        "rows": len(rows),
        "fields": len(rows[0]),
    }
    with harper_node() as node:
        db = f"bench_{uuid.uuid4().hex[:8]}"
        with HarperClient(node.url, node.username, node.password, timeout_s=300) as client:
            try:
                # warm-up: first writes to a new database pay for file creation
                client.create_table(db, "warmup")
                client.upsert(db, "warmup", position_rows(min(5_000, args.rows), "w"))
                if "tables" in parts:
                    report["tables"] = tables_part(client, db, rows)
                if "encodings" in parts:
                    report["encodings"] = encodings_part(node, db, rows)
                if "in-process" in parts:
                    report["in_process"] = in_process_part(client, node, db, rows)
            finally:
                client.drop_database(db, missing_ok=True)
    summary = ["harper_upsert:"]
    if "encodings" in report:
        rates = report["encodings"]["rows_per_s"]
        best = max(rates, key=rates.__getitem__)
        report["best_encoding"] = best
        summary.append(
            "encodings "
            + ", ".join(f"{name} {rate:,.0f}" for name, rate in rates.items())
            + f" rows/s (best {best}, {rates[best] / rates['json']:.2f}x json);"
        )
        if "in_process" in report:
            share = rates[best] / report["in_process"]["rows_per_s"]
            report["best_vs_in_process"] = round(share, 3)
    if "in_process" in report:
        summary.append(f"in-process {report['in_process']['rows_per_s']:,.0f} rows/s")
        if "best_vs_in_process" in report:
            summary.append(f"(best encoding reaches {report['best_vs_in_process']:.2f} of it);")
    if "tables" in report:
        t = report["tables"]
        summary.append(
            f"declared {t['declared_rows_per_s']:,.0f} vs schemaless "
            f"{t['schemaless_rows_per_s']:,.0f} rows/s ({t['ratio']:.2f}x);"
        )
    summary.append(f"{len(rows):,} rows x {len(rows[0])} fields")
    print(json.dumps(report, indent=2))
    print(" ".join(summary))


if __name__ == "__main__":
    main()
