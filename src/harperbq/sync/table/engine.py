"""One table on one worker: plan a window, read it, convert, upsert, and only then checkpoint.

Reads run one window ahead of writes (a reader thread feeds a small bounded queue of pages), so
the sync runs at the speed of the slower side, not the sum of both, with memory bounded by the
queue. A window's checkpoint moves only after every page of that window is confirmed by Harper;
a failure anywhere discards the read-ahead and the next attempt starts again from the checkpoint.
Rows are idempotent upserts under deterministic ids, so re-reading a window changes nothing.

Partitions: each owned partition has its own checkpoint. Partitions with the same checkpoint
form a group and are read together in one query; a lagging group's windows are capped at the
next group's checkpoint, so groups merge once they meet.

Target lost: each checkpoint keeps a few ids written in its partition's last window (`probe`).
Before a checkpoint moves, and at the start of every pass, those ids are looked up by primary key
(one cheap request, no scan). When every probe of a partition is gone, the target table was
dropped or recreated empty behind the sync's back: the owned partitions start again from the
source (audit `reset`, metric), instead of carrying on above a hole.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from harperbq.phases import Phase
from harperbq.profile import PROFILE
from harperbq.sync.state import CLOCK_COMMIT, CLOCK_EVENT, Checkpoint
from harperbq.sync.table.checkpoint_merge import next_generation
from harperbq.sync.table.feed import Mode, feed_window
from harperbq.sync.table.grid import WATCH_LATENESS_MULTIPLE, compact
from harperbq.sync.table.keys import WindowIds, key_id
from harperbq.sync.table.windows import (
    PhasePolicy,
    Window,
    adapt_length,
    align_to_partitions,
    next_window,
)
from harperbq.times import MICROS, MIN_US, iso

log = logging.getLogger("harperbq.sync.engine")

Record = dict[str, Any]
INITIAL_WINDOW_US = 60 * MICROS
_JUMP_AFTER_EMPTY_US = 3600 * MICROS
_QUEUE_PAGES = 1
"""Converted pages waiting for the writer (at most 10 000 rows, ~10 MB; 5 000 from Storage
Read). One is enough to keep the writer busy, since Harper's writes are the slow side; upstream,
Storage Read buffers 4 compact Arrow batches. Measured at 200 000 rows: peak RSS 241-242 MiB
with one page, 251-257 with three, the same wall time (docs/performance.md)."""
_AUDIT_SAMPLES_PER_WINDOW = 5
_PROBES_PER_PARTITION = 3


@dataclass(frozen=True)
class RowProblem:
    """A source row that could not be converted: skipped, audited, counted; never blocks."""

    reason: str
    column: str | None
    sample: str
    code: str = "unconvertible"  # the bounded `reason` label of the metric: see metrics.py


@dataclass
class Page:
    """Converted rows of one read page; `partitions[i]` is the partition of `records[i]`.

    `superseded`: partitions of rows dropped as older versions of a key read in the same
    window (`sync.versions`); they count as read. `coerced`: values written as null (NaN/±Inf).
    """

    records: list[Record]
    partitions: list[int]
    problems: list[RowProblem] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    coerced: int = 0
    deleted: list[Record] = field(default_factory=list)
    """Rows whose key's record is to be deleted (change feed `changes`), key columns set."""
    deleted_partitions: list[int] = field(default_factory=list)
    prepared: Any = None
    """The records' upsert bodies encoded ahead by the reader (`Sink.prepare`), if any."""


class Source(Protocol):
    """The source side of one table, as the engine needs it (no SQL here)."""

    def first_cursor(self, parts: Sequence[int] | None, after: int | None = None) -> int | None:
        """Oldest cursor value (µs) among the partitions, from `after` on when given, or None
        when there are no such rows."""

    def read(self, window: Window, parts: Sequence[int] | None, page_rows: int) -> Iterator[Page]:
        """Every row of the window in the partitions (all when parts is None), converted."""


