"""The config file's shape as pydantic models: exactly the YAML (camelCase keys), nothing
resolved yet. The JavaScript plugin's files validate here unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from harperbq.config.values import (
    ColumnList,
    Confirmation,
    KeyList,
    MillisAsSeconds,
    Seconds,
    Timestamp,
    Workers,
)
from harperbq.cost import QUERY_USD_PER_TIB, STORAGE_READ_USD_PER_TIB, Prices


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)


class SyncSettings(_Model):
    """Sync settings a table may set, each defaulting to the global `sync` block, whose defaults
    are these. Which were written is `model_fields_set` (an explicit null counts as unset), so the
    merge (`tables`) knows what a table inherits without a second, all-optional shape."""

    start_timestamp: Timestamp | None = Field(None, alias="startTimestamp")
    initial_batch_size: int = Field(10_000, alias="initialBatchSize")
    catchup_batch_size: int = Field(1_000, alias="catchupBatchSize")
    steady_batch_size: int = Field(500, alias="steadyBatchSize")
    catchup_threshold_s: Seconds = Field(3600.0, alias="catchupThreshold")
    steady_threshold_s: Seconds = Field(300.0, alias="steadyThreshold")
    poll_interval_s: MillisAsSeconds = Field(30.0, alias="pollInterval")
    primary_key: KeyList = Field(default_factory=list, alias="primaryKey")
    cursor_column: str | None = Field(None, alias="cursorColumn")
    """None: the timestamp column."""
    partition_key: KeyList | None = Field(None, alias="partitionKey")
    """None: the primary key, or the cursor without one."""
    partitions: int = Field(16, alias="partitions")
    settle_s: Seconds = Field(5.0, alias="settle")
    lateness_s: Seconds = Field(3600.0, alias="lateness")
    reconcile_interval_s: Seconds = Field(300.0, alias="reconcileInterval")
    indexes: KeyList = Field(default_factory=list, alias="indexes")
    deletes: Literal["none", "mirror"] = Field("none", alias="deletes")
    change_feed: Literal["auto", "appends", "changes", "none"] = Field("auto", alias="changeFeed")
    """How the source is read (`sync.feed`): `auto` is resolved against the table at start."""
    snapshot_by: Literal["one", "each"] = Field("one", alias="snapshotBy")
    """Who copies a change-feed snapshot with several workers: `one` worker for every
    partition (billed once), or `each` worker its own (billed once per worker, copied in
    parallel)."""
    retention_s: Seconds | None = Field(None, alias="retention")
    """None: kept forever."""
    on_schema_change: Literal["fail", "evolve"] = Field("fail", alias="onSchemaChange")
    numeric_as: Literal["string", "float"] = Field("string", alias="numericAs")
    geography_as: Literal["wkt", "geojson"] = Field("wkt", alias="geographyAs")

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        """`key:` with no value (YAML null) leaves the setting to the level above."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in _SETTING_KEYS)}
        return data


_SETTING_KEYS = frozenset(f.alias for f in SyncSettings.model_fields.values())
"""The file's keys of the sync settings (those a null leaves unset)."""


AUDIT_RETENTION_S = 30 * 86400.0
"""Default `sync.auditRetention`: how long `SyncAudit` entries are kept (30 days)."""
MIN_AUDIT_RETENTION_S = 3600.0
"""Shortest `sync.auditRetention`: less is a unit slip more likely than a wish (it would delete
the trail `sync status` reports from almost as it is written; pruning runs hourly anyway)."""


class GlobalSync(SyncSettings):
    """The top-level `sync` block: defaults for every table, plus node-wide worker settings.
    It is the node's setting as read (`Config.sync`, checked across keys by
    `node.check_node`); the table defaults reach the tables through `tables`."""

    workers: Workers = Field(1, alias="workers")
    min_workers: int = Field(1, alias="minWorkers")
    max_workers: int = Field(4, alias="maxWorkers")
    lease_s: Seconds = Field(30.0, alias="lease")
    heartbeat_interval_s: Seconds = Field(10.0, alias="heartbeatInterval")
    join_grace_s: Seconds = Field(0.0, alias="joinGrace")
    audit_retention_s: Seconds = Field(AUDIT_RETENTION_S, alias="auditRetention")

    @property
    def auto(self) -> bool:
        """`workers: auto`: the service adds/removes local workers by lag (`sync.autoscale`)."""
        return self.workers == "auto"

    @property
    def start_workers(self) -> int:
        """Local workers started with the node (with `auto`: minWorkers)."""
        return self.min_workers if self.workers == "auto" else int(self.workers)

    def node_settings(self) -> dict[str, Any]:
        """The node-wide values that apply, by field name (`config show`): the table defaults
        are shown merged into each table, and minWorkers/maxWorkers only bound `auto`."""
        skip = set(SyncSettings.model_fields)
        if not self.auto:
            skip |= {"min_workers", "max_workers"}
        return {name: getattr(self, name) for name in type(self).model_fields if name not in skip}


class _TableIdentity(_Model):
    """What a table entry names: the source, the target, the columns (first in `config show`:
    pydantic orders a model's fields from its last base to itself)."""

    id: str = Field(alias="id")
    project_id: str | None = Field(None, alias="projectId")
    dataset: str = Field(alias="dataset")
    table: str = Field(alias="table")
    timestamp_column: str | None = Field(None, alias="timestampColumn")
    columns: ColumnList = Field(None, alias="columns")
    target_table: str | None = Field(None, alias="targetTable")
    use_streaming_apis: bool = Field(False, alias="useStreamingAPIs")


class TableModel(SyncSettings, _TableIdentity):
    """One entry of `bigquery.tables`; sync settings may sit here or in its `sync` block."""

    sync: SyncSettings | None = Field(None, alias="sync")


