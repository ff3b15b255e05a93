"""The whole YAML config file as one pydantic model tree, resolved into per-table settings.

Accepts the JavaScript plugin's files unchanged (camelCase keys, the legacy single-table form,
`operations`, `retry`, `validation`, `synthesizer`) and honours every key. Parsing reports every
problem at once, each with its key path, the bad value and a fix. Units: the original keys keep
their units (`pollInterval`, `initialDelay`, `initialRetryDelay` in ms; thresholds and
`validation.interval` in s); the new duration keys take seconds or a string such as "250ms",
"90s", "5m", "1h", "7d". Any duration may also be written as such a string.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from harperbq.cost import QUERY_USD_PER_TIB, STORAGE_READ_USD_PER_TIB, Prices

# ---------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the config: where, what was found, why it is wrong, how to fix it."""

    path: str
    message: str
    value: Any = None
    fix: str | None = None

    def __str__(self) -> str:
        text = f"{self.path or '(file)'}: {self.message}"
        if self.value is not None:
            text += f" (got {self.value!r})"
        if self.fix:
            text += f". Fix: {self.fix}"
        return text

    def to_json(self) -> dict[str, Any]:
        value = self.value if _jsonable(self.value) else repr(self.value)
        return {"path": self.path, "message": self.message, "value": value, "fix": self.fix}


class ConfigError(ValueError):
    """The config cannot be used; `problems` lists every problem found, not only the first."""

    def __init__(self, problems: Sequence[ConfigProblem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} config problem(s){where}:\n{lines}")


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


_SECRET_KEY = re.compile(r"pass(word)?|secret|token", re.I)


def _masked(path: str, value: Any) -> Any:
    return "***" if _SECRET_KEY.search(path.rsplit(".", 1)[-1]) and value is not None else value


# ---------------------------------------------------------------------------------------------
# Value types: durations, timestamps, key lists


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.I)
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION_S = 100 * 365 * 86400.0
"""No duration beyond 100 years: past that, timestamps overflow (year 9999) long before use."""


def _seconds(amount: float, unit: str) -> float:
    """Exact where floats allow: milliseconds divide (250 ms is exactly 0.25 s)."""
    return amount / 1000.0 if unit == "ms" else amount * _UNIT_SECONDS[unit]


