"""Operations on the synthetic data set: initialize, start (rolling window), backfill, cleanup,
stats, clear, clean, reset.

Every write goes by `ingested_at` windows: the rows of [a, b) are those with ingested_at in [a, b).
Writers only ever write contiguous windows, and each load job is atomic, so within any hour what
is present is one run [min, max] of ingested_at. Gap detection asks BigQuery, per hour, for
COUNT / MIN / MAX(ingested_at) and regenerates exactly the complement: rows lost to a stop, a
crash or a stopped backfill come back identical, and nothing is written twice.
"""

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from google.cloud import bigquery

from harperbq.bigquery.read import run_query
from harperbq.bigquery.sql import Query, TableRef, quote
from harperbq.retry import RetryPolicy
from harperbq.synth.params import SynthParams
from harperbq.synth.tables import SPECS, Generator, TableSpec
from harperbq.synth.write import (
    LOAD_FLUSH_MIN_S,
    MAX_JOBS_PER_FILL,
    ParquetSpool,
    check_generation,
    concat,
    ensure_tables,
    existing_tables,
    load_arrow,
    recreate_empty,
    stream_arrow,
    table_ids,
)

HOUR = 3600.0
DAY = 86_400.0
Range = tuple[float, float]


class Reporter(Protocol):
    """Progress and messages from long operations (the CLI renders them with rich)."""

    def start(self, task: str, total: float) -> None: ...

    def advance(self, task: str, amount: float) -> None: ...

    def note(self, message: str) -> None: ...


class SilentReporter:
    def start(self, task: str, total: float) -> None:
        pass

    def advance(self, task: str, amount: float) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class HourCoverage:
    hour: float  # unix seconds, start of the hour
    rows: int
    first: float  # min ingested_at, unix seconds
    last: float  # max ingested_at, unix seconds


def floor_to(t: float, step: float) -> float:
    return math.floor(t / step) * step


def ceil_to(t: float, step: float) -> float:
    return math.ceil(t / step) * step


def retention_cutoff(now: float, retention_days: int) -> float:
    """Oldest time kept: the start of the oldest day partition not yet expired."""
    return floor_to(now - retention_days * DAY, DAY)


def missing_ranges(coverage: list[HourCoverage], lo: float, hi: float) -> list[Range]:
    """The parts of [lo, hi) whose rows are not written, given per-hour ingested_at coverage.

    Within an hour the written rows form one run [first, last]; everything outside those runs is
    missing. Adjacent missing parts are merged. (Pure function: the core of gap detection.)
    """
    out: list[Range] = []
    cursor = lo
    eps = 1e-6
    for cov in sorted(coverage, key=lambda c: c.hour):
        if cov.rows == 0 or cov.last < lo or cov.first >= hi:
            continue
        if cov.first > cursor:
            out.append((cursor, cov.first))
        cursor = max(cursor, cov.last + eps)
    if cursor < hi:
        out.append((cursor, hi))
    merged: list[Range] = []
    for a, b in out:
        a, b = max(a, lo), min(b, hi)
        if b <= a:
            continue
        if merged and abs(merged[-1][1] - a) < eps:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _ref(table_id: str) -> str:
    """A validated, backtick-quoted table reference (identifiers come from the config)."""
    project, dataset, table = table_id.split(".")
    return TableRef(project, dataset, table).sql


def coverage(
    client: bigquery.Client,
    table_id: str,
    lo: float,
    hi: float,
    *,
    time_column: str,
    late_horizon_s: float,
) -> list[HourCoverage]:
    """Per hour of ingested_at within [lo, hi): row count, first and last ingested_at.

    The tables are partitioned on their event-time column, not on ingested_at, so the query
    also bounds that column: a row's time lies in [ingested_at - late_horizon_s, ingested_at]
    (`synth.tables`), and only the partitions of [lo - late_horizon_s, hi) are billed, not the
    whole retention (https://cloud.google.com/bigquery/docs/querying-partitioned-tables)."""
    t = quote(time_column)
    sql = (
        "SELECT TIMESTAMP_TRUNC(ingested_at, HOUR) AS h, COUNT(*) AS n, "  # noqa: S608
        f"MIN(ingested_at) AS a, MAX(ingested_at) AS b FROM {_ref(table_id)} "
        f"WHERE {t} >= @tlo AND {t} < @hi AND ingested_at >= @lo AND ingested_at < @hi "
        "GROUP BY h ORDER BY h"
    )

    def at(name: str, seconds: float) -> bigquery.ScalarQueryParameter:
        return bigquery.ScalarQueryParameter(
            name, "TIMESTAMP", datetime.fromtimestamp(seconds, UTC)
        )

    params = (at("lo", lo), at("hi", hi), at("tlo", lo - late_horizon_s))
    result = run_query(client, Query(sql, params), policy=RetryPolicy(), operation="synth.coverage")
    return [
        HourCoverage(
            row["h"].timestamp(), int(row["n"]), row["a"].timestamp(), row["b"].timestamp()
        )
        for row in result.rows()
    ]


