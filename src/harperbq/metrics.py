"""Prometheus metrics of one sync service, kept in the service's own registry.

Why a registry per service: tests (and any process embedding several services) create many, and
the global default registry rejects a second metric of the same name.

Two kinds of numbers, fed two ways, so that the engine never imports prometheus:
- events (rows written, windows, errors, retries, durations) are counted as they happen, through
  the callbacks the engine (`on_window`), the Harper sink (`on_write`), the runner's error hook and
  the Harper client (`on_event`) already offer;
- state (lag, checkpoint, phase, runner state, partitions, bytes billed, live workers) is read
  from the running service at scrape time by a collector, so lag keeps growing while a table is
  stuck or stopped instead of freezing at its last update.

Names follow Prometheus conventions: base units (`_seconds`, `_bytes`), counters end in `_total`,
timestamps are `_timestamp_seconds`. Labels: `table` and `worker` only (plus the bounded `kind`,
`phase`, `state` and `reason` of the metrics about them), never ids, queries or partitions.
`METRICS` lists every metric; deploy/ (dashboard, alert rules) may use no other name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from harperbq import __version__
from harperbq.phases import Phase, RunState

CONTENT_TYPE = CONTENT_TYPE_LATEST
TW = ("table", "worker")
Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric as exposed (counters with their `_total`)."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = TW

    def series_names(self) -> set[str]:
        """Every sample name this metric shows on /metrics."""
        if self.kind == "histogram":
            return {f"{self.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        if self.kind == "counter":
            return {self.name, self.name.removesuffix("_total") + "_created"}
        return {self.name}


METRICS: tuple[MetricSpec, ...] = (
    # events
    MetricSpec("harperbq_rows_synced_total", "counter", "Rows written to Harper and checkpointed."),
    MetricSpec(
        "harperbq_rows_skipped_total",
        "counter",
        "Source rows not synced, by reason: unconvertible, null_primary_key (skipped), "
        "beyond_lateness (arrived later than lateness), null_cursor (no cursor value).",
        (*TW, "reason"),
    ),
    MetricSpec(
        "harperbq_values_coerced_total",
        "counter",
        "Source values written in another form, by reason: nonfinite_float (NaN/±Inf as null).",
        (*TW, "reason"),
    ),
    MetricSpec("harperbq_windows_total", "counter", "Time windows completed (checkpoint moved)."),
    MetricSpec(
        "harperbq_errors_total",
        "counter",
        "Failed sync attempts, by exception class.",
        (*TW, "kind"),
    ),
    MetricSpec("harperbq_retries_total", "counter", "Failed sync attempts retried after backoff."),
    MetricSpec(
        "harperbq_window_duration_seconds",
        "histogram",
        "One window, from the start of its read to its checkpoint.",
    ),
    MetricSpec(
        "harperbq_write_duration_seconds",
        "histogram",
        "One confirmed upsert of a page of rows to Harper.",
    ),
    MetricSpec(
        "harperbq_validation_drift_rows",
        "gauge",
        "Rows that differ between BigQuery and Harper at the last validation.",
        ("table",),
    ),
    MetricSpec(
        "harperbq_validation_timestamp_seconds",
        "gauge",
        "When the last validation of the table finished (Unix time).",
        ("table",),
    ),
    MetricSpec(
        "harperbq_harper_request_retries_total",
        "counter",
        "Harper Operations API requests retried by the client.",
        (),
    ),
    MetricSpec(
        "harperbq_table_events_total",
        "counter",
        "Interventions on a table's sync, by reason (target_lost: re-synced from the source; "
        "schema_evolved; state_mismatch: stopped).",
        (*TW, "reason"),
    ),
    MetricSpec(
        "harperbq_replication_wait_seconds",
        "histogram",
        "One data write confirmed by harper.replicatedConfirmation peers, sent to answered.",
        (),
    ),
    MetricSpec(
        "harperbq_replication_unconfirmed_total",
        "counter",
        "Data writes whose peer confirmation never came, by reason: timeout, connection_lost "
        "(outcome unknown; the window is retried), refused (more peers asked than known).",
        ("reason",),
    ),
    MetricSpec(
        "harperbq_replication_confirmations",
        "gauge",
        "Peers that must confirm each data write now (harper.replicatedConfirmation decided).",
        (),
    ),
    # state, read at scrape time
    MetricSpec(
        "harperbq_lag_seconds",
        "gauge",
        "Now minus the oldest checkpoint of the partitions the worker owns.",
    ),
    MetricSpec(
        "harperbq_checkpoint_timestamp_seconds",
        "gauge",
        "The oldest checkpoint of the partitions the worker owns (Unix time).",
    ),
    MetricSpec(
        "harperbq_last_success_timestamp_seconds",
        "gauge",
        "When the worker last completed a window (Unix time).",
    ),
    MetricSpec(
        "harperbq_phase", "gauge", "1 for the worker's current phase, else 0.", (*TW, "phase")
    ),
    MetricSpec(
        "harperbq_runner_state",
        "gauge",
        "1 for the table runner's current state, else 0.",
        (*TW, "state"),
    ),
    MetricSpec("harperbq_partitions_owned", "gauge", "Virtual partitions the worker owns."),
    MetricSpec(
        "harperbq_bigquery_bytes_billed_total", "counter", "Bytes billed by BigQuery queries."
    ),
    MetricSpec(
        "harperbq_bigquery_storage_bytes_scanned_total",
        "counter",
        "Bytes scanned (billed) by Storage Read API sessions.",
    ),
    MetricSpec(
        "harperbq_bigquery_estimated_cost_dollars_total",
        "counter",
        "Queries and Storage Read at bigquery.queryPricePerTiB / storageReadPricePerTiB.",
    ),
    MetricSpec("harperbq_bigquery_queries_total", "counter", "BigQuery queries run."),
    MetricSpec(
        "harperbq_cluster_workers",
        "gauge",
        "Live workers in the cluster, as this node sees the heartbeats.",
        (),
    ),
    MetricSpec("harperbq_local_workers", "gauge", "Workers run by this process.", ()),
    MetricSpec(
        "harperbq_workers_desired",
        "gauge",
        "Local workers `workers: auto` wants now (only with `workers: auto`).",
        (),
    ),
    MetricSpec(
        "harperbq_harper_oldest_request_age_seconds",
        "gauge",
        "How long the oldest Harper request in flight has waited for its answer (0: none).",
        (),
    ),
    MetricSpec(
        "harperbq_harper_stalled",
        "gauge",
        "1 while Harper answers neither a request older than stallTimeout nor a probe.",
        (),
    ),
    MetricSpec(
        "harperbq_start_time_seconds", "gauge", "When this sync process started (Unix time).", ()
    ),
    MetricSpec("harperbq_build_info", "gauge", "Always 1; the version as a label.", ("version",)),
)
METRIC_NAMES = frozenset(spec.name for spec in METRICS)
SERIES_NAMES = frozenset(name for spec in METRICS for name in spec.series_names())
_SPEC = {spec.name: spec for spec in METRICS}

WINDOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
WRITE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class WorkerSample:
    """What the collector reads of one (table, worker) at scrape time."""

    table: str
    worker: str
    state: str
    phase: str | None
    checkpoint_s: float | None
    last_success_s: float | None
    partitions: int
    bytes_billed: int
    queries: int
    storage_bytes: int = 0
    cost_dollars: float = 0.0


@dataclass(frozen=True)
class ServiceSample:
    workers: list[WorkerSample]
    cluster_workers: int
    local_workers: int
    started_at: float
    desired_workers: int | None = None
    harper_oldest_request_s: float = 0.0
    harper_stalled: bool = False


class _StateCollector:
    """Reads the live service at scrape time (see the module docstring)."""

    def __init__(self, sample: Callable[[], ServiceSample], clock: Callable[[], float]) -> None:
        self.sample = sample
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        yield from self._families(None)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.sample())

    def _families(self, sample: ServiceSample | None) -> Iterator[Metric]:
        now = self.clock()

        def gauge(name: str) -> GaugeMetricFamily:
            spec = _SPEC[name]
            return GaugeMetricFamily(name, spec.help, labels=spec.labels or None)

        def counter(name: str) -> CounterMetricFamily:
            spec = _SPEC[name]
            return CounterMetricFamily(name, spec.help, labels=spec.labels or None)

        lag, checkpoint = (
            gauge("harperbq_lag_seconds"),
            gauge("harperbq_checkpoint_timestamp_seconds"),
        )
        success = gauge("harperbq_last_success_timestamp_seconds")
        phase, state = gauge("harperbq_phase"), gauge("harperbq_runner_state")
        owned = gauge("harperbq_partitions_owned")
        billed = counter("harperbq_bigquery_bytes_billed_total")
        queries = counter("harperbq_bigquery_queries_total")
        scanned = counter("harperbq_bigquery_storage_bytes_scanned_total")
        dollars = counter("harperbq_bigquery_estimated_cost_dollars_total")
        cluster, local = gauge("harperbq_cluster_workers"), gauge("harperbq_local_workers")
        desired = gauge("harperbq_workers_desired")
        started, build = gauge("harperbq_start_time_seconds"), gauge("harperbq_build_info")
        oldest = gauge("harperbq_harper_oldest_request_age_seconds")
        stalled = gauge("harperbq_harper_stalled")
        if sample is not None:
            for w in sample.workers:
                tw = [w.table, w.worker]
                if w.checkpoint_s is not None:
                    lag.add_metric(tw, max(0.0, now - w.checkpoint_s))
                    checkpoint.add_metric(tw, w.checkpoint_s)
                if w.last_success_s is not None:
                    success.add_metric(tw, w.last_success_s)
                for p in Phase:
                    phase.add_metric([*tw, str(p)], 1.0 if w.phase == str(p) else 0.0)
                for s in RunState:
                    state.add_metric([*tw, str(s)], 1.0 if w.state == str(s) else 0.0)
                owned.add_metric(tw, w.partitions)
                billed.add_metric(tw, w.bytes_billed)
                queries.add_metric(tw, w.queries)
                scanned.add_metric(tw, w.storage_bytes)
                dollars.add_metric(tw, w.cost_dollars)
            cluster.add_metric([], sample.cluster_workers)
            local.add_metric([], sample.local_workers)
            if sample.desired_workers is not None:
                desired.add_metric([], sample.desired_workers)
            started.add_metric([], sample.started_at)
            build.add_metric([__version__], 1.0)
            oldest.add_metric([], sample.harper_oldest_request_s)
            stalled.add_metric([], 1.0 if sample.harper_stalled else 0.0)
        yield from (lag, checkpoint, success, phase, state, owned, billed, queries, scanned)
        yield dollars
        yield from (cluster, local, desired, started, build, oldest, stalled)


@dataclass
class SyncMetrics:
    """The metrics of one sync service and the hooks that feed them."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        r = self.registry

        def counter(name: str) -> Counter:
            spec = _SPEC[name]
            return Counter(name.removesuffix("_total"), spec.help, spec.labels, registry=r)

        def histogram(name: str, buckets: Sequence[float]) -> Histogram:
            spec = _SPEC[name]
            return Histogram(name, spec.help, spec.labels, buckets=buckets, registry=r)

        def gauge(name: str) -> Gauge:
            spec = _SPEC[name]
            return Gauge(name, spec.help, spec.labels, registry=r)

        self.rows_synced = counter("harperbq_rows_synced_total")
        self.rows_skipped = counter("harperbq_rows_skipped_total")
        self.values_coerced = counter("harperbq_values_coerced_total")
        self.windows = counter("harperbq_windows_total")
        self.errors = counter("harperbq_errors_total")
        self.retries = counter("harperbq_retries_total")
        self.window_duration = histogram("harperbq_window_duration_seconds", WINDOW_BUCKETS)
        self.write_duration = histogram("harperbq_write_duration_seconds", WRITE_BUCKETS)
        self.drift_rows = gauge("harperbq_validation_drift_rows")
        self.validated_at = gauge("harperbq_validation_timestamp_seconds")
        self.harper_retries = counter("harperbq_harper_request_retries_total")
        self.table_events = counter("harperbq_table_events_total")
        self.replication_wait = histogram("harperbq_replication_wait_seconds", WINDOW_BUCKETS)
        self.replication_unconfirmed = counter("harperbq_replication_unconfirmed_total")
        self.replication_confirmations = gauge("harperbq_replication_confirmations")
        self._written: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._watching = False

    # -- hooks ---------------------------------------------------------------------------------

    def watch(self, sample: Callable[[], ServiceSample]) -> None:
        """Expose the service's state, read by `sample()` at every scrape (once per registry)."""
        if not self._watching:
            self.registry.register(_StateCollector(sample, self.clock))
            self._watching = True

    def window_observer(self, table: str, worker: str) -> Callable[[Any, Any, float], None]:
        """The engine's `on_window(status, end, written)` for one (table, worker)."""
        skipped_before: dict[str, int] = {}
        coerced_before = [0]

        def observe(status: Any, end: Any, written: float) -> None:
            self.rows_synced.labels(table, worker).inc(written)
            self.windows.labels(table, worker).inc()
            for reason, skipped in dict(getattr(status, "skipped_by_reason", {})).items():
                if skipped > skipped_before.get(reason, 0):
                    new = skipped - skipped_before.get(reason, 0)
                    self.rows_skipped.labels(table, worker, reason).inc(new)
                skipped_before[reason] = skipped
            coerced = int(getattr(status, "values_coerced", 0))
            if coerced > coerced_before[0]:
                self.values_coerced.labels(table, worker, "nonfinite_float").inc(
                    coerced - coerced_before[0]
                )
            coerced_before[0] = coerced
            started = getattr(end, "started", None)
            if isinstance(started, float) and started > 0:
                self.window_duration.labels(table, worker).observe(time.monotonic() - started)
            with self._lock:
                self._written[(table, worker)] = self._written.get((table, worker), 0) + int(
                    written
                )

        return observe

    def write_observer(self, table: str, worker: str) -> Callable[[int, float], None]:
        """The Harper sink's `on_write(rows, seconds)` for one (table, worker)."""

        def observe(rows: int, seconds: float) -> None:
            self.write_duration.labels(table, worker).observe(seconds)

        return observe

    def record_error(self, table: str, worker: str, exc: BaseException, *, retry: bool) -> None:
        self.errors.labels(table, worker, type(exc).__name__).inc()
        if retry:
            self.retries.labels(table, worker).inc()

    def record_stall(self, table: str, worker: str) -> None:
        """Harper stopped answering while this (table, worker) ran: an error of kind
        `HarperStalled` (the request is not aborted, so no retry is counted)."""
        self.errors.labels(table, worker, "HarperStalled").inc()

    def record_event(self, table: str, worker: str, reason: str) -> None:
        """An intervention on the table's sync (`harperbq_table_events_total{reason}`)."""
        self.table_events.labels(table, worker, reason).inc()

    def record_validation(self, table: str, drift_rows: int) -> None:
        """For every validation (scheduled or asked for): rows missing or extra in Harper."""
        self.drift_rows.labels(table).set(drift_rows)
        self.validated_at.labels(table).set(self.clock())

    def replication_decided(self, decision: Any) -> None:
        """The confirmation holder's `on_decision(Decision)`."""
        self.replication_confirmations.set(int(decision.count))

    def replication_observed(self, seconds: float | None, reason: str | None) -> None:
        """The Harper sink's `on_replication`: a confirmed write's wait, or why it failed."""
        if seconds is not None:
            self.replication_wait.observe(seconds)
        if reason is not None:
            self.replication_unconfirmed.labels(reason).inc()

    def harper_request(self, event: Any) -> None:
        """The Harper client's `on_event(RequestEvent)`."""
        if getattr(event, "will_retry", False):
            self.harper_retries.inc()

    # -- reading ---------------------------------------------------------------------------------

    def rows_written(self, table: str, worker: str) -> int:
        """Rows this process wrote for (table, worker) since it started."""
        with self._lock:
            return self._written.get((table, worker), 0)

    def exposition(self) -> bytes:
        """The /metrics body (Prometheus text format, `CONTENT_TYPE`)."""
        return bytes(generate_latest(self.registry))