class OperationsModel(_Model):
    """The original's Harper connection block."""

    host: str = Field("localhost", alias="host")
    port: int = Field(9925, alias="port", ge=1, le=65535)
    username: str | None = Field(None, alias="username")
    password: SecretStr | None = Field(None, alias="password")


class HarperConfig(_Model):
    """`harper`: the connection to Harper. The file's block is the setting, resolved in place
    (`node.resolve_harper`): `url`, `username` and `password` taken from the original's
    `operations` block where `harper` does not set them, `password` read from `passwordFile`,
    file paths made absolute against the config's folder, peers checked and deduplicated, the
    encoding checked against the installed libraries."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    url: str = Field("http://localhost:9925", alias="url")
    username: str | None = Field(None, alias="username")
    password: SecretStr | None = Field(None, alias="password")
    password_file: Path | None = Field(None, alias="passwordFile")
    database: str = Field("data", alias="database")
    state_database: str = Field("harperbq", alias="stateDatabase")
    ca_file: Path | None = Field(None, alias="caFile")
    verify: bool = Field(True, alias="verify")
    cert_file: Path | None = Field(None, alias="certFile")
    key_file: Path | None = Field(None, alias="keyFile")
    connect_timeout_s: Seconds = Field(10.0, alias="connectTimeout")
    timeout_s: Seconds = Field(120.0, alias="timeout")
    stall_timeout_s: Seconds = Field(30.0, alias="stallTimeout")
    """A request unanswered this long while Harper also fails a liveness probe is a stall."""
    peers: tuple[str, ...] = Field((), alias="peers")
    """Operations API URLs of the other Harper nodes (schema changes Harper does not replicate
    are applied there too; `config check` checks the user there)."""
    replicated_confirmation: Confirmation = Field("auto", alias="replicatedConfirmation")
    """Peers that must confirm each data write before Harper answers it (harper/replication.py)."""
    replication_timeout_s: Seconds = Field(60.0, alias="replicationTimeout")
    """The read timeout of confirmed writes: how long to wait for the peers' confirmations."""
    encoding: Literal["auto", "json", "orjson", "cbor", "msgpack"] = Field("auto", alias="encoding")
    """The body format of requests to Harper (harper/encoding.py; `auto`: the fastest measured)."""


class BigQueryConfig(_Model):
    """`bigquery`: how to reach BigQuery, plus the tables in either form (`tables`, or the
    original's single-table keys). Resolved in place (`node.resolve_bigquery`): the tables and
    the legacy keys are moved to `Config.tables` (resolved, so they are cleared here), the
    credentials path made absolute, the endpoint given a scheme. `endpoint` set means a local
    API surface with anonymous auth."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    project_id: str | None = Field(None, alias="projectId")
    credentials: Path | None = Field(None, alias="credentials")
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

    @property
    def emulator(self) -> bool:
        return self.endpoint is not None

    @property
    def prices(self) -> Prices:
        """On-demand prices for the estimated cost in status, metrics and the demo."""
        return Prices(self.query_price_per_tib, self.storage_read_price_per_tib)


class ValidationConfig(_Model):
    """`validation`: the file's block is the setting (nothing to resolve), read as it is."""

    enabled: bool = Field(True, alias="enabled")
    interval_s: Seconds = Field(300.0, alias="interval")
    stalled_after_s: Seconds = Field(600.0, alias="stalledAfter")
    sample_rows: int = Field(10_000, alias="sampleRows", ge=0, le=1_000_000)
    """Rows of cells with matching digests compared record by record per run (0: none)."""


class RetryConfig(_Model):
    """`retry`: the file's block is the policy's setting (checked across keys by
    `node.check_retry`), read as it is; `RetryPolicy.from_config` turns it into a policy."""

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


class ControlConfig(_Model):
    """`control`: the HTTP control plane `sync run` serves (status, actions, health, metrics).
    Loopback by default; `port: 0` takes any free port (logged); a token makes every endpoint
    but /healthz require `Authorization: Bearer <token>`. Resolved in place: `token` holds the
    token read from `tokenFile` (`node.resolve_control`)."""

    enabled: bool = Field(True, alias="enabled")
    host: str = Field("127.0.0.1", alias="host")
    port: int = Field(8181, alias="port", ge=0, le=65535)
    token: SecretStr | None = Field(None, alias="token")
    token_file: str | None = Field(None, alias="tokenFile")


class RawConfig(_Model):
    operations: OperationsModel | None = Field(None, alias="operations")
    harper: HarperConfig | None = Field(None, alias="harper")
    bigquery: BigQueryConfig = Field(
        default_factory=lambda: BigQueryConfig.model_validate({}), alias="bigquery"
    )
    sync: GlobalSync = Field(default_factory=lambda: GlobalSync.model_validate({}), alias="sync")
    validation: ValidationConfig = Field(
        default_factory=lambda: ValidationConfig.model_validate({}), alias="validation"
    )
    retry: RetryConfig = Field(
        default_factory=lambda: RetryConfig.model_validate({}), alias="retry"
    )
    synthesizer: SynthesizerConfig = Field(
        default_factory=lambda: SynthesizerConfig.model_validate({}), alias="synthesizer"
    )
    control: ControlConfig = Field(
        default_factory=lambda: ControlConfig.model_validate({}), alias="control"
    )


LEGACY_TABLE_FIELDS = ("dataset", "table", "timestamp_column", "columns", "target_table")
"""The keys of the original's single-table form inside `bigquery`."""


def has_legacy(bq: BigQueryConfig) -> bool:
    """The original's single-table form: `bigquery.dataset`/`table`/`timestampColumn`."""
    return any(getattr(bq, k) is not None for k in ("dataset", "table", "timestamp_column"))