@dataclass
class FillResult:
    rows: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    ranges: dict[str, list[Range]] = field(default_factory=dict)


class Synthesizer:
    """One data set (three tables) on one BigQuery client."""

    def __init__(
        self,
        client: bigquery.Client,
        params: SynthParams,
        reporter: Reporter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.params = params
        self.reporter = reporter or SilentReporter()
        self.clock = clock
        self._generator: Generator | None = None
        self.ids = table_ids(client, params)

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = Generator(self.params)
        return self._generator

    def now(self) -> float:
        return float(math.floor(self.clock()))

    # -- filling ----------------------------------------------------------------------------
    def gaps(self, lo: float, hi: float) -> dict[str, list[Range]]:
        """Missing ingested_at ranges of [lo, hi) per table kind."""
        return {
            spec.kind: missing_ranges(
                coverage(
                    self.client,
                    self.ids[spec.kind],
                    lo,
                    hi,
                    time_column=spec.time_column,
                    late_horizon_s=self.params.late_horizon_s,
                ),
                lo,
                hi,
            )
            for spec in SPECS
        }

    def fill(
        self, ranges: dict[str, list[Range]], stop: threading.Event | None = None
    ) -> FillResult:
        """Write the rows of the given ranges with load jobs, hour by hour, oldest first."""
        result = FillResult(ranges=ranges)
        for spec in SPECS:
            spans = ranges.get(spec.kind, [])
            rows, jobs = self._fill_table(spec, spans, stop)
            result.rows[spec.kind] = rows
            result.jobs[spec.kind] = jobs
        return result

    def _fill_table(
        self, spec: TableSpec, spans: list[Range], stop: threading.Event | None
    ) -> tuple[int, int]:
        total = sum(b - a for a, b in spans)
        if total <= 0:
            return 0, 0
        # Spread the fill over at most MAX_JOBS_PER_FILL load jobs (plus one per separate gap).
        per_job = max(HOUR, ceil_to(total / MAX_JOBS_PER_FILL, HOUR))
        task = f"{spec.kind}"
        self.reporter.start(task, total / HOUR)
        spool = ParquetSpool(spec)
        rows = jobs = 0
        try:
            for a, b in spans:
                spooled = 0.0
                t = a
                while t < b:
                    if stop is not None and stop.is_set():
                        break
                    end = min(floor_to(t, HOUR) + HOUR, b)
                    spool.append(self.generator.table(spec.kind, t, end))
                    spooled += end - t
                    self.reporter.advance(task, (end - t) / HOUR)
                    t = end
                    if spooled >= per_job and spool.rows:
                        rows += spool.load(self.client, self.ids[spec.kind])
                        jobs += 1
                        spooled = 0.0
                if spool.rows:
                    rows += spool.load(self.client, self.ids[spec.kind])
                    jobs += 1
                if stop is not None and stop.is_set():
                    break
        finally:
            spool.close()
        return rows, jobs

    def estimate_rows(self, lo: float, hi: float) -> int:
        """Rough row count of positions for [lo, hi), from a 10-minute sample."""
        sample = min(600.0, hi - lo)
        if sample <= 0:
            return 0
        mid = lo + (hi - lo - sample) / 2
        return int(self.generator.positions(mid, mid + sample).num_rows * (hi - lo) / sample)

    # -- commands ---------------------------------------------------------------------------
    def initialize(self, days: float) -> FillResult:
        """Create the tables and fill [now - days, now) (only what is missing: idempotent)."""
        ensure_tables(self.client, self.params)
        now = self.now()
        lo = now - days * DAY
        self.reporter.note(f"about {self.estimate_rows(lo, now):,} position rows to generate")
        return self.fill(self.gaps(lo, now))

    def backfill(self, start: float, end: float) -> FillResult:
        """Fill what is missing in [start, end), widened to whole hours and cut at now."""
        ensure_tables(self.client, self.params)
        hi = min(ceil_to(end, HOUR), self.now())
        lo = floor_to(start, HOUR)
        if hi <= lo:
            return FillResult()
        return self.fill(self.gaps(lo, hi))

    def rolling_gaps(self, now: float) -> dict[str, list[Range]]:
        """Gaps of the rolling window: from the retention cutoff (plus lateness) up to now."""
        lo = ceil_to(
            retention_cutoff(now, self.params.retention_days) + self.params.late_horizon_s, HOUR
        )
        return self.gaps(lo, now)

    def cleanup(self) -> dict[str, int]:
        """Delete rows older than the retention cutoff (partition expiration does it too)."""
        cutoff = datetime.fromtimestamp(
            retention_cutoff(self.now(), self.params.retention_days), UTC
        )
        deleted: dict[str, int] = {}
        for spec in SPECS:
            if spec.kind not in existing_tables(self.client, self.params):
                continue
            delete = Query(
                f"DELETE FROM {_ref(self.ids[spec.kind])} "  # noqa: S608
                f"WHERE {quote(spec.time_column)} < @cutoff",
                (bigquery.ScalarQueryParameter("cutoff", "TIMESTAMP", cutoff),),
            )
            # A retried DELETE deletes the same rows: what is below the cutoff stays below it.
            result = run_query(self.client, delete, policy=RetryPolicy(), operation="synth.cleanup")
            deleted[spec.kind] = int(result.job.num_dml_affected_rows or 0)
        return deleted

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per table: rows, time range, distinct vessels, bytes."""
        out: dict[str, dict[str, Any]] = {}
        tables = existing_tables(self.client, self.params)
        for spec in SPECS:
            table = tables.get(spec.kind)
            if table is None:
                out[spec.kind] = {"table": self.ids[spec.kind], "exists": False}
                continue
            count = Query(
                f"SELECT COUNT(*) AS n, MIN({quote(spec.time_column)}) AS a, "  # noqa: S608
                f"MAX({quote(spec.time_column)}) AS b, "
                f"COUNT(DISTINCT {quote(spec.mmsi_column)}) AS v "
                f"FROM {_ref(self.ids[spec.kind])}"
            )
            policy = RetryPolicy()
            row = run_query(self.client, count, policy=policy, operation="synth.stats").rows()[0]
            rows = int(row["n"])
            out[spec.kind] = {
                "table": self.ids[spec.kind],
                "exists": True,
                "rows": rows,
                "oldest": row["a"].isoformat() if row["a"] else None,
                "newest": row["b"].isoformat() if row["b"] else None,
                "vessels": int(row["v"]),
                "bytes": int(table.num_bytes or 0),
            }
        return out

    def clear(self) -> dict[str, int]:
        """Empty the tables, keeping their schema, partitioning, clustering and labels: dropped
        and created again (`write.recreate_empty`), never by DML."""
        return {
            kind: recreate_empty(self.client, table)
            for kind, table in existing_tables(self.client, self.params).items()
        }

    def clean(self) -> list[str]:
        """Drop the three tables (the dataset stays)."""
        dropped = []
        for kind in existing_tables(self.client, self.params):
            self.client.delete_table(self.ids[kind], not_found_ok=True)
            dropped.append(self.ids[kind])
        return dropped

    def reset(self, days: float) -> FillResult:
        self.clean()
        return self.initialize(days)

    # -- live -------------------------------------------------------------------------------
    def run(
        self,
        stop: threading.Event,
        *,
        backfill: bool = True,
        duration_s: float | None = None,
        once: bool = False,
        interval_s: float | None = None,
    ) -> "LiveStats":
        """The rolling window: fill gaps, then write each interval until `stop` (or duration)."""
        ensure_tables(self.client, self.params)
        check_generation(self.client, self.params)
        stats = LiveStats()
        started = time.monotonic()
        cursor = self.now()
        # Without backfill, still complete the current hour: gap detection relies on every hour
        # holding one contiguous run of ingested_at.
        gaps = self.rolling_gaps(cursor) if backfill else self.gaps(floor_to(cursor, HOUR), cursor)
        stats.backfilled = self.fill(gaps, stop)
        interval = interval_s or self.params.generation_interval_s
        flush_every = 0.0 if self.params.use_streaming else max(interval, LOAD_FLUSH_MIN_S)
        cleanup_every = self.params.cleanup_interval_hours * HOUR
        last_flush = last_cleanup = time.monotonic()
        pending: dict[str, list[Any]] = {spec.kind: [] for spec in SPECS}
        while not stop.is_set():
            stop.wait(interval)
            now = self.now()
            if now > cursor:
                window = self.generator.window(cursor, now)
                for spec in SPECS:
                    pending[spec.kind].append(window.by_kind(spec.kind))
                stats.windows += 1
                cursor = now
            ending = (
                stop.is_set()
                or once
                or (duration_s is not None and time.monotonic() - started >= duration_s)
            )
            if ending or time.monotonic() - last_flush >= flush_every:
                self._flush(pending, stats)
                last_flush = time.monotonic()
            if time.monotonic() - last_cleanup >= cleanup_every:
                stats.cleaned += sum(self.cleanup().values())
                last_cleanup = time.monotonic()
            if ending:
                break
        self._flush(pending, stats)
        stats.cursor = cursor
        return stats

    def _flush(self, pending: dict[str, list[Any]], stats: "LiveStats") -> None:
        for spec in SPECS:
            table = concat(pending[spec.kind])
            pending[spec.kind] = []
            if table.num_rows == 0:
                continue
            if self.params.use_streaming:
                written = stream_arrow(self.client, self.ids[spec.kind], spec, table)
            else:
                written = load_arrow(self.client, self.ids[spec.kind], table)
                stats.jobs += 1
            stats.rows[spec.kind] = stats.rows.get(spec.kind, 0) + written


@dataclass
class LiveStats:
    windows: int = 0
    jobs: int = 0
    cleaned: int = 0
    cursor: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    backfilled: FillResult = field(default_factory=FillResult)
