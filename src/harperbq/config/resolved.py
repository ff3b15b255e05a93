"""A table as it is synced (its entry merged with the global `sync` block) and `Config`, which
holds the tables with the other blocks (`models`: harper, bigquery, sync's node-wide keys,
validation, retry, control). Frozen, so that no component changes another's view of the
config."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harperbq.config.models import (
    BigQueryConfig,
    ControlConfig,
    GlobalSync,
    HarperConfig,
    RetryConfig,
    SynthesizerConfig,
    TableModel,
    ValidationConfig,
)
from harperbq.config.values import KeyList


class TableConfig(TableModel):
    """One synced table as it is synced: its entry with the global `sync` defaults merged in
    (`tables.validate_tables`). The same model as the entry; resolution only fills what the entry
    left to be derived, so these fields are never None here. Durations in seconds; `columns`
    None = *."""

    timestamp_column: str
    cursor_column: str
    partition_key: KeyList
    target_table: str
    sync: None = Field(None, exclude=True)
    """Merged into the fields above."""

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
        project = self.project_id or default_project
        return (
            f"{project}.{self.dataset}.{self.table}" if project else f"{self.dataset}.{self.table}"
        )


STALL_TIMEOUT_MIN_S = 1.0
STALL_TIMEOUT_MAX_S = 3600.0


class Config(BaseModel):
    """The whole config, resolved: the root of the one tree the file's models form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tables: list[TableConfig]
    harper: HarperConfig
    bigquery: BigQueryConfig
    sync: GlobalSync
    retry: RetryConfig
    validation: ValidationConfig
    synthesizer: SynthesizerConfig
    source: Path | None = None
    origins: dict[str, str] = Field(default_factory=dict)
    """Where values taken from the environment came from, e.g. {"harper.password": "env X"}."""
    control: ControlConfig = Field(default_factory=lambda: ControlConfig.model_validate({}))

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