def parse_duration(value: Any, unit: str = "s") -> float:
    """Seconds from a number in `unit` or from a string like "250ms", "90s", "1h30m", "7d"."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = _seconds(float(value), unit)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = _seconds(float(text), unit)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or _DURATION_PART.sub("", text).strip():
                raise ValueError(f"not a duration: {value!r}") from None
            seconds = sum(_seconds(float(n), u) for n, u in parts)
    else:
        raise ValueError(f"not a duration: {value!r}")
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"a duration must be a finite number >= 0, got {value!r}")
    return seconds


def _duration_validator(unit: str) -> Callable[[Any], float]:
    def validate(value: Any) -> float:
        try:
            seconds = parse_duration(value, unit)
            if seconds > MAX_DURATION_S:
                raise ValueError(
                    f"a duration must be at most 100 years ({MAX_DURATION_S:g} s), got {value!r}"
                )
            return seconds
        except ValueError as exc:
            raise PydanticCustomError(
                "duration",
                "{error}",
                {
                    "error": str(exc),
                    "fix": f"write a number of {'milliseconds' if unit == 'ms' else 'seconds'}"
                    ' or a string like "250ms", "90s", "5m", "1h"',
                },
            ) from None

    return validate


Seconds = Annotated[float, BeforeValidator(_duration_validator("s"))]
"""A duration in seconds; a bare number means seconds."""
MillisAsSeconds = Annotated[float, BeforeValidator(_duration_validator("ms"))]
"""A duration stored in seconds whose bare numbers mean milliseconds (the original's ms keys)."""


def parse_timestamp(value: Any) -> datetime:
    """An aware UTC datetime from ISO 8601 text (naive text is taken as UTC) or a YAML date."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise PydanticCustomError(
                "timestamp",
                "not an ISO 8601 timestamp: {value}",
                {"value": value, "fix": 'write it like "2024-01-01T00:00:00Z"'},
            ) from None
    else:
        raise PydanticCustomError(
            "timestamp",
            "not a timestamp: {value}",
            {"value": repr(value), "fix": 'write it like "2024-01-01T00:00:00Z"'},
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _as_list(value: Any) -> Any:
    """`primaryKey: mmsi` is read as `[mmsi]`."""
    return [value] if isinstance(value, str) else value


def _columns(value: Any) -> Any:
    """`'*'` (or `['*']`) means every column: None."""
    if value == "*" or value == ["*"]:
        return None
    return value


MAX_CONFIRMATIONS = 100


def _confirmation(value: Any) -> int | str:
    """`harper.replicatedConfirmation`: "auto" or a whole number of peers (0: do not wait)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 0 <= number <= MAX_CONFIRMATIONS:
        raise PydanticCustomError(
            "confirmation",
            'must be "auto" or a whole number from 0 to {limit}',
            {
                "limit": MAX_CONFIRMATIONS,
                "fix": 'write "auto" (1 when the node has a replicating peer, else 0) or a whole '
                f"number of peers from 0 to {MAX_CONFIRMATIONS} (0: do not wait for peers)",
            },
        )
    return number


Confirmation = Annotated[int | Literal["auto"], BeforeValidator(_confirmation)]


def _workers(value: Any) -> int | str:
    """`sync.workers`: a whole number or "auto" (scaled between minWorkers and maxWorkers)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise PydanticCustomError(
        "workers",
        'must be "auto" or a whole number from 1 to {limit}',
        {
            "limit": MAX_WORKERS,
            "fix": f'write a whole number of local workers from 1 to {MAX_WORKERS}, or "auto" '
            "(scaled by lag between sync.minWorkers and sync.maxWorkers)",
        },
    )


MAX_WORKERS = 256
"""Most local workers per node (`sync.workers`, `sync.maxWorkers`)."""
Workers = Annotated[int | Literal["auto"], BeforeValidator(_workers)]
Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
KeyList = Annotated[list[str], BeforeValidator(_as_list)]
ColumnList = Annotated[list[str] | None, BeforeValidator(_columns)]

# BigQuery column names we accept: the classic rules (flexible names are not supported).
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
TABLE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,127}$")
DATASET_NAME = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
TABLE_NAME = re.compile(r"^[\w\-]{1,1024}$")
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9.:\-]{0,127}$")
HARPER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LABEL = re.compile(r"^[a-z0-9_\-]{0,63}$")

# ---------------------------------------------------------------------------------------------
# Input models: exactly the YAML's shape (camelCase keys), nothing resolved yet


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)


class SyncSettings(_Model):
    """Sync settings a table may set, each defaulting to the global `sync` block (None: unset)."""

    start_timestamp: Timestamp | None = Field(None, alias="startTimestamp")
    initial_batch_size: int | None = Field(None, alias="initialBatchSize")
    catchup_batch_size: int | None = Field(None, alias="catchupBatchSize")
    steady_batch_size: int | None = Field(None, alias="steadyBatchSize")
    catchup_threshold_s: Seconds | None = Field(None, alias="catchupThreshold")
    steady_threshold_s: Seconds | None = Field(None, alias="steadyThreshold")
    poll_interval_s: MillisAsSeconds | None = Field(None, alias="pollInterval")
    primary_key: KeyList | None = Field(None, alias="primaryKey")
    cursor_column: str | None = Field(None, alias="cursorColumn")
    partition_key: KeyList | None = Field(None, alias="partitionKey")
    partitions: int | None = Field(None, alias="partitions")
    settle_s: Seconds | None = Field(None, alias="settle")
    lateness_s: Seconds | None = Field(None, alias="lateness")
    reconcile_interval_s: Seconds | None = Field(None, alias="reconcileInterval")
    indexes: KeyList | None = Field(None, alias="indexes")
    deletes: Literal["none", "mirror"] | None = Field(None, alias="deletes")
    change_feed: Literal["auto", "appends", "changes", "none"] | None = Field(
        None, alias="changeFeed"
    )
    snapshot_by: Literal["one", "each"] | None = Field(None, alias="snapshotBy")
    retention_s: Seconds | None = Field(None, alias="retention")
    on_schema_change: Literal["fail", "evolve"] | None = Field(None, alias="onSchemaChange")
    numeric_as: Literal["string", "float"] | None = Field(None, alias="numericAs")
    geography_as: Literal["wkt", "geojson"] | None = Field(None, alias="geographyAs")


SYNC_DEFAULTS: dict[str, Any] = {
    "start_timestamp": None,
    "initial_batch_size": 10_000,
    "catchup_batch_size": 1_000,
    "steady_batch_size": 500,
    "catchup_threshold_s": 3600.0,
    "steady_threshold_s": 300.0,
    "poll_interval_s": 30.0,
    "primary_key": [],
    "cursor_column": None,
    "partition_key": None,
    "partitions": 16,
    "settle_s": 5.0,
    "lateness_s": 3600.0,
    "reconcile_interval_s": 300.0,
    "indexes": [],
    "deletes": "none",
    "change_feed": "auto",
    "snapshot_by": "one",
    "retention_s": None,
    "on_schema_change": "fail",
    "numeric_as": "string",
    "geography_as": "wkt",
}
"""Built-in defaults of every per-table sync setting (seconds for durations)."""


AUDIT_RETENTION_S = 30 * 86400.0
"""Default `sync.auditRetention`: how long `SyncAudit` entries are kept (30 days)."""
MIN_AUDIT_RETENTION_S = 3600.0
"""Shortest `sync.auditRetention`: less is a unit slip more likely than a wish (it would delete
the trail `sync status` reports from almost as it is written; pruning runs hourly anyway)."""


class GlobalSync(SyncSettings):
    """The top-level `sync` block: defaults for every table, plus node-wide worker settings."""

    workers: Workers = Field(1, alias="workers")
    min_workers: int = Field(1, alias="minWorkers")
    max_workers: int = Field(4, alias="maxWorkers")
    lease_s: Seconds = Field(30.0, alias="lease")
    heartbeat_interval_s: Seconds = Field(10.0, alias="heartbeatInterval")
    join_grace_s: Seconds = Field(0.0, alias="joinGrace")
    audit_retention_s: Seconds = Field(AUDIT_RETENTION_S, alias="auditRetention")


class TableModel(SyncSettings):
    """One entry of `bigquery.tables`; sync settings may sit here or in its `sync` block."""

    id: str = Field(alias="id")
    project_id: str | None = Field(None, alias="projectId")
    dataset: str = Field(alias="dataset")
    table: str = Field(alias="table")
    timestamp_column: str | None = Field(None, alias="timestampColumn")
    columns: ColumnList = Field(None, alias="columns")
    target_table: str | None = Field(None, alias="targetTable")
    use_streaming_apis: bool = Field(False, alias="useStreamingAPIs")
    sync: SyncSettings | None = Field(None, alias="sync")


class OperationsModel(_Model):
    """The original's Harper connection block."""

    host: str = Field("localhost", alias="host")
    port: int = Field(9925, alias="port", ge=1, le=65535)
    username: str | None = Field(None, alias="username")
    password: SecretStr | None = Field(None, alias="password")


class HarperModel(_Model):
    url: str | None = Field(None, alias="url")
    username: str | None = Field(None, alias="username")
    password: SecretStr | None = Field(None, alias="password")
    password_file: str | None = Field(None, alias="passwordFile")
    database: str = Field("data", alias="database")
    state_database: str = Field("harperbq", alias="stateDatabase")
    ca_file: str | None = Field(None, alias="caFile")
    verify: bool = Field(True, alias="verify")
    cert_file: str | None = Field(None, alias="certFile")
    key_file: str | None = Field(None, alias="keyFile")
    connect_timeout_s: Seconds = Field(10.0, alias="connectTimeout")
    timeout_s: Seconds = Field(120.0, alias="timeout")
    stall_timeout_s: Seconds = Field(30.0, alias="stallTimeout")
    peers: list[str] = Field(default_factory=list, alias="peers")
    replicated_confirmation: Confirmation = Field("auto", alias="replicatedConfirmation")
    replication_timeout_s: Seconds = Field(60.0, alias="replicationTimeout")
    encoding: Literal["auto", "json", "orjson", "cbor", "msgpack"] = Field("auto", alias="encoding")


class BigQueryModel(_Model):
    project_id: str | None = Field(None, alias="projectId")
    credentials: str | None = Field(None, alias="credentials")
    location: str | None = Field(None, alias="location")
    max_retries: int | None = Field(None, alias="maxRetries", ge=0, le=100)
    initial_retry_delay_s: MillisAsSeconds | None = Field(None, alias="initialRetryDelay")
    tables: list[TableModel] | None = Field(None, alias="tables")
    # legacy single-table form
    dataset: str | None = Field(None, alias="dataset")
    table: str | None = Field(None, alias="table")
    timestamp_column: str | None = Field(None, alias="timestampColumn")
    columns: ColumnList = Field(None, alias="columns")
    target_table: str | None = Field(None, alias="targetTable")
    # local API surface (emulator): anonymous credentials when set
    endpoint: str | None = Field(None, alias="endpoint")
    storage_endpoint: str | None = Field(None, alias="storageEndpoint")
    # cost and read path
    maximum_bytes_billed: int | None = Field(None, alias="maximumBytesBilled", gt=0, le=2**63 - 1)
    job_labels: dict[str, str] = Field(default_factory=dict, alias="jobLabels")
    read_api: Literal["auto", "query", "storage"] = Field("auto", alias="readApi")
    storage_min_rows: int = Field(50_000, alias="storageMinRows", ge=0, le=2**53)
    read_streams: int = Field(4, alias="readStreams", ge=1, le=1000)
    page_size: int = Field(10_000, alias="pageSize", ge=1, le=100_000)
    query_price_per_tib: float = Field(QUERY_USD_PER_TIB, alias="queryPricePerTiB", ge=0, le=1e6)
    storage_read_price_per_tib: float = Field(
        STORAGE_READ_USD_PER_TIB, alias="storageReadPricePerTiB", ge=0, le=1e6
    )


class ValidationModel(_Model):
    enabled: bool = Field(True, alias="enabled")
    interval_s: Seconds = Field(300.0, alias="interval")
    stalled_after_s: Seconds = Field(600.0, alias="stalledAfter")
    sample_rows: int = Field(10_000, alias="sampleRows", ge=0, le=1_000_000)


class RetryModel(_Model):
    max_attempts: int = Field(5, alias="maxAttempts", ge=1, le=100)
    backoff_multiplier: float = Field(2.0, alias="backoffMultiplier", ge=1.0, le=10.0)
    initial_delay_s: MillisAsSeconds = Field(1.0, alias="initialDelay")
    max_delay_s: Seconds = Field(60.0, alias="maxDelay")
    total_timeout_s: Seconds = Field(600.0, alias="totalTimeout")


class SynthesizerTables(BaseModel):
    """Names of the synthesizer's three BigQuery tables."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    vessel_positions: str = Field("vessel_positions", alias="vesselPositions")
    port_events: str = Field("port_events", alias="portEvents")
    vessel_metadata: str = Field("vessel_metadata", alias="vesselMetadata")


class SynthesizerConfig(BaseModel):
    """The `synthesizer` block: the original's keys plus the knobs for testing a sync.

    `table` (the original's positions table) names `tables.vesselPositions` unless that is set.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    dataset: str = Field("maritime_tracking", alias="dataset")
    table: str | None = Field(None, alias="table")
    total_vessels: int = Field(100_000, alias="totalVessels", ge=1, le=900_000)
    batch_size: int = Field(100, alias="batchSize", ge=1, le=1_000_000)
    generation_interval_ms: int = Field(60_000, alias="generationIntervalMs", ge=1, le=86_400_000)
    retention_days: int = Field(30, alias="retentionDays", ge=1, le=36_500)
    cleanup_interval_hours: float = Field(24.0, alias="cleanupIntervalHours", gt=0, le=8760)
    seed: int = Field(42, alias="seed")
    sampling_interval_s: float = Field(60.0, alias="samplingIntervalS", gt=0, le=86_400)
    late_fraction: float = Field(0.0, alias="lateFraction", ge=0, le=1)
    late_max_s: float = Field(3600.0, alias="lateMaxS", ge=0, le=366 * 86400)
    duplicate_fraction: float = Field(0.0, alias="duplicateFraction", ge=0, le=1)
    tables: SynthesizerTables = Field(
        default_factory=lambda: SynthesizerTables.model_validate({}), alias="tables"
    )
    use_streaming_apis: bool = Field(False, alias="useStreamingAPIs")

    @model_validator(mode="before")
    @classmethod
    def _legacy_table(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("table"):
            tables = data.get("tables")
            tables = dict(tables) if isinstance(tables, dict) else {}
            if "vesselPositions" not in tables and "vessel_positions" not in tables:
                tables["vesselPositions"] = data["table"]
                return {**data, "tables": tables}
        return data


class ControlModel(_Model):
    """`control`: the HTTP control plane `sync run` serves (status, actions, health, metrics).
    Loopback by default; `port: 0` takes any free port (logged); a token makes every endpoint
    but /healthz require `Authorization: Bearer <token>`."""

    enabled: bool = Field(True, alias="enabled")
    host: str = Field("127.0.0.1", alias="host")
    port: int = Field(8181, alias="port", ge=0, le=65535)
    token: SecretStr | None = Field(None, alias="token")
    token_file: str | None = Field(None, alias="tokenFile")


class RawConfig(_Model):
    operations: OperationsModel | None = Field(None, alias="operations")
    harper: HarperModel | None = Field(None, alias="harper")
    bigquery: BigQueryModel = Field(
        default_factory=lambda: BigQueryModel.model_validate({}), alias="bigquery"
    )
    sync: GlobalSync = Field(default_factory=lambda: GlobalSync.model_validate({}), alias="sync")
    validation: ValidationModel = Field(
        default_factory=lambda: ValidationModel.model_validate({}), alias="validation"
    )
    retry: RetryModel = Field(default_factory=lambda: RetryModel.model_validate({}), alias="retry")
    synthesizer: SynthesizerConfig = Field(
        default_factory=lambda: SynthesizerConfig.model_validate({}), alias="synthesizer"
    )
    control: ControlModel = Field(
        default_factory=lambda: ControlModel.model_validate({}), alias="control"
    )


# ---------------------------------------------------------------------------------------------
# Resolved settings: what the rest of harperbq reads (snake_case, seconds, defaults applied)


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
class HarperConfig:
    url: str
    username: str | None
    password: SecretStr | None
    database: str = "data"
    state_database: str = "harperbq"
    ca_file: Path | None = None
    verify: bool = True
    cert_file: Path | None = None
    key_file: Path | None = None
    connect_timeout_s: float = 10.0
    timeout_s: float = 120.0
    stall_timeout_s: float = 30.0
    """A request unanswered this long while Harper also fails a liveness probe is a stall."""
    peers: tuple[str, ...] = ()
    """Operations API URLs of the other Harper nodes (schema changes Harper does not replicate
    are applied there too; `config check` checks the user there)."""
    replicated_confirmation: int | Literal["auto"] = "auto"
    """Peers that must confirm each data write before Harper answers it (harper/replication.py)."""
    replication_timeout_s: float = 60.0
    """The read timeout of confirmed writes: how long to wait for the peers' confirmations."""
    encoding: Literal["auto", "json", "orjson", "cbor", "msgpack"] = "auto"
    """The body format of requests to Harper (harper/encoding.py; `auto`: the fastest measured)."""


@dataclass(frozen=True)
class BigQueryConfig:
    """How to reach BigQuery. `endpoint` set means a local API surface with anonymous auth."""

    project_id: str | None = None
    credentials: Path | None = None
    location: str | None = None
    max_retries: int | None = None
    initial_retry_delay_s: float | None = None
    endpoint: str | None = None
    storage_endpoint: str | None = None
    maximum_bytes_billed: int | None = None
    job_labels: dict[str, str] = field(default_factory=dict)
    read_api: Literal["auto", "query", "storage"] = "auto"
    storage_min_rows: int = 50_000
    read_streams: int = 4
    page_size: int = 10_000
    prices: Prices = field(default_factory=Prices)
    """On-demand prices for the estimated cost in status, metrics and the demo (bigquery.cost)."""

    @property
    def emulator(self) -> bool:
        return self.endpoint is not None


@dataclass(frozen=True)
class NodeSyncConfig:
    """Node-wide sync settings: workers per node, their liveness lease, audit retention."""

    workers: int = 1
    """Local workers started with the node (with `auto`: minWorkers)."""
    lease_s: float = 30.0
    heartbeat_interval_s: float = 10.0
    join_grace_s: float = 0.0
    audit_retention_s: float = AUDIT_RETENTION_S
    auto: bool = False
    """`workers: auto`: the service adds/removes local workers by lag (`sync.autoscale`)."""
    min_workers: int = 1
    max_workers: int = 1


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 5
    initial_delay_s: float = 1.0
    backoff_multiplier: float = 2.0
    max_delay_s: float = 60.0
    total_timeout_s: float = 600.0


@dataclass(frozen=True)
class ValidationConfig:
    enabled: bool = True
    interval_s: float = 300.0
    stalled_after_s: float = 600.0
    sample_rows: int = 10_000
    """Rows of cells with matching digests compared record by record per run (0: none)."""


@dataclass(frozen=True)
class ControlConfig:
    """The control plane's listener and its optional bearer token (see ControlModel)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8181
    token: SecretStr | None = None


@dataclass(frozen=True)
class Config:
    tables: list[TableConfig]
    harper: HarperConfig
    bigquery: BigQueryConfig
    sync: NodeSyncConfig
    retry: RetryConfig
    validation: ValidationConfig
    synthesizer: SynthesizerConfig
    source: Path | None = None
    origins: dict[str, str] = field(default_factory=dict)
    """Where values taken from the environment came from, e.g. {"harper.password": "env X"}."""
    control: ControlConfig = field(default_factory=ControlConfig)

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


# ---------------------------------------------------------------------------------------------
# Environment: ${VAR} interpolation and overrides

_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _interpolate(
    node: Any, environ: Mapping[str, str], path: str, problems: list[ConfigProblem]
) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string value; `$$` is a literal `$`."""
    if isinstance(node, dict):
        return {k: _interpolate(v, environ, _join(path, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, environ, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(
            ConfigProblem(
                path,
                f"environment variable {name} is not set",
                None,
                f"export {name}=... or write ${{{name}:-default}}",
            )
        )
        return ""

    return _INTERPOLATION.sub(replace, node)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# (config path, namespaced variable that overrides the file, generic variables that only fill in)
_ENV_SETTINGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("harper.url", "HARPERBQ_HARPER_URL", ("HARPER_URL",)),
    ("harper.username", "HARPERBQ_HARPER_USERNAME", ("HARPER_USERNAME",)),
    ("harper.password", "HARPERBQ_HARPER_PASSWORD", ("HARPER_PASSWORD",)),
    (
        "bigquery.projectId",
        "HARPERBQ_BIGQUERY_PROJECT",
        ("BIGQUERY_PROJECT", "GOOGLE_CLOUD_PROJECT"),
    ),
    ("bigquery.credentials", "HARPERBQ_BIGQUERY_CREDENTIALS", ()),
    ("bigquery.endpoint", "HARPERBQ_BIGQUERY_ENDPOINT", ("BIGQUERY_EMULATOR_HOST",)),
    (
        "bigquery.storageEndpoint",
        "HARPERBQ_BIGQUERY_STORAGE_ENDPOINT",
        ("BIGQUERY_EMULATOR_GRPC_HOST",),
    ),
    ("control.token", "HARPERBQ_CONTROL_TOKEN", ()),
    ("control.host", "HARPERBQ_CONTROL_HOST", ()),
)
ENV_VARIABLES = _ENV_SETTINGS
"""Documented in docs/configuration.md: namespaced variables win over the file; generic ones
(`HARPER_PASSWORD`, `BIGQUERY_EMULATOR_HOST`, ...) are used only where the file sets nothing."""


def _apply_environment(
    data: dict[str, Any], environ: Mapping[str, str], origins: dict[str, str]
) -> dict[str, Any]:
    data = dict(data)
    for path, override, fallbacks in _ENV_SETTINGS:
        section, key = path.split(".")
        block = data.get(section)
        if block is not None and not isinstance(block, dict):
            continue  # reported by validation
        block = dict(block or {})
        if (
            section == "harper"
            and "harper" not in data
            and isinstance(data.get("operations"), dict)
        ):
            current = _from_operations(data["operations"], key)
        else:
            current = block.get(key)
        chosen: str | None = None
        if environ.get(override):
            chosen = override
        elif current in (None, ""):
            chosen = next((name for name in fallbacks if environ.get(name)), None)
        if chosen is None:
            continue
        block[key] = environ[chosen]
        data[section] = block
        origins[path] = f"env {chosen}"
    return data


def _from_operations(operations: Mapping[str, Any], key: str) -> Any:
    if key == "url":
        return None if "host" not in operations and "port" not in operations else "set"
    return operations.get(key)


# ---------------------------------------------------------------------------------------------
# Pydantic errors -> problems (with "did you mean")

_NODE_WIDE = {
    "workers",
    "minWorkers",
    "maxWorkers",
    "lease",
    "heartbeatInterval",
    "joinGrace",
    "auditRetention",
}


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (for listing its allowed keys)."""
    model: type[BaseModel] = RawConfig
    for part in loc:
        if isinstance(part, int):
            continue
        found = next((f for f in model.model_fields.values() if f.alias == part), None)
        if found is None:
            return None
        inner = _model_in(found.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        inner = _model_in(arg)
        if inner is not None:
            return inner
    if get_origin(annotation) is Annotated:
        return _model_in(get_args(annotation)[0])
    return None


def _normal(name: str) -> str:
    return re.sub(r"[_\-\s]", "", name).lower()


def _suggest(key: str, loc: Sequence[Any]) -> str:
    model = _model_at(loc)
    if model is None:
        return "remove it"
    allowed = [f.alias for f in model.model_fields.values() if f.alias]
    if key in _NODE_WIDE and model is not GlobalSync:
        return f"`{key}` is node-wide: set it in the top-level `sync` block"
    same = [a for a in allowed if _normal(a) == _normal(key)]
    close = same or difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    return "remove it; allowed here: " + ", ".join(sorted(allowed))


def _path(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else _join(text, part)[len(text) :]
    return text.lstrip(".")


def _problems_from(error: ValidationError, prefix: Sequence[Any] = ()) -> list[ConfigProblem]:
    problems = []
    for item in error.errors():
        loc = [*prefix, *item["loc"]]
        path = _path(loc)
        kind = item["type"]
        ctx = item.get("ctx") or {}
        value = _masked(path, item.get("input"))
        if kind == "extra_forbidden":
            key = str(loc[-1])
            problems.append(
                ConfigProblem(path, f"unknown key `{key}`", None, _suggest(key, loc[:-1]))
            )
            continue
        if kind == "missing":
            problems.append(
                ConfigProblem(path, "required key is missing", None, f"add `{loc[-1]}`")
            )
            continue
        message = item["msg"]
        fix = ctx.get("fix") or _FIXES.get(kind)
        problems.append(ConfigProblem(path, message, value if _jsonable(value) else None, fix))
    return problems


_FIXES = {
    "int_parsing": "use a whole number",
    "int_type": "use a whole number",
    "int_from_float": "use a whole number",
    "float_parsing": "use a number",
    "bool_parsing": "use true or false",
    "bool_type": "use true or false",
    "string_type": "use a string",
    "list_type": "use a list, e.g. [a, b]",
    "dict_type": "use a mapping of keys to values",
    "model_type": "use a mapping of keys to values",
    "greater_than": "use a larger number",
    "greater_than_equal": "use a larger number",
    "less_than_equal": "use a smaller number",
    "literal_error": "use one of the values listed",
}

# ---------------------------------------------------------------------------------------------
# Semantic checks and resolution


class _Checker:
    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []

    def add(self, path: str, message: str, value: Any = None, fix: str | None = None) -> None:
        problem = ConfigProblem(path, message, _masked(path, value), fix)
        if problem not in self.problems:  # a global setting is checked once per table
            self.problems.append(problem)


def _has_legacy(bq: BigQueryModel) -> bool:
    return any(getattr(bq, k) is not None for k in ("dataset", "table", "timestamp_column"))


_LEGACY_KEYS = ("dataset", "table", "timestampColumn", "columns", "targetTable")


def _raw_tables(raw: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(path, raw table mapping) of every configured table, legacy form included."""
    bq = raw.get("bigquery")
    if not isinstance(bq, dict):
        return
    tables = bq.get("tables")
    if isinstance(tables, list):
        for i, table in enumerate(tables):
            yield f"bigquery.tables[{i}]", table
    if tables is None and any(k in bq for k in ("dataset", "table", "timestampColumn")):
        yield "bigquery", {"id": "default", **{k: bq[k] for k in _LEGACY_KEYS if k in bq}}


def _settings_of(model: SyncSettings) -> dict[str, Any]:
    return {name: getattr(model, name) for name in SyncSettings.model_fields}


def _merged(path: str, table: TableModel, defaults: GlobalSync, check: _Checker) -> dict[str, Any]:
    """Each sync setting from the table, its `sync` block, the global block, or the default."""
    direct = _settings_of(table)
    nested = _settings_of(table.sync) if table.sync is not None else {}
    global_ = _settings_of(defaults)
    values: dict[str, Any] = {}
    for name, info in SyncSettings.model_fields.items():
        here, there = direct.get(name), nested.get(name)
        if here is not None and there is not None and here != there:
            check.add(
                f"{path}.sync.{info.alias}",
                f"also set as {path}.{info.alias} with a different value",
                there,
                "set it in one place only",
            )
        candidates = (here, there, global_.get(name), SYNC_DEFAULTS[name])
        values[name] = next((c for c in candidates if c is not None), None)
    return values


MAX_BATCH_SIZE = 1_000_000
"""Rows per window: far above any useful size (the defaults are 10 000 / 1 000 / 500), and low
enough that a window fits in memory and every stored number stays an exact Harper `Long`."""

_DAY = 86400.0
# (key, field, upper bound in seconds) of the sync durations with a bound below 100 years.
_SYNC_DURATION_LIMITS: tuple[tuple[str, str, float], ...] = (
    ("pollInterval", "poll_interval_s", _DAY),
    ("settle", "settle_s", 7 * _DAY),
    ("reconcileInterval", "reconcile_interval_s", 7 * _DAY),
    ("lateness", "lateness_s", 366 * _DAY),
    ("catchupThreshold", "catchup_threshold_s", 366 * _DAY),
    ("steadyThreshold", "steady_threshold_s", 366 * _DAY),
)


def _span(seconds: float) -> str:
    for unit, size in (("d", _DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _at_most(check: _Checker, path: str, value: float | None, limit: float) -> None:
    """A duration above its sensible maximum (a typo such as ms for s, or a unit too large)."""
    if value is not None and value > limit:
        check.add(
            path,
            f"must be at most {_span(limit)} ({limit:g} s)",
            value,
            f'use a duration between 0 and "{_span(limit)}"',
        )


def _check_numbers(values: Mapping[str, Any], where: Callable[[str], str], check: _Checker) -> bool:
    """Nonsensical sync numbers; `where` gives the path a key was set at. True when fine."""
    before = len(check.problems)
    for key, name in (
        ("initialBatchSize", "initial_batch_size"),
        ("catchupBatchSize", "catchup_batch_size"),
        ("steadyBatchSize", "steady_batch_size"),
    ):
        if values[name] <= 0:
            check.add(where(key), "must be at least 1", values[name], "use a batch size >= 1")
        elif values[name] > MAX_BATCH_SIZE:
            check.add(
                where(key),
                f"must be at most {MAX_BATCH_SIZE:,} rows (one window is held in memory)",
                values[name],
                f"use a batch size between 1 and {MAX_BATCH_SIZE:,}",
            )
    for key, name, limit in _SYNC_DURATION_LIMITS:
        _at_most(check, where(key), values[name], limit)
    steady, catchup = values["steady_threshold_s"], values["catchup_threshold_s"]
    if steady > catchup:
        check.add(
            where("steadyThreshold"),
            f"steadyThreshold ({steady:g} s) is above catchupThreshold ({catchup:g} s)",
            steady,
            "steadyThreshold must be at most catchupThreshold (defaults 300 and 3600 s)",
        )
    if not 1 <= values["partitions"] <= 4096:
        check.add(
            where("partitions"),
            "must be between 1 and 4096",
            values["partitions"],
            "use a partition count such as 16",
        )
    for key, name, fix in (
        ("pollInterval", "poll_interval_s", "use e.g. 30000 (ms)"),
        ("reconcileInterval", "reconcile_interval_s", 'use e.g. "5m"'),
    ):
        if values[name] <= 0:
            check.add(where(key), "must be above 0", values[name], fix)
    retention, lateness = values["retention_s"], values["lateness_s"]
    if retention is not None and retention <= lateness:
        check.add(
            where("retention"),
            f"retention ({retention:g} s) is not longer than lateness ({lateness:g} s): "
            "late rows would be expired as soon as they are synced",
            retention,
            "make retention longer than lateness",
        )
    return len(check.problems) == before


def _check_identity(path: str, table: TableModel, check: _Checker) -> bool:
    ok = True
    for name, pattern, what in (
        ("id", TABLE_ID, "letters, digits, '_' or '-'"),
        ("dataset", DATASET_NAME, "letters, digits or '_'"),
        ("table", TABLE_NAME, "letters, digits, '_' or '-'"),
    ):
        value = getattr(table, name)
        if not pattern.match(value):
            check.add(f"{path}.{name}", f"not a valid {name}", value, f"use {what}")
            ok = False
    if table.project_id is not None and not PROJECT_NAME.match(table.project_id):
        check.add(f"{path}.projectId", "not a valid project id", table.project_id)
        ok = False
    target = table.target_table or table.table
    if not HARPER_NAME.match(target):
        check.add(
            f"{path}.targetTable",
            "not a valid Harper table name",
            target,
            "use letters, digits and '_' (not starting with a digit), e.g. VesselPositions",
        )
        ok = False
    return ok


def _check_columns(
    path: str,
    columns: list[str] | None,
    named: Mapping[str, list[str]],
    where: Callable[[str], str],
    check: _Checker,
) -> bool:
    """Column names valid, listed once, and every key column among the selected columns."""
    before = len(check.problems)
    for key, names in [("columns", columns or []), *named.items()]:
        for i, name in enumerate(names):
            if not COLUMN_NAME.match(name):
                at = f"{path}.columns" if key == "columns" else where(key)
                if key in ("columns", "indexes", "primaryKey", "partitionKey"):
                    at += f"[{i}]"
                check.add(
                    at,
                    "not a valid BigQuery column name",
                    name,
                    "use letters, digits and '_', not starting with a digit",
                )
    for key in ("primaryKey", "partitionKey", "indexes"):
        names = named.get(key, [])
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            check.add(where(key), "lists a column twice", duplicates, "list each column once")
    if columns is None:
        return len(check.problems) == before
    if not columns:
        check.add(
            f"{path}.columns",
            "empty column list",
            [],
            "list the columns to sync, or write '*' for all of them",
        )
        return False
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        check.add(f"{path}.columns", "lists a column twice", duplicates, "list each once")
    selected = set(columns)
    for key, names in named.items():
        missing = [n for n in names if n not in selected]
        if missing:
            check.add(
                where(key),
                f"{key} column(s) {', '.join(missing)} not among the selected columns",
                missing if len(missing) > 1 else missing[0],
                f"add {', '.join(missing)} to {path}.columns",
            )
    return len(check.problems) == before


def _resolve_table(
    path: str, table: TableModel, defaults: GlobalSync, check: _Checker
) -> TableConfig | None:
    values = _merged(path, table, defaults, check)

    def where(key: str) -> str:
        return f"{path}.{key}" if key == "timestampColumn" else _where(path, key, table, defaults)

    ok = _check_identity(path, table, check)
    ok = _check_numbers(values, where, check) and ok
    timestamp = table.timestamp_column
    cursor = values["cursor_column"] or timestamp
    if cursor is None:
        check.add(
            f"{path}.timestampColumn",
            "no cursor column: neither timestampColumn nor cursorColumn is set",
            None,
            "set timestampColumn to the table's event-time column",
        )
        return None
    timestamp = timestamp or cursor
    primary_key = list(values["primary_key"])
    partition_key = list(values["partition_key"] or primary_key or [cursor])
    named: dict[str, list[str]] = {"timestampColumn": [timestamp]}
    if cursor != timestamp:
        named["cursorColumn"] = [cursor]
    named["primaryKey"] = primary_key
    if values["partition_key"] is not None:
        named["partitionKey"] = partition_key
    named["indexes"] = list(values["indexes"])
    ok = _check_columns(path, table.columns, named, where, check) and ok
    if values["change_feed"] == "changes" and not primary_key:
        check.add(
            where("changeFeed"),
            "changes needs a primary key: updates and deletes are applied to the record of "
            "their key",
            "changes",
            "set primaryKey, or use changeFeed: appends",
        )
        ok = False
    if not ok:
        return None
    return TableConfig(
        id=table.id,
        project=table.project_id,
        dataset=table.dataset,
        table=table.table,
        timestamp_column=timestamp,
        cursor_column=cursor,
        columns=list(table.columns) if table.columns is not None else None,
        target_table=table.target_table or table.table,
        primary_key=primary_key,
        partition_key=partition_key,
        partitions=values["partitions"],
        settle_s=values["settle_s"],
        lateness_s=values["lateness_s"],
        reconcile_interval_s=values["reconcile_interval_s"],
        indexes=list(values["indexes"]),
        deletes=values["deletes"],
        retention_s=values["retention_s"],
        initial_batch_size=values["initial_batch_size"],
        catchup_batch_size=values["catchup_batch_size"],
        steady_batch_size=values["steady_batch_size"],
        catchup_threshold_s=values["catchup_threshold_s"],
        steady_threshold_s=values["steady_threshold_s"],
        poll_interval_s=values["poll_interval_s"],
        start_timestamp=values["start_timestamp"],
        use_streaming_apis=table.use_streaming_apis,
        on_schema_change=values["on_schema_change"],
        numeric_as=values["numeric_as"],
        geography_as=values["geography_as"],
        change_feed=values["change_feed"],
        snapshot_by=values["snapshot_by"],
    )


def _where(path: str, key: str, table: TableModel, defaults: SyncSettings) -> str:
    """Where a sync key's effective value was set: the table, its `sync` block, or global `sync`."""
    name = _FIELD_OF[key]
    if getattr(table, name) is not None:
        return f"{path}.{key}"
    if table.sync is not None and getattr(table.sync, name) is not None:
        return f"{path}.sync.{key}"
    if getattr(defaults, name) is not None:
        return f"sync.{key}"
    return f"{path}.{key}"


_FIELD_OF = {f.alias: name for name, f in SyncSettings.model_fields.items() if f.alias}


_M = TypeVar("_M", bound=BaseModel)


def _lenient(model: type[_M], data: Any) -> _M | None:
    """The model without the keys that fail validation (already reported by the whole-file
    validation), so the checks of the rest can still run; None when that is impossible."""
    if not isinstance(data, dict):
        return None
    data = dict(data)
    for _ in range(len(data) + 1):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            bad = {e["loc"][0] for e in exc.errors() if e["loc"] and e["type"] != "missing"}
            if not bad & set(data) or any(e["type"] == "missing" for e in exc.errors()):
                return None
            data = {k: v for k, v in data.items() if k not in bad}
    return None


def _validate_tables(
    raw: Mapping[str, Any], defaults: GlobalSync, check: _Checker
) -> list[TableConfig]:
    """Validate each table on its own so one bad table cannot hide another's problems."""
    tables: list[TableConfig] = []
    ids: dict[str, str] = {}
    targets: dict[str, str] = {}
    for path, data in _raw_tables(raw):
        model = _lenient(TableModel, data)
        if model is None:
            continue  # structural problems are reported by the whole-file validation
        resolved = _resolve_table(path, model, defaults, check)
        if model.id in ids:
            check.add(
                f"{path}.id",
                f"duplicate table id (also used by {ids[model.id]})",
                model.id,
                "give every table a unique id",
            )
        ids.setdefault(model.id, path)
        target = model.target_table or model.table
        if target in targets:
            check.add(
                f"{path}.targetTable",
                f"two tables sync into Harper table {target!r} (also {targets[target]})",
                target,
                "give every table its own targetTable",
            )
        targets.setdefault(target, path)
        if resolved is not None:
            tables.append(resolved)
    return tables


def _userinfo(url: str) -> bool:
    """True when the authority part of `url` carries `user[:password]@`."""
    authority = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return "@" in authority


def redact_url(url: str) -> str:
    """`url` safe to print: any `user:password@` in it replaced by `***@`."""
    if not _userinfo(url):
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, tail = rest.partition("/")
    host = authority.rsplit("@", 1)[1]
    return f"{scheme}{sep}***@{host}{slash}{tail}"


def _resolve_path(value: str | None, base_dir: Path | None) -> Path | None:
    if value is None or value == "":
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _file_check(check: _Checker, path: str, file: Path | None) -> None:
    if file is not None and not file.is_file():
        check.add(path, f"file not found: {file}", str(file), "fix the path or create the file")


def _resolve_harper(
    raw: RawConfig, base_dir: Path | None, check: _Checker, read_files: bool
) -> HarperConfig:
    ops = raw.operations
    h = raw.harper or HarperModel.model_validate({})
    url = h.url
    if url is None and ops is not None:
        url = f"http://{ops.host}:{ops.port}"
    url = url or "http://localhost:9925"
    if _userinfo(url):
        check.add(
            "harper.url" if h.url is not None or ops is None else "operations.host",
            "the URL contains a user name or password; credentials never go in the URL "
            "(it is printed in logs, errors and status)",
            redact_url(url),
            "remove `user:password@` from the URL; set harper.username, and the password in "
            "HARPERBQ_HARPER_PASSWORD or harper.passwordFile",
        )
    elif not re.match(r"^https?://[^/\s]+", url):
        check.add(
            "harper.url",
            "not an http(s) URL",
            redact_url(url),
            'write it like "http://localhost:9925"',
        )
    peers = _resolve_peers(h.peers, check)
    username = h.username or (ops.username if ops else None)
    password = h.password or (ops.password if ops else None)
    password_file = _resolve_path(h.password_file, base_dir)
    if password is None and password_file is not None and read_files:
        try:
            password = SecretStr(password_file.read_text().strip())
        except OSError as exc:
            check.add(
                "harper.passwordFile",
                f"cannot read the password file: {exc.strerror}",
                str(password_file),
                "fix the path or its permissions",
            )
    for key in ("database", "state_database"):
        value = getattr(h, key)
        if not HARPER_NAME.match(value):
            alias = HarperModel.model_fields[key].alias or key
            check.add(f"harper.{alias}", "not a valid Harper database name", value)
    cert, key_file = _resolve_path(h.cert_file, base_dir), _resolve_path(h.key_file, base_dir)
    if (cert is None) != (key_file is None):
        check.add(
            "harper.certFile" if cert is None else "harper.keyFile",
            "a client certificate needs both certFile and keyFile",
            None,
            "set both or neither",
        )
    ca = _resolve_path(h.ca_file, base_dir)
    if read_files:
        for path, file in (
            ("harper.caFile", ca),
            ("harper.certFile", cert),
            ("harper.keyFile", key_file),
        ):
            _file_check(check, path, file)
    if h.connect_timeout_s <= 0 or h.timeout_s <= 0:
        check.add("harper.timeout", "timeouts must be above 0", h.timeout_s)
    if not STALL_TIMEOUT_MIN_S <= h.stall_timeout_s <= STALL_TIMEOUT_MAX_S:
        check.add(
            "harper.stallTimeout",
            f"must be between {STALL_TIMEOUT_MIN_S:g} s and {STALL_TIMEOUT_MAX_S:g} s",
            h.stall_timeout_s,
            'use e.g. "30s" (the default)',
        )
    if not STALL_TIMEOUT_MIN_S <= h.replication_timeout_s <= STALL_TIMEOUT_MAX_S:
        check.add(
            "harper.replicationTimeout",
            f"must be between {STALL_TIMEOUT_MIN_S:g} s and {STALL_TIMEOUT_MAX_S:g} s",
            h.replication_timeout_s,
            'use e.g. "60s" (the default): how long a data write may wait for its peers',
        )
    return HarperConfig(
        url=url.rstrip("/"),
        username=username,
        password=password,
        database=h.database,
        state_database=h.state_database,
        ca_file=ca,
        verify=h.verify,
        cert_file=cert,
        key_file=key_file,
        connect_timeout_s=h.connect_timeout_s,
        timeout_s=h.timeout_s,
        stall_timeout_s=h.stall_timeout_s,
        peers=peers,
        replicated_confirmation=h.replicated_confirmation,
        replication_timeout_s=h.replication_timeout_s,
        encoding=_resolve_encoding(h.encoding, check),
    )


def _resolve_encoding(
    name: Literal["auto", "json", "orjson", "cbor", "msgpack"], check: _Checker
) -> Literal["auto", "json", "orjson", "cbor", "msgpack"]:
    """`harper.encoding`: a named encoding needs its library installed."""
    from harperbq.harper.encoding import resolve

    try:
        resolve(name)
    except ValueError as exc:
        check.add("harper.encoding", str(exc), name, 'use "auto" (the default) or "json"')
        return "json"
    return name


def _resolve_peers(values: list[str], check: _Checker) -> tuple[str, ...]:
    """`harper.peers`: http(s) URLs without credentials, each once."""
    out: list[str] = []
    for index, value in enumerate(values):
        key = f"harper.peers[{index}]"
        if _userinfo(value):
            check.add(
                key,
                "the URL contains a user name or password; every node uses harper.username "
                "and its password",
                redact_url(value),
                "remove `user:password@` from the URL",
            )
        elif not re.match(r"^https?://[^/\s]+", value):
            check.add(
                key,
                "not an http(s) URL",
                value,
                'write the Operations API URL of the node, like "https://node2:9925"',
            )
        elif value.rstrip("/") not in out:
            out.append(value.rstrip("/"))
    return tuple(out)


def _resolve_bigquery(
    bq: BigQueryModel, base_dir: Path | None, check: _Checker, read_files: bool
) -> BigQueryConfig:
    if bq.tables is not None and _has_legacy(bq):
        check.add(
            "bigquery.dataset",
            "both the legacy single-table keys (dataset/table/timestampColumn/columns) and "
            "`tables` are set",
            None,
            "move the legacy table into `tables` (with an id) or drop `tables`",
        )
    if bq.project_id is not None and not PROJECT_NAME.match(bq.project_id):
        check.add("bigquery.projectId", "not a valid project id", bq.project_id)
    if bq.endpoint is not None and bq.project_id is None:
        check.add(
            "bigquery.projectId",
            "an emulator endpoint needs an explicit projectId",
            None,
            "set bigquery.projectId (the emulator's project)",
        )
    endpoint = bq.endpoint
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        endpoint = f"http://{endpoint}"
    for key, value in bq.job_labels.items():
        if not LABEL.match(key) or not key or not LABEL.match(value):
            check.add(
                f"bigquery.jobLabels.{key}",
                "not a valid BigQuery label",
                value,
                "use lowercase letters, digits, '_' or '-', at most 63 characters",
            )
    credentials = _resolve_path(bq.credentials, base_dir)
    if read_files and endpoint is None:
        _file_check(check, "bigquery.credentials", credentials)
    return BigQueryConfig(
        project_id=bq.project_id,
        credentials=credentials,
        location=bq.location,
        max_retries=bq.max_retries,
        initial_retry_delay_s=bq.initial_retry_delay_s,
        endpoint=endpoint.rstrip("/") if endpoint else None,
        storage_endpoint=bq.storage_endpoint,
        maximum_bytes_billed=bq.maximum_bytes_billed,
        job_labels=dict(bq.job_labels),
        read_api=bq.read_api,
        storage_min_rows=bq.storage_min_rows,
        read_streams=bq.read_streams,
        page_size=bq.page_size,
        prices=Prices(bq.query_price_per_tib, bq.storage_read_price_per_tib),
    )


def _resolve_workers(sync: GlobalSync, check: _Checker) -> tuple[int, int, int]:
    """(workers at start, minWorkers, maxWorkers); a fixed count is its own min and max."""
    if sync.workers != "auto":
        if not 1 <= sync.workers <= MAX_WORKERS:
            check.add(
                "sync.workers",
                f"must be between 1 and {MAX_WORKERS}",
                sync.workers,
                f'use a whole number from 1 to {MAX_WORKERS}, or "auto"',
            )
        return sync.workers, sync.workers, sync.workers
    low, high = sync.min_workers, sync.max_workers
    for key, value in (("minWorkers", low), ("maxWorkers", high)):
        if not 1 <= value <= MAX_WORKERS:
            check.add(
                f"sync.{key}",
                f"must be between 1 and {MAX_WORKERS}",
                value,
                f"use a whole number from 1 to {MAX_WORKERS} (defaults: minWorkers 1, "
                "maxWorkers 4)",
            )
    if low > high:
        check.add(
            "sync.minWorkers",
            f"minWorkers ({low}) is above maxWorkers ({high})",
            low,
            "make minWorkers at most maxWorkers",
        )
    return low, low, high


def _resolve_node(sync: GlobalSync, check: _Checker) -> NodeSyncConfig:
    workers, low, high = _resolve_workers(sync, check)
    if sync.heartbeat_interval_s <= 0:
        check.add("sync.heartbeatInterval", "must be above 0", sync.heartbeat_interval_s)
    elif sync.lease_s < 2 * sync.heartbeat_interval_s:
        check.add(
            "sync.lease",
            f"lease ({sync.lease_s:g} s) is shorter than two heartbeats "
            f"({sync.heartbeat_interval_s:g} s each): live workers would be declared dead",
            sync.lease_s,
            "make lease at least twice heartbeatInterval (defaults 30 s and 10 s)",
        )
    for key, value, limit in (
        ("lease", sync.lease_s, _DAY),
        ("heartbeatInterval", sync.heartbeat_interval_s, 3600.0),
        ("joinGrace", sync.join_grace_s, 3600.0),
    ):
        _at_most(check, f"sync.{key}", value, limit)
    if sync.audit_retention_s < MIN_AUDIT_RETENTION_S:
        check.add(
            "sync.auditRetention",
            f"must be at least {_span(MIN_AUDIT_RETENTION_S)} ({MIN_AUDIT_RETENTION_S:g} s): "
            "audit entries (what `sync status` reports) would be deleted almost as written",
            sync.audit_retention_s,
            f'use a duration of at least "{_span(MIN_AUDIT_RETENTION_S)}", '
            f'e.g. "{_span(AUDIT_RETENTION_S)}" (the default)',
        )
    return NodeSyncConfig(
        workers,
        sync.lease_s,
        sync.heartbeat_interval_s,
        max(0.0, sync.join_grace_s),
        sync.audit_retention_s,
        auto=sync.workers == "auto",
        min_workers=low,
        max_workers=high,
    )


def _resolve_control(
    control: ControlModel, base_dir: Path | None, check: _Checker, read_files: bool
) -> ControlConfig:
    token = control.token
    token_file = _resolve_path(control.token_file, base_dir)
    if token is None and token_file is not None and read_files:
        try:
            token = SecretStr(token_file.read_text().strip())
        except OSError as exc:
            check.add(
                "control.tokenFile",
                f"cannot read the token file: {exc.strerror}",
                str(token_file),
                "fix the path or its permissions",
            )
    if token is not None and len(token.get_secret_value()) < 16:
        check.add("control.token", "too short (under 16 characters)", None, "use a long token")
    if control.enabled and token is None and not is_loopback(control.host):
        check.add(
            "control.host",
            "the control API would listen beyond loopback without a token: anyone who can "
            "reach it could stop the sync",
            control.host,
            "set control.token (or control.tokenFile, or HARPERBQ_CONTROL_TOKEN), or bind "
            "127.0.0.1",
        )
    return ControlConfig(control.enabled, control.host, control.port, token)


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses: the only places served without a token."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _resolve_retry(retry: RetryModel, check: _Checker) -> RetryConfig:
    if retry.initial_delay_s <= 0:
        check.add("retry.initialDelay", "must be above 0", retry.initial_delay_s)
    if retry.max_delay_s < retry.initial_delay_s:
        check.add("retry.maxDelay", "must be at least initialDelay", retry.max_delay_s)
    if retry.total_timeout_s <= 0:
        check.add("retry.totalTimeout", "must be above 0", retry.total_timeout_s)
    for key, value, limit in (
        ("initialDelay", retry.initial_delay_s, 3600.0),
        ("maxDelay", retry.max_delay_s, _DAY),
        ("totalTimeout", retry.total_timeout_s, 7 * _DAY),
    ):
        _at_most(check, f"retry.{key}", value, limit)
    return RetryConfig(
        max_attempts=retry.max_attempts,
        initial_delay_s=retry.initial_delay_s,
        backoff_multiplier=retry.backoff_multiplier,
        max_delay_s=retry.max_delay_s,
        total_timeout_s=retry.total_timeout_s,
    )


# ---------------------------------------------------------------------------------------------
# Entry points


def parse_config(
    data: Mapping[str, Any] | None,
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    source: Path | None = None,
    read_files: bool = True,
) -> Config:
    """Validate and resolve a parsed YAML mapping. Raises ConfigError listing every problem.

    `environ` (default os.environ) feeds `${VAR}` interpolation and the overrides; relative file
    paths are taken from `base_dir`; `read_files=False` skips reading `passwordFile` and checking
    that files exist.
    """
    env = os.environ if environ is None else environ
    check = _Checker()
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            [ConfigProblem("", "the config must be a mapping of keys to values", None)],
            str(source) if source else None,
        )
    origins: dict[str, str] = {}
    interpolated = _interpolate(dict(data), env, "", check.problems)
    prepared = _apply_environment(interpolated, env, origins)
    raw: RawConfig | None = None
    try:
        raw = RawConfig.model_validate(prepared)
    except ValidationError as exc:
        check.problems.extend(_problems_from(exc))
    defaults = _lenient(GlobalSync, prepared.get("sync") or {}) or GlobalSync.model_validate({})
    global_values = {
        name: value if value is not None else SYNC_DEFAULTS[name]
        for name, value in _settings_of(defaults).items()
    }
    _check_numbers(global_values, lambda key: f"sync.{key}", check)
    tables = _validate_tables(prepared, defaults, check)
    if raw is not None:
        base = base_dir if base_dir is not None else (source.parent if source else None)
        harper = _resolve_harper(raw, base, check, read_files)
        bigquery = _resolve_bigquery(raw.bigquery, base, check, read_files)
        node = _resolve_node(raw.sync, check)
        retry = _resolve_retry(raw.retry, check)
        control = _resolve_control(raw.control, base, check, read_files)
        _at_most(check, "validation.interval", raw.validation.interval_s, 7 * _DAY)
        _at_most(check, "validation.stalledAfter", raw.validation.stalled_after_s, 30 * _DAY)
        if raw.bigquery.initial_retry_delay_s is not None:
            _at_most(
                check, "bigquery.initialRetryDelay", raw.bigquery.initial_retry_delay_s, 3600.0
            )
    if check.problems or raw is None:
        raise ConfigError(check.problems, str(source) if source else None)
    return Config(
        tables=tables,
        harper=harper,
        bigquery=bigquery,
        sync=node,
        retry=retry,
        validation=ValidationConfig(
            raw.validation.enabled,
            raw.validation.interval_s,
            raw.validation.stalled_after_s,
            raw.validation.sample_rows,
        ),
        synthesizer=_synthesizer(raw),
        source=source,
        origins=origins,
        control=control,
    )


def load_config(
    path: str | Path, environ: Mapping[str, str] | None = None, *, read_files: bool = True
) -> Config:
    """Read, interpolate, validate and resolve a YAML config file (see parse_config)."""
    file = Path(path).expanduser().absolute()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [
                ConfigProblem(
                    "",
                    f"cannot read {file}: {exc.strerror or exc}",
                    None,
                    "pass the right file with --config, or create it",
                )
            ],
            str(file),
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            [ConfigProblem("", f"not valid YAML at {where}: {problem}", None, "fix the syntax")],
            str(file),
        ) from exc
    if data is None:
        raise ConfigError(
            [
                ConfigProblem(
                    "",
                    "the config file is empty (or only comments)",
                    None,
                    "add at least `harper` and `bigquery` blocks; docs/configuration.md has a "
                    "complete example",
                )
            ],
            str(file),
        )
    return parse_config(
        data, environ=environ, base_dir=file.parent, source=file, read_files=read_files
    )


def _synthesizer(raw: RawConfig) -> SynthesizerConfig:
    """The `synthesizer` block, whose dataset and positions table default to the legacy
    single-table `bigquery.dataset` / `bigquery.table` (as in the JS plugin), so that a migrated
    single-table file has the synthesizer write the very table the sync reads."""
    synth, bq = raw.synthesizer, raw.bigquery
    if bq.tables is not None:
        return synth
    update: dict[str, Any] = {}
    if bq.dataset and "dataset" not in synth.model_fields_set:
        update["dataset"] = bq.dataset
    positions_set = "table" in synth.model_fields_set or (
        "vessel_positions" in synth.tables.model_fields_set
    )
    if bq.table and not positions_set:
        update["table"] = bq.table
        update["tables"] = synth.tables.model_copy(update={"vessel_positions": bq.table})
    return synth.model_copy(update=update) if update else synth
