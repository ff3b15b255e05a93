"""The one setting resolving reshapes, tables merged with the global `sync` block, and
`Config`, which holds them with the blocks read as they are (`models`: harper, bigquery, sync's
node-wide keys, validation, retry, control). Frozen, so that no component changes another's
view of the config."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from harperbq.config.models import (
    BigQueryConfig,
    ControlConfig,
    GlobalSync,
    HarperConfig,
    RetryConfig,
    SynthesizerConfig,
    ValidationConfig,
)


@dataclass(frozen=True)
class TableConfig:
    """One synced table with global defaults merged in. Durations in seconds; `columns` None = *."""

    id: str
    project: str | None
    dataset: str
    table: str
    timestamp_column: str
    cursor_column: str
    columns: list[str] | None
    target_table: str
    primary_key: list[str]
    partition_key: list[str]
    partitions: int
    settle_s: float
    lateness_s: float
    reconcile_interval_s: float
    indexes: list[str]
    deletes: Literal["none", "mirror"]
    retention_s: float | None
    initial_batch_size: int
    catchup_batch_size: int
    steady_batch_size: int
    catchup_threshold_s: float
    steady_threshold_s: float
    poll_interval_s: float
    start_timestamp: datetime | None
    use_streaming_apis: bool
    on_schema_change: Literal["fail", "evolve"]
    numeric_as: Literal["string", "float"] = "string"
    geography_as: Literal["wkt", "geojson"] = "wkt"
    change_feed: Literal["auto", "appends", "changes", "none"] = "auto"
    """How the source is read (`sync.feed`): `auto` is resolved against the table at start."""
    snapshot_by: Literal["one", "each"] = "one"
    """Who copies a change-feed snapshot with several workers: `one` worker for every
    partition (billed once), or `each` worker its own (billed once per worker, copied in
    parallel)."""

    @property
    def key_columns(self) -> list[str]:
        """Every column the sync itself needs: cursor, timestamp, primary and partition keys."""
        seen: dict[str, None] = {}
        for name in (
            self.cursor_column,
            self.timestamp_column,
            *self.primary_key,
            *self.partition_key,
        ):
            seen.setdefault(name, None)
        return list(seen)

    def source_id(self, default_project: str | None) -> str:
        """`project.dataset.table` of the source table."""
        project = self.project or default_project
        return (
            f"{project}.{self.dataset}.{self.table}" if project else f"{self.dataset}.{self.table}"
        )


STALL_TIMEOUT_MIN_S = 1.0
STALL_TIMEOUT_MAX_S = 3600.0


@dataclass(frozen=True)
class Config:
    tables: list[TableConfig]
    harper: HarperConfig
    bigquery: BigQueryConfig
    sync: GlobalSync
    retry: RetryConfig
    validation: ValidationConfig
    synthesizer: SynthesizerConfig
    source: Path | None = None
    origins: dict[str, str] = field(default_factory=dict)
    """Where values taken from the environment came from, e.g. {"harper.password": "env X"}."""
    control: ControlConfig = field(default_factory=lambda: ControlConfig.model_validate({}))

    def secrets(self) -> list[str]:
        """The values no log line may show (the caller registers them: `logs.register_secrets`;
        parsing has no side effects)."""
        held = [self.harper.password, self.control.token]
        return [s.get_secret_value() for s in held if s is not None]

    def table(self, table_id: str) -> TableConfig:
        for table in self.tables:
            if table.id == table_id:
                return table
        known = ", ".join(t.id for t in self.tables) or "none"
        raise KeyError(f"no table with id {table_id!r} (configured: {known})")
