"""Harper upsert rate: declared attributes with two indexes vs a schemaless table, same run.

Upserts N position-like rows (12 fields) into a table created the way harperbq creates targets
(declared, typed attributes; indexes on `id` and `timestamp` only) and into a schemaless table
(Harper indexes every attribute), in chunks of 1 000 / 5 000 / 10 000 rows, through
`HarperClient.upsert` (every id confirmed). Each (chunk size, table) pair writes fresh ids into a
fresh table; the order alternates so drift on a shared machine does not favour one side.

Uses the Harper of `harperbq dev up` when it runs (in a throwaway database), else starts its own
node from the pinned npm install and stops it afterwards. Prints one JSON document, then one
summary line with rows/s and the declared/schemaless ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harperbq.devstack import harper, stack
from harperbq.devstack.harper import HarperNode
from harperbq.devstack.paths import harper_install_dir
from harperbq.harper.client import HarperClient
from harperbq.harper.schema import ColumnSpec, ensure_target_table

REPO = Path(__file__).resolve().parents[1]
CHUNKS = (1_000, 5_000, 10_000)
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
def harper_node() -> Iterator[tuple[HarperNode, str]]:
    """The dev stack's Harper if it answers, else a node of our own; yields (node, origin)."""
    os.environ.setdefault("HARPERBQ_DEV_DIR", str(REPO / ".harperbq"))
    running = stack.load()
    if running is not None and harper.is_ready(running.harper):
        yield running.harper, "dev stack"
        return
    with tempfile.TemporaryDirectory(prefix="harperbq-bench-") as base:
        node = harper.new_node(Path(base) / "harper", name="bench")
        harper.start(node, harper_install_dir())
        try:
            yield node, "own node"
        finally:
            harper.stop(node)


def measure(
    client: HarperClient, db: str, kind: str, chunk: int, rows: list[dict[str, Any]]
) -> float:
    table = f"{kind}_{chunk}"
    if kind == "declared":
        ensure_target_table(client, db, table, COLUMNS, cursor_column="timestamp")
    else:
        client.create_table(db, table)
    started = time.perf_counter()
    result = client.upsert(db, table, rows, chunk_rows=chunk)
    seconds = time.perf_counter() - started
    assert result.distinct_ids == len(rows)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per table (100 000)")
    args = parser.parse_args()
    rows = position_rows(args.rows, "p")
    results: list[dict[str, Any]] = []
    with harper_node() as (node, origin):
        db = f"bench_{uuid.uuid4().hex[:8]}"
        with HarperClient(node.url, node.username, node.password, timeout_s=300) as client:
            try:
                # warm-up: first writes to a new database pay for file creation
                client.create_table(db, "warmup")
                client.upsert(db, "warmup", position_rows(min(5_000, args.rows), "w"))
                for index, chunk in enumerate(CHUNKS):
                    order = (
                        ("declared", "schemaless") if index % 2 == 0 else ("schemaless", "declared")
                    )
                    for kind in order:
                        seconds = measure(client, db, kind, chunk, rows)
                        results.append(
                            {
                                "table": kind,
                                "chunk_rows": chunk,
                                "rows": len(rows),
                                "seconds": round(seconds, 3),
                                "rows_per_s": round(len(rows) / seconds, 1),
                            }
                        )
            finally:
                client.drop_database(db, missing_ok=True)

    def rate(kind: str, chunk: int) -> float:
        return next(
            float(r["rows_per_s"])
            for r in results
            if r["table"] == kind and r["chunk_rows"] == chunk
        )

    ratios = {str(c): round(rate("declared", c) / rate("schemaless", c), 2) for c in CHUNKS}
    declared = statistics.mean(rate("declared", c) for c in CHUNKS)
    schemaless = statistics.mean(rate("schemaless", c) for c in CHUNKS)
    report = {
        "benchmark": "harper_upsert",
        "harper": origin,
        "rows": len(rows),
        "fields": len(rows[0]),
        "declared_indexes": ["id", "timestamp"],
        "results": results,
        "ratio_by_chunk": ratios,
        "declared_rows_per_s": round(declared, 1),
        "schemaless_rows_per_s": round(schemaless, 1),
        "ratio": round(declared / schemaless, 2),
    }
    print(json.dumps(report, indent=2))
    per_chunk = ", ".join(
        f"{c}: {rate('declared', c):,.0f} vs {rate('schemaless', c):,.0f}" for c in CHUNKS
    )
    print(
        f"harper_upsert: declared {declared:,.0f} rows/s, schemaless {schemaless:,.0f} rows/s, "
        f"ratio {declared / schemaless:.2f}x ({len(rows):,} rows x {len(rows[0])} fields; "
        f"by chunk {per_chunk})"
    )


if __name__ == "__main__":
    main()
