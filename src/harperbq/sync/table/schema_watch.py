"""Notices source schema changes while a table syncs, and applies `onSchemaChange` to them.

Why: the source schema was read once at start, so a column added later was missed until the next
restart, and after a type change every new row failed conversion (skipped) while the table looked
idle. The watch re-reads the schema (`get_table`: metadata, not billed) at the start of each
catch-up pass and at most every `interval_s` between windows, and compares it with the schema the
table was prepared with:
- `fail`: any added, removed or retyped column stops the table with `SourceSchemaChangedError`
  (state `error`, audit, metric) until the configuration or the source is fixed;
- `evolve`: the Harper table is evolved (new attributes, retyped ones untyped), the rows read from
  then on carry the new schema, and the change is audited (kind `schema`). Rows synced before keep
  the old shape: `harperbq sync reset --table X` re-syncs them (see docs/operations.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harperbq.harper.schema import ColumnSpec

log = logging.getLogger("harperbq.sync.schema_watch")

DEFAULT_INTERVAL_S = 60.0


@dataclass(frozen=True)
class SchemaDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = ()  # (column, old type, new type)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.retyped)

    def describe(self) -> str:
        parts = []
        if self.added:
            parts.append(f"added {', '.join(self.added)}")
        if self.removed:
            parts.append(f"removed {', '.join(self.removed)}")
        if self.retyped:
            parts.append(
                "retyped " + ", ".join(f"{c} {old} -> {new}" for c, old, new in self.retyped)
            )
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "retyped": [{"column": c, "old": o, "new": n} for c, o, n in self.retyped],
        }


def _shape(spec: ColumnSpec) -> str:
    inner = ",".join(f"{f.name}:{_shape(f)}" for f in spec.fields)
    return f"{spec.mode.upper()} {spec.bq_type}" + (f"<{inner}>" if inner else "")


def diff(old: Sequence[ColumnSpec], new: Sequence[ColumnSpec]) -> SchemaDiff:
    before = {c.name: _shape(c) for c in old}
    after = {c.name: _shape(c) for c in new}
    return SchemaDiff(
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        retyped=tuple(
            (n, before[n], after[n]) for n in after if n in before and before[n] != after[n]
        ),
    )


class SourceSchemaChangedError(Exception):
    """The source schema changed under `onSchemaChange: fail`: the table stops syncing."""

    permanent = True

    def __init__(self, table_id: str, source: str, change: SchemaDiff) -> None:
        self.change = change
        super().__init__(
            f"table {table_id}: source {source} changed schema while syncing "
            f"({change.describe()}); onSchemaChange is fail, so the table is stopped. Set "
            "onSchemaChange: evolve and restart to take the change (then `harperbq sync reset "
            f"--table {table_id}` to re-sync older rows in the new shape), or revert the "
            "source schema."
        )


class SchemaWatch:
    """One (table, worker)'s view of the source schema, and what to do when it moves."""

    def __init__(
        self,
        table_id: str,
        source_name: str,
        read: Callable[[], list[ColumnSpec]],
        ensure: Callable[[list[ColumnSpec]], Any],
        on_schema_change: str,
        audit: Callable[[str, dict[str, Any]], None],
        *,
        on_evolved: Callable[[SchemaDiff], None] | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table_id = table_id
        self.source_name = source_name
        self.read = read
        self.ensure = ensure
        self.on_schema_change = on_schema_change
        self.audit = audit
        self.on_evolved = on_evolved
        self.interval_s = interval_s
        self.clock = clock
        self.known: list[ColumnSpec] | None = None
        self._checked = 0.0

    def prepare(self) -> None:
        """Read the schema and make the Harper table fit it (at start and after an error; a
        change seen since the last read is handled as in a running pass)."""
        specs = self.read()
        if self.known is not None and self._apply(specs):
            return
        self.ensure(specs)
        self.known = specs
        self._checked = self.clock()

    def __call__(self, between_windows: bool) -> None:
        """The engine's `on_pass` hook: check at every pass start (cheap; polls are seconds
        apart), and between windows once `interval_s` elapsed (a long catch-up writes many
        windows in one pass)."""
        if self.known is None:
            return
        if between_windows and self.clock() - self._checked < self.interval_s:
            return
        self._apply(self.read())

    def _apply(self, specs: list[ColumnSpec]) -> bool:
        """Handle a change from the known schema; False when there is none."""
        self._checked = self.clock()
        change = diff(self.known or specs, specs)
        if not change:
            return False
        if self.on_schema_change != "evolve":
            raise SourceSchemaChangedError(self.table_id, self.source_name, change)
        self.ensure(specs)
        self.known = specs
        log.warning(
            "table %s: source schema changed (%s); Harper table evolved, rows synced before "
            "keep the old shape until `harperbq sync reset --table %s`",
            self.table_id,
            change.describe(),
            self.table_id,
        )
        self.audit(
            "schema",
            {
                "reason": f"source schema changed: {change.describe()}; evolved",
                **change.to_json(),
                "backfill": f"harperbq sync reset --table {self.table_id}",
            },
        )
        if self.on_evolved is not None:
            self.on_evolved(change)
        return True