@runtime_checkable
class FeedSource(Source, Protocol):
    """A source that may read by commit time (`sync.feed_source`)."""

    def feed_mode(self) -> Mode:
        """`appends`, `changes` or `none` (event-time windows)."""

    def horizon_us(self) -> int:
        """Windows starting before this instant are read as a snapshot."""

    def created_us(self) -> int | None:
        """When the table was created (a snapshot cannot be older); None if unknown."""

    def partition_unit(self) -> str | None:
        """Event time: the time partitioning unit windows are aligned to (None: no alignment)."""


class Sink(Protocol):
    """The Harper side: confirmed upserts, checkpoints and the audit trail."""

    def upsert(self, records: list[Record], prepared: Any = None) -> None: ...

    def prepare(self, records: list[Record]) -> Any:
        """`records`' request bodies made now (reader thread), for `upsert(records, it)`."""

    def delete(self, ids: Sequence[str]) -> None:
        """Delete these record ids (confirmed; ids already gone are fine)."""

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of these record ids the target holds now."""

    def get_checkpoints(self) -> dict[int, Checkpoint]: ...

    def put_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]: ...

    def audit(self, kind: str, detail: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class EngineSettings:
    table_id: str
    primary_key: tuple[str, ...]
    partitions: int
    settle_us: int
    lateness_us: int
    policy: PhasePolicy
    start_us: int | None = None
    retention_us: int | None = None
    """Records older than this may be expired on purpose: their probes prove nothing."""
    tail_to_cap: bool = False
    """Change feed, `--once`: after the grid, one last window up to `now - settle` (not shared
    with other workers), so a run catches up to where it says it does."""


@dataclass
class EngineStatus:
    """What status displays and metrics report, kept current by the engine."""

    phase: Phase = Phase.INITIAL
    checkpoint_us: int | None = None
    lag_s: float | None = None
    rows_synced: int = 0
    rows_skipped: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    values_coerced: int = 0
    windows: int = 0
    last_window_rows: int = 0
    last_success: float | None = None
    last_error: str | None = None
    caught_up: bool = False
    target_resets: int = 0
    read_mode: str = ""
    """`snapshot`, `following` (the change feed) or `event-time` (`sync.feed.READ_MODES`)."""
    rows_deleted: int = 0


@dataclass
class _End:
    window: Window
    rows: int
    phase: Phase
    target: int
    length_us: int
    started: float = 0.0  # time.monotonic() when the window's read began (window duration)


@dataclass
class _Done:
    caught_up: bool


@dataclass
class _Failed:
    error: BaseException


@dataclass
class _WindowPage:
    window: Window
    page: Page


_Item = _WindowPage | _End | _Done | _Failed


class TableEngine:
    """Catches one table up to `now - settle` over the partitions this worker owns."""

    # Over the size caps on purpose: the engine's collaborators and hooks, by keyword, wired
    # once in assembly.
    def __init__(  # noqa: PLR0913
        self,
        settings: EngineSettings,
        source: Source,
        sink: Sink,
        worker_id: str,
        owned: Callable[[], Sequence[int]],
        clock: Callable[[], float] = time.time,
        on_window: Callable[[EngineStatus, _End, float], None] | None = None,
        on_pass: Callable[[bool], None] | None = None,
        on_target_lost: Callable[[list[int]], None] | None = None,
        guard: Callable[[list[Record]], tuple[list[Record], int]] | None = None,
        snapshot_leader: Callable[[], bool | None] | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.sink = sink
        self.worker_id = worker_id
        self.owned = owned
        self.clock = clock
        self.on_window = on_window
        self.on_pass = on_pass  # at pass start (False) and between windows (True): schema
        self.on_target_lost = on_target_lost  # told the partitions reset (metric)
        # Change feed `appends` with a key: drops rows whose Harper record holds a newer
        # version (a later commit may carry an older version), right before they are written.
        self.guard = guard
        # Change feed with several workers: whether this worker copies a snapshot for every
        # partition that needs one (True), waits for the worker that does (False), or copies
        # its own partitions as usual (None: one worker alone, or `snapshotBy: each`).
        self.snapshot_leader = snapshot_leader
        self._mode: Mode = "none"
        self.status = EngineStatus()
        self._checkpoints: dict[int, Checkpoint] | None = None
        self._length_us = INITIAL_WINDOW_US
        self._parts: list[int] = []

    # -- checkpoints ------------------------------------------------------------------------

    def reload_checkpoints(self) -> None:
        """Forget cached checkpoints: the next cycle reads them from Harper (after a reset or a
        partition moving between workers)."""
        self._checkpoints = None

    def _checkpoint_map(self) -> dict[int, Checkpoint]:
        if self._checkpoints is None:
            self._checkpoints = self._rebased(self.sink.get_checkpoints())
        return self._checkpoints

    @property
    def _clock_kind(self) -> str:
        return CLOCK_EVENT if self._mode == "none" else CLOCK_COMMIT

    def _rebased(self, checkpoints: dict[int, Checkpoint]) -> dict[int, Checkpoint]:
        """Checkpoints of the other clock (event time vs commit time) cannot be resumed:
        those partitions start again (a snapshot, or the first event-time window), which
        rewrites what Harper holds under the same ids, so nothing is lost or duplicated."""
        other = {
            p: cp
            for p, cp in checkpoints.items()
            if cp.hi is not None and cp.clock != self._clock_kind
        }
        if not other:
            return checkpoints
        log.warning(
            "table %s: checkpoints of partitions %s count %s time, the table is now read by "
            "%s time; those partitions start again from %s",
            self.settings.table_id,
            sorted(other),
            other[min(other)].clock or CLOCK_EVENT,
            self._clock_kind,
            "a snapshot" if self._clock_kind == CLOCK_COMMIT else "the oldest row",
        )
        self.sink.audit(
            "state",
            {
                "reason": f"read clock changed to {self._clock_kind} time: partitions start again",
                "partitions": sorted(other),
            },
        )
        out = dict(checkpoints)
        for p, cp in other.items():
            out[p] = replace(
                cp, hi=None, recent=[], clock=self._clock_kind, generation=next_generation(cp)
            )
        return out

    def checkpoints(self) -> dict[int, Checkpoint]:
        """This engine's view of the checkpoints (what its next window builds on)."""
        return dict(self._checkpoint_map())

    def put_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Store checkpoints changed between passes (the reconciler's corrected window counts)
        and keep the cache in step, so the next window does not write the old counts back.
        Call only from the thread that runs `catch_up`."""
        stored = self.sink.put_checkpoints(checkpoints)
        current = self._checkpoint_map()
        for cp in stored:
            current[cp.partition] = cp

    def _hi(self, partition: int) -> int | None:
        cp = self._checkpoint_map().get(partition)
        return cp.hi if cp is not None else None

    def _plan_group(self, parts: Sequence[int]) -> tuple[list[int], int | None, int | None]:
        """The group to read next: the partitions sharing the oldest checkpoint, where that group
        starts (None: never synced), and where it must stop to merge with the next group."""
        his = {p: self._hi(p) for p in parts}
        unsynced = [p for p, hi in his.items() if hi is None]
        if unsynced:
            synced = [hi for hi in his.values() if hi is not None]
            return unsynced, None, min(synced) if synced else None
        oldest = min(h for h in his.values() if h is not None)
        group = [p for p, hi in his.items() if hi == oldest]
        later = [hi for hi in his.values() if hi is not None and hi > oldest]
        return group, oldest, min(later) if later else None

    def lag_now(self) -> float | None:
        """Seconds from the oldest owned checkpoint to now: grows while a window is in flight
        (`status.lag_s` is as of the last checkpoint)."""
        us = self.status.checkpoint_us
        return None if us is None else self.clock() - us / MICROS

    def _status_checkpoint(self, parts: Sequence[int]) -> None:
        his = [self._hi(p) for p in parts]
        known = [h for h in his if h is not None]
        self.status.checkpoint_us = min(known) if known and len(known) == len(his) else None
        if self.status.checkpoint_us is not None:
            self.status.lag_s = self.clock() - self.status.checkpoint_us / MICROS

    # -- one catch-up pass --------------------------------------------------------------------

    def catch_up(self, stop: threading.Event) -> bool:
        """Sync windows until every owned partition reached `now - settle` (returns True), or
        stop is set (returns False). Raises on errors, with the checkpoints where they were.

        `status.caught_up` keeps the last pass's answer while the next one runs (a poll that finds
        nothing new is no reason to look behind); it turns False only on evidence: an error, a
        change of partitions, a reset, or a window that ended short of the head."""
        try:
            return self._catch_up(stop)
        except BaseException:
            self.status.caught_up = False
            raise

    # Over the size caps on purpose: the catch-up loop's exits (stop, head, error, handover)
    # read best in one place.
    def _catch_up(self, stop: threading.Event) -> bool:  # noqa: C901, PLR0912
        checked = False
        while not stop.is_set():
            if self.on_pass is not None:
                self.on_pass(False)
            mode = self.source.feed_mode() if isinstance(self.source, FeedSource) else "none"
            if mode != self._mode:
                self._mode = mode
                self.reload_checkpoints()
            if mode == "none":
                self.status.read_mode = "event-time"
            elif self.status.read_mode not in ("snapshot", "following"):
                self.status.read_mode = "following"
            parts = sorted(self.owned())
            if parts != self._parts:
                # Partitions arrived or left: their checkpoints may have been moved by their
                # previous owner since we last looked, so read them fresh.
                self._parts = parts
                self.status.caught_up = False
                self.reload_checkpoints()
            if not checked:
                checked = True
                if self._target_lost(parts):
                    self.status.caught_up = False
                    continue
            shared = self._shared_snapshot(parts, stop)
            if shared is not None:
                if not shared:
                    return False
                continue
            if not parts:
                self.status.caught_up = True
                return True
            group, lo, cap = self._plan_group(parts)
            if lo is None:
                lo = self._start(group)
                if lo is None:  # the source has no rows for these partitions yet
                    self._status_checkpoint(parts)
                    self.status.caught_up = cap is None
                    if cap is None:
                        return True
                    lo = cap  # nothing older exists: join the next group where it stands
                    self._save(group, Window(lo, lo), Counter(), None)
                    continue
                if cap is not None and lo >= cap:
                    # Their oldest row is newer than where the next group stands: nothing to read
                    # below it, so they join that group there (else they would never get a
                    # checkpoint and this loop would plan them again and again).
                    self._save(group, Window(cap, cap), Counter(), None)
                    continue
            read_parts = None if len(group) == self.settings.partitions else group
            caught_up = self._pipeline(group, read_parts, lo, cap, stop, parts)
            self._status_checkpoint(parts)
            self.status.caught_up = caught_up
            if caught_up:  # reached `now - settle`; any later group is at or past it too
                return True
        return False

    def _needs_snapshot(self, checkpoint: Checkpoint | None, horizon_us: int) -> bool:
        """No checkpoint, one of the other clock (`_rebased`), or one older than time travel."""
        if checkpoint is None or checkpoint.hi is None or checkpoint.clock != self._clock_kind:
            return True
        return checkpoint.hi < horizon_us

    def _shared_snapshot(self, parts: list[int], stop: threading.Event) -> bool | None:
        """One snapshot for every worker: the leader copies every partition that needs one
        (one Storage Read of the table, billed once) and checkpoints them all; the others wait
        for those checkpoints instead of each reading the whole table for its own partitions.
        Nobody follows a partition before its copy is complete, so no snapshot row can
        overwrite a newer version. Returns None when there is nothing to share (the usual plan
        goes on), False when stopped, True to plan again."""
        if self._mode == "none" or self.snapshot_leader is None:
            return None
        leader = self.snapshot_leader()
        if leader is None:
            return None
        assert isinstance(self.source, FeedSource)
        horizon = self.source.horizon_us()
        stored = self.sink.get_checkpoints()  # the copier's checkpoints, or another's reset
        need = [
            p
            for p in range(self.settings.partitions)
            if self._needs_snapshot(stored.get(p), horizon)
        ]
        mine = self._checkpoint_map()
        if any(self._needs_snapshot(mine.get(p), horizon) for p in parts if p not in need):
            self.reload_checkpoints()  # copied by the leader since we last looked
            if self.status.read_mode == "snapshot":
                self.status.read_mode = "following"
        if not need:
            return None
        if leader or set(need) & set(parts):
            self.status.caught_up = False  # a copy is due: nobody involved is at the head
        if leader:
            log.info(
                "table %s: copying a snapshot of partitions %s for every worker",
                self.settings.table_id,
                need,
                extra={"table": self.settings.table_id, "partitions": len(need)},
            )
            self.reload_checkpoints()  # the generations the copy's checkpoints build on
            read_parts = None if len(need) == self.settings.partitions else need
            self._pipeline(need, read_parts, MIN_US, None, stop, parts, copy_for_all=True)
            return not stop.is_set()
        if not set(need) & set(parts):
            return None  # ours are copied: follow them while the rest are
        self.status.read_mode = "snapshot"
        self._status_checkpoint(parts)
        stop.wait(min(1.0, self._grid_us / MICROS))
        return not stop.is_set()

    def _start(self, group: Sequence[int]) -> int | None:
        if self._mode != "none":
            return MIN_US  # before any horizon: the first window is a snapshot
        if self.settings.start_us is not None:
            return self.settings.start_us
        read_parts = None if len(group) == self.settings.partitions else group
        return self.source.first_cursor(read_parts)

    # Over the size caps on purpose: a window's outcomes (written, empty, short, lost target)
    # side by side.
    def _pipeline(  # noqa: PLR0912
        self,
        group: list[int],
        read_parts: Sequence[int] | None,
        lo: int,
        cap: int | None,
        stop: threading.Event,
        parts: list[int],
        copy_for_all: bool = False,
    ) -> bool:
        pages: queue.Queue[_Item] = queue.Queue(maxsize=_QUEUE_PAGES)
        halt = threading.Event()
        reader = threading.Thread(
            target=self._read_ahead,
            args=(read_parts, lo, cap, pages, halt, parts, copy_for_all),
            name=f"read-{self.settings.table_id}",
            daemon=True,
        )
        reader.start()
        counts: Counter[int] = Counter()
        probes = _Probes()
        skipped = coerced = 0
        try:
            while True:
                if stop.is_set():
                    return False
                waited = time.perf_counter()
                try:
                    item = pages.get(timeout=0.2)
                except queue.Empty:
                    continue
                finally:
                    PROFILE.add("idle", time.perf_counter() - waited)
                if isinstance(item, _WindowPage):
                    started = time.monotonic()
                    page = item.page
                    if self.guard is not None and page.records and not item.window.snapshot:
                        # A snapshot holds each key's newest version as of its end, never
                        # older than what an earlier read of the feed wrote.
                        self._apply_guard(page)
                    if page.records:
                        with PROFILE.timed("write"):
                            self.sink.upsert(page.records, page.prepared)
                    if page.deleted:
                        self.sink.delete([str(r["id"]) for r in page.deleted])
                        self.status.rows_deleted += len(page.deleted)
                    counts.update(page.partitions)
                    counts.update(item.page.superseded)
                    for record, partition in zip(
                        item.page.records, item.page.partitions, strict=True
                    ):
                        probes.add(partition, str(record["id"]))
                    skipped += len(item.page.problems)
                    coerced += item.page.coerced
                    self._audit_problems(item.window, item.page.problems)
                    log.debug(
                        "upserted %d rows in %.3fs",
                        len(item.page.records),
                        time.monotonic() - started,
                    )
                    del page, item  # not held while waiting for the next one
                elif isinstance(item, _End):
                    if self._target_lost(group):
                        return False  # re-plan from the reset checkpoints
                    if item.window.snapshot:
                        self.status.read_mode = "following"
                    with PROFILE.timed("checkpoint"):
                        self._save(group, item.window, counts, item, probes.picked())
                    self._status_checkpoint(parts)  # lag and checkpoint per window, not per pass
                    self._audit_coerced(item.window, coerced)
                    self._record_window(item, counts, skipped)
                    counts, skipped, coerced, probes = Counter(), 0, 0, _Probes()
                    if self.on_pass is not None:
                        self.on_pass(True)
                elif isinstance(item, _Done):
                    return item.caught_up
                else:
                    raise item.error
        finally:
            halt.set()
            while reader.is_alive():
                with contextlib.suppress(queue.Empty):
                    pages.get(timeout=0.05)
            reader.join()

    def _apply_guard(self, page: Page) -> None:
        """Drop the page's rows whose Harper record holds a newer version: they count as
        superseded (read, not written)."""
        assert self.guard is not None
        kept, older = self.guard(page.records)
        if not older:
            return
        keep = {id(r) for r in kept}
        pairs = list(zip(page.records, page.partitions, strict=True))
        page.records = [r for r, _ in pairs if id(r) in keep]
        page.partitions = [p for r, p in pairs if id(r) in keep]
        page.superseded.extend(p for r, p in pairs if id(r) not in keep)

    # Over the size caps on purpose: the reader thread's loop: its stop and error paths must
    # stay visible together.
    def _read_ahead(  # noqa: C901
        self,
        read_parts: Sequence[int] | None,
        lo: int,
        cap: int | None,
        pages: queue.Queue[_Item],
        halt: threading.Event,
        parts: list[int],
        copy_for_all: bool = False,
    ) -> None:
        """`copy_for_all`: one snapshot window for other workers' partitions too, then stop
        (the leader then follows only its own); it ends early if leadership moves."""

        def put(item: _Item) -> bool:
            while not halt.is_set():
                try:
                    pages.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            length = self._length_us
            # One pass chases a fixed target: `now - settle` as of its start. A moving target
            # would never be reached with settle 0; the runner's next poll sets a new one.
            now_us = int(self.clock() * MICROS)
            end = now_us - self.settings.settle_us
            cap = end if cap is None else min(cap, end)
            while not halt.is_set():
                moved = (
                    self.snapshot_leader is None or not self.snapshot_leader()
                    if copy_for_all
                    else sorted(self.owned()) != parts
                )
                if moved:
                    # Ownership changed: hand over at this window boundary and re-plan.
                    put(_Done(caught_up=False))
                    return
                now_us = int(self.clock() * MICROS)
                window = self._next_window(lo, cap, length)
                if window is None:
                    put(_Done(caught_up=cap >= end))
                    return
                if window.snapshot:
                    self.status.read_mode = "snapshot"
                # A snapshot is the table as of its end: its lag is the end's.
                start = window.hi if window.snapshot else window.lo
                phase = self.settings.policy.phase((now_us - start) / MICROS)
                target = self.settings.policy.batch_size(phase)
                ids = WindowIds(self.settings.primary_key)
                rows = 0
                started = time.monotonic()
                fetched = time.perf_counter()
                for page in self.source.read(window, read_parts, min(target, 10_000)):
                    PROFILE.add("read", time.perf_counter() - fetched)
                    self._ready(page, ids)
                    rows += len(page.records) + len(page.problems) + len(page.superseded)
                    rows += len(page.deleted)
                    if not put(_WindowPage(window, page)):
                        return
                    del page  # the queue holds it now: not also while the next one is read
                    fetched = time.perf_counter()
                if not put(_End(window, rows, phase, target, length, started)):
                    return
                if copy_for_all:
                    put(_Done(caught_up=False))
                    return
                if not window.snapshot:
                    length = adapt_length(length, rows, target, window)
                lo = window.hi
                if (
                    self._mode == "none"
                    and rows == 0
                    and window.length >= _JUMP_AFTER_EMPTY_US
                    and lo < cap
                ):
                    # A long empty stretch: one query finds the next row instead of many
                    # windows finding nothing. Nothing exists in between, so the checkpoint
                    # may move there (rows arriving late are reconciliation's job).
                    found = self.source.first_cursor(read_parts, lo)
                    skip_to = cap if found is None else min(found, cap)
                    if skip_to > lo:
                        if not put(_End(Window(lo, skip_to), 0, phase, target, length)):
                            return
                        lo, length = skip_to, INITIAL_WINDOW_US
                self._length_us = length
        except BaseException as exc:  # handed to the writer, which raises it
            put(_Failed(exc))

    def _ready(self, page: Page, ids: WindowIds) -> None:
        """A page made ready to write on the reader's thread: its ids, and its bodies encoded
        while the writer waits on Harper, not after, on the writer's path."""
        with PROFILE.timed("ids"):
            for record in page.records:
                record["id"] = ids.id_for(record)
            for record in page.deleted:
                record["id"] = key_id(record, self.settings.primary_key)
        if page.records:
            page.prepared = self.sink.prepare(page.records)

    def _next_window(self, lo: int, cap: int, length: int) -> Window | None:
        """Event time: `next_window`. Change feed: a snapshot as of `cap` when `lo` is before
        the time-travel horizon (or the table was never synced), else the next window of the
        grid every worker shares (`feed.feed_window`)."""
        if self._mode == "none":
            window = next_window(lo, cap, 0, length)
            if window is None or not isinstance(self.source, FeedSource):
                return window
            return align_to_partitions(window, cap, self.source.partition_unit())
        assert isinstance(self.source, FeedSource)
        grid = self._grid_us
        if lo < self.source.horizon_us():
            # As of `now - settle`, but never before the table existed (BigQuery refuses
            # that): a table younger than `settle` is copied as it was created, and its first
            # rows come through the feed once they are old enough.
            at = max(cap, self.source.created_us() or MIN_US)
            return Window(lo, at, snapshot=True)
        window = feed_window(lo, cap, grid)
        if window is None and self.settings.tail_to_cap and lo < cap:
            return Window(lo, cap)
        return window

    @property
    def _grid_us(self) -> int:
        return max(MICROS, int(self.settings.policy.steady_poll_s * MICROS))

    # -- bookkeeping ----------------------------------------------------------------------------

    def _target_lost(self, parts: Sequence[int]) -> bool:
        """True (and the owned partitions reset to start again) when every probe id of some
        partition in `parts` is gone from the target: it was dropped or recreated empty."""
        current = self._checkpoint_map()
        oldest_kept = None
        if self.settings.retention_us is not None:
            oldest_kept = int(self.clock() * MICROS) - self.settings.retention_us
        probed = {
            p: cp.probe
            for p in parts
            if (cp := current.get(p)) is not None
            and cp.probe
            and cp.hi is not None
            and (oldest_kept is None or cp.hi > oldest_kept)
        }
        if not probed:
            return False
        found = self.sink.existing(sorted({i for ids in probed.values() for i in ids}))
        lost = sorted(p for p, ids in probed.items() if not found.intersection(ids))
        if not lost:
            return False
        reset = sorted(p for p in self._parts or parts if p in current)
        rows = sum(current[p].rows_total for p in reset)
        log.warning(
            "table %s: the target table lost the records of partitions %s (dropped or "
            "recreated?); re-syncing partitions %s from the source",
            self.settings.table_id,
            lost,
            reset,
        )
        fresh = [
            replace(
                current[p],
                hi=None,
                rows_total=0,
                recent=[],
                probe=[],
                worker_id=self.worker_id,
                generation=next_generation(current[p]),  # fences the old progress off
            )
            for p in reset
        ]
        for cp in self.sink.put_checkpoints(fresh):
            current[cp.partition] = cp
        self.sink.audit(
            "reset",
            {
                "reason": "target table lost synced records (dropped or recreated): re-syncing "
                "from the source",
                "partitions_lost": lost,
                "partitions_reset": reset,
                "rows_before": rows,
            },
        )
        self.status.target_resets += 1
        if self.on_target_lost is not None:
            self.on_target_lost(reset)
        return True

    def _save(
        self,
        group: Sequence[int],
        window: Window,
        counts: Counter[int],
        end: _End | None,
        probes: dict[int, list[str]] | None = None,
    ) -> None:
        """Move the group's checkpoints to window.hi: called only after every page is confirmed."""
        keep_from = window.hi - self.settings.lateness_us * WATCH_LATENESS_MULTIPLE
        checkpoints = []
        current = self._checkpoint_map()
        for partition in group:
            previous = current.get(partition)
            recent = [w for w in (previous.recent if previous else []) if w["hi"] > keep_from]
            if window.length > 0 and self._mode == "none":
                recent.append({"lo": window.lo, "hi": window.hi, "count": counts[partition]})
            cp = Checkpoint(
                table_id=self.settings.table_id,
                partition=partition,
                hi=window.hi,
                rows_total=(previous.rows_total if previous else 0) + counts[partition],
                window_s=(end.length_us if end else self._length_us) / MICROS,
                phase=str(end.phase if end else self.status.phase),
                batch_size=end.target if end else 0,
                worker_id=self.worker_id,
                last_error=None,
                recent=compact(recent, _RECENT_MAX),  # merges, never drops coverage
                probe=(probes or {}).get(partition) or (previous.probe if previous else []),
                clock=self._clock_kind,
                generation=previous.generation if previous else 0,
            )
            checkpoints.append(cp)
        for cp in self.sink.put_checkpoints(checkpoints):
            current[cp.partition] = cp

    def _record_window(self, end: _End, counts: Counter[int], skipped: int) -> None:
        written = sum(counts.values())
        self.status.phase = end.phase
        self.status.rows_synced += written
        self.status.rows_skipped += skipped
        self.status.windows += 1
        self.status.last_window_rows = end.rows
        self.status.last_success = self.clock()
        self.status.last_error = None
        self.status.lag_s = self.clock() - end.window.hi / MICROS
        if self.on_window is not None:
            self.on_window(self.status, end, written)

    def _audit_coerced(self, window: Window, coerced: int) -> None:
        """NaN/±Inf are written as null by design (JSON has no such numbers): one summary per
        window that had any, so the change is never silent."""
        if coerced:
            self.status.values_coerced += coerced
            self.sink.audit(
                "coerced_values",
                {
                    "count": coerced,
                    "code": "nonfinite_float",
                    "reason": "FLOAT64 NaN/Infinity/-Infinity written as null",
                    "window": f"[{iso(window.lo)}, {iso(window.hi)})",
                },
            )

    def _audit_problems(self, window: Window, problems: Sequence[RowProblem]) -> None:
        for problem in problems:
            by_reason = self.status.skipped_by_reason
            by_reason[problem.code] = by_reason.get(problem.code, 0) + 1
        for problem in problems[:_AUDIT_SAMPLES_PER_WINDOW]:
            self.sink.audit(
                "skipped_row",
                {
                    "code": problem.code,
                    "reason": problem.reason,
                    "column": problem.column,
                    "sample": problem.sample[:1000],
                    "window": f"[{iso(window.lo)}, {iso(window.hi)})",
                },
            )
        if len(problems) > _AUDIT_SAMPLES_PER_WINDOW:
            self.sink.audit(
                "skipped_rows",
                {
                    "count": len(problems),
                    "window": f"[{iso(window.lo)}, {iso(window.hi)})",
                    "codes": sorted({p.code for p in problems}),
                    "reasons": sorted({p.reason for p in problems})[:10],
                },
            )


_RECENT_MAX = 500


class _Probes:
    """A few ids per partition written in one window (first, one from the second half, last):
    the next window's probes. Bounded: a snapshot window writes every row of the table, and a
    list of all its ids grew with the table (about 90 B a row)."""

    def __init__(self) -> None:
        self._seen: dict[int, list[Any]] = {}  # partition -> [count, first, middle, last]

    def add(self, partition: int, record_id: str) -> None:
        seen = self._seen.get(partition)
        if seen is None:
            self._seen[partition] = [1, record_id, record_id, record_id]
            return
        seen[0] += 1
        if seen[0] & (seen[0] - 1) == 0:  # the count is a power of two: index in [n/2, n)
            seen[2] = record_id
        seen[3] = record_id

    def picked(self) -> dict[int, list[str]]:
        return {
            partition: list(dict.fromkeys(ids))[:_PROBES_PER_PARTITION]
            for partition, (_, *ids) in self._seen.items()
        }
