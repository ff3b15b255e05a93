"""The config model: the original plugin's files load unchanged and every key is honoured."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harperbq.config import (
    Config,
    ConfigError,
    load_config,
    parse_config,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ENV = {"HARPER_PASSWORD": "from-env-123"}


def table(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "positions",
        "dataset": "maritime",
        "table": "vessel_positions",
        "timestampColumn": "timestamp",
        "columns": ["timestamp", "mmsi", "lat", "lon"],
    }
    base.update(overrides)
    return base


def config(*tables: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {"bigquery": {"projectId": "p", "tables": list(tables or [table()])}, **sections}


def parse(data: dict[str, Any], environ: dict[str, str] | None = None) -> Config:
    return parse_config(data, environ=environ or {}, read_files=False)


def problems(data: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse(data, environ)
    found: dict[str, str] = {}
    for p in caught.value.problems:
        text = f"{p.message} | fix: {p.fix}"
        found[p.path] = f"{found[p.path]} || {text}" if p.path in found else text
    return found


def test_original_multi_table_file_loads_and_every_key_is_honoured() -> None:
    cfg = load_config(FIXTURES / "original-multi-table.yaml", ENV)
    assert [t.id for t in cfg.tables] == ["vessel_positions", "port_events", "vessel_metadata"]
    positions, events, metadata = cfg.tables
    assert positions.columns == [
        "timestamp",
        "mmsi",
        "vessel_name",
        "latitude",
        "longitude",
        "speed_knots",
        "heading",
        "course",
    ]
    assert positions.target_table == "VesselPositions"
    assert positions.cursor_column == positions.timestamp_column == "timestamp"
    assert events.columns is None  # '*'
    assert (events.initial_batch_size, events.catchup_batch_size, events.steady_batch_size) == (
        5000,
        500,
        100,
    )
    assert metadata.use_streaming_apis is True and positions.use_streaming_apis is False
    assert metadata.initial_batch_size == 10_000  # from the global sync block
    assert positions.poll_interval_s == 30.0  # 30000 ms
    assert positions.catchup_threshold_s == 3600 and positions.steady_threshold_s == 300
    assert positions.start_timestamp == datetime(2024, 1, 1, tzinfo=UTC)
    # operations -> Harper connection, ${HARPER_PASSWORD} interpolated
    assert cfg.harper.url == "http://localhost:9925"
    assert cfg.harper.username == "admin"
    assert cfg.harper.password is not None
    assert cfg.harper.password.get_secret_value() == "from-env-123"
    assert cfg.bigquery.project_id == "my-project"
    assert cfg.bigquery.location == "US"
    assert cfg.bigquery.max_retries == 5 and cfg.bigquery.initial_retry_delay_s == 1.0
    assert cfg.bigquery.credentials == FIXTURES / "service-account-key.json"
    assert cfg.retry.max_attempts == 5 and cfg.retry.initial_delay_s == 1.0
    assert cfg.retry.backoff_multiplier == 2.0
    assert cfg.validation.enabled is True and cfg.validation.interval_s == 300
    s = cfg.synthesizer
    assert (s.dataset, s.total_vessels, s.batch_size) == ("maritime_tracking", 100_000, 100)
    assert (s.generation_interval_ms, s.retention_days, s.cleanup_interval_hours) == (
        60_000,
        30,
        24,
    )
    assert s.tables.vessel_positions == "vessel_positions"


def test_original_single_table_file_is_one_table_with_id_default() -> None:
    cfg = load_config(FIXTURES / "original-single-table.yaml", ENV)
    assert len(cfg.tables) == 1
    only = cfg.tables[0]
    assert only.id == "default"
    assert (only.dataset, only.table, only.cursor_column) == (
        "maritime_tracking",
        "vessel_positions",
        "timestamp",
    )
    assert only.target_table == "vessel_positions"
    assert only.columns is not None and "mmsi" in only.columns
    assert only.steady_batch_size == 500


def test_secrets_never_print() -> None:
    cfg = load_config(FIXTURES / "original-multi-table.yaml", ENV)
    assert "from-env-123" not in repr(cfg) and "from-env-123" not in str(cfg.harper)
    bad = config(harper={"password": "hunter22", "database": "bad name"})
    with pytest.raises(ConfigError) as caught:
        parse(bad)
    assert "hunter22" not in str(caught.value)


def test_parsing_registers_no_secret_and_the_commands_do(tmp_path: Path) -> None:
    """Parsing has no side effect; `cli.common.read_config`, the commands' one loader, makes
    every secret of the config unprintable in logs."""
    import yaml

    from harperbq import logs
    from harperbq.cli.common import read_config

    cfg = parse(config(harper={"password": "parsed-not-registered"}))
    assert cfg.secrets() == ["parsed-not-registered"]
    assert logs.redact("parsed-not-registered") == "parsed-not-registered"
    data = config(
        harper={"password": "read-and-registered"}, control={"token": "tok-tok-tok-tok-tok"}
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    read_config(path)
    assert logs.redact("pw read-and-registered, token tok-tok-tok-tok-tok") == "pw ***, token ***"


def test_defaults_for_new_keys() -> None:
    only = parse(config()).tables[0]
    assert only.primary_key == []
    assert only.partition_key == ["timestamp"]  # no primary key: the cursor column
    assert only.partitions == 16
    assert only.settle_s == 5.0 and only.lateness_s == 3600.0
    assert only.reconcile_interval_s == 300.0
    assert only.deletes == "none" and only.retention_s is None
    assert only.on_schema_change == "fail" and only.indexes == []
    assert (only.initial_batch_size, only.catchup_batch_size, only.steady_batch_size) == (
        10_000,
        1_000,
        500,
    )
    cfg = parse(config())
    assert cfg.harper.database == "data" and cfg.harper.state_database == "harperbq"
    assert cfg.harper.verify is True
    assert (cfg.sync.workers, cfg.sync.lease_s, cfg.sync.heartbeat_interval_s) == (1, 30, 10)


def test_partition_key_defaults_to_primary_key_and_global_sync_applies_to_tables() -> None:
    data = config(
        table(primaryKey=["mmsi", "timestamp"]),
        table(id="other", table="other", targetTable="Other", partitions=4),
        sync={"partitions": 32, "settle": "30s", "lateness": "2h", "deletes": "mirror"},
    )
    first, second = parse(data).tables
    assert first.partition_key == ["mmsi", "timestamp"]
    assert first.partitions == 32 and second.partitions == 4
    assert first.settle_s == 30 and first.lateness_s == 7200 and first.deletes == "mirror"


def test_a_setting_written_as_null_is_inherited_at_every_level() -> None:
    """`partitions:` with no value (YAML null) leaves it to the level above, as the original's
    files write it; written values apply whatever they equal (the default included)."""
    data = config(
        table(partitions=None, sync={"settle": None}),
        table(id="other", table="other", targetTable="Other", partitions=16, settle="5s"),
        sync={"partitions": 32, "settle": "30s", "lateness": None},
    )
    first, second = parse(data).tables
    assert (first.partitions, first.settle_s, first.lateness_s) == (32, 30.0, 3600.0)
    assert (second.partitions, second.settle_s) == (16, 5.0)


def test_table_sync_block_and_table_level_keys_merge() -> None:
    data = config(table(sync={"partitions": 8, "pollInterval": 5000}, cursorColumn="mmsi"))
    only = parse(data).tables[0]
    assert only.partitions == 8 and only.poll_interval_s == 5.0
    assert only.cursor_column == "mmsi" and only.timestamp_column == "timestamp"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("250ms", 0.25),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("7d", 604_800.0),
        (0, 0.0),
    ],
)
def test_durations(value: Any, seconds: float) -> None:
    assert parse(config(sync={"lateness": value})).tables[0].lateness_s == seconds


@pytest.mark.parametrize("value", ["5 parsecs", "-1s", -1, True, "", "1h-", [1]])
def test_bad_durations_are_problems(value: Any) -> None:
    found = problems(config(sync={"settle": value}))
    assert "sync.settle" in found


def test_original_ms_keys_keep_their_unit_and_accept_explicit_units() -> None:
    assert parse(config(sync={"pollInterval": 1500})).tables[0].poll_interval_s == 1.5
    assert parse(config(sync={"pollInterval": "2s"})).tables[0].poll_interval_s == 2.0
    assert parse(config()).retry.initial_delay_s == 1.0
    cfg = parse(config(retry={"initialDelay": 250, "maxDelay": "10s", "totalTimeout": "2m"}))
    assert (cfg.retry.initial_delay_s, cfg.retry.max_delay_s, cfg.retry.total_timeout_s) == (
        0.25,
        10,
        120,
    )


def test_start_timestamp_forms() -> None:
    def start(value: Any) -> datetime | None:
        return parse(config(sync={"startTimestamp": value})).tables[0].start_timestamp

    assert start("2024-01-01T00:00:00Z") == datetime(2024, 1, 1, tzinfo=UTC)
    assert start("2024-01-01T02:00:00+02:00") == datetime(2024, 1, 1, tzinfo=UTC)
    assert start("2024-01-01 00:00:00") == datetime(2024, 1, 1, tzinfo=UTC)  # naive is UTC
    assert start(datetime(2024, 1, 1)) == datetime(2024, 1, 1, tzinfo=UTC)
    assert "sync.startTimestamp" in problems(config(sync={"startTimestamp": "yesterday"}))


def test_columns_star_means_all() -> None:
    assert parse(config(table(columns="*"))).tables[0].columns is None
    assert parse(config(table(columns=["*"]))).tables[0].columns is None


def test_every_problem_is_reported_at_once_with_paths_values_and_fixes() -> None:
    data = {
        "bigquery": {
            "projectId": "p",
            "tables": [
                table(timestampColum="timestamp"),  # typo
                table(id="b", table="b", columns=["x"], steadyBatchSize=-5),
                table(id="b", table="c", targetTable="VesselPositions", columns=[]),
                table(id="d", table="d", primaryKey=["id"], partitions="many"),
            ],
        },
        "sync": {"steadyThreshold": 4000, "catchupThreshold": 3600, "poll_interval": 5},
        "retry": {"maxAttempts": 0},
    }
    found = problems(data)
    assert "did you mean `timestampColumn`" in found["bigquery.tables[0].timestampColum"]
    assert "did you mean `pollInterval`" in found["sync.poll_interval"]
    assert "timestamp not among the selected columns" in found["bigquery.tables[1].timestampColumn"]
    assert "must be at least 1" in found["bigquery.tables[1].steadyBatchSize"]
    assert "duplicate table id" in found["bigquery.tables[2].id"]
    assert "empty column list" in found["bigquery.tables[2].columns"]
    assert "id not among the selected columns" in found["bigquery.tables[3].primaryKey"]
    assert "bigquery.tables[3].partitions" in found
    assert "retry.maxAttempts" in found
    assert "above catchupThreshold" in found["sync.steadyThreshold"]
    with pytest.raises(ConfigError) as caught:
        parse(data)
    bad_value = next(p for p in caught.value.problems if p.path.endswith("steadyBatchSize"))
    assert bad_value.value == -5 and bad_value.fix
    assert "config problem(s)" in str(caught.value)


def test_duplicate_target_tables() -> None:
    found = problems(config(table(), table(id="again", targetTable="vessel_positions")))
    assert (
        "two tables sync into Harper table 'vessel_positions'"
        in found["bigquery.tables[1].targetTable"]
    )


def test_key_columns_must_be_selected_and_valid() -> None:
    found = problems(
        config(
            table(
                cursorColumn="updated_at",
                partitionKey=["mmsi", "nope"],
                indexes=["lat", "lat", "bad-name"],
            )
        )
    )
    assert "updated_at" in found["bigquery.tables[0].cursorColumn"]
    assert "nope" in found["bigquery.tables[0].partitionKey"]
    assert "not a valid BigQuery column name" in found["bigquery.tables[0].indexes[2]"]
    assert "lists a column twice" in found["bigquery.tables[0].indexes"]


def test_nonsensical_numbers() -> None:
    found = problems(
        config(
            table(retention="30m", lateness="1h", partitions=0, reconcileInterval=0),
            sync={"lease": "5s", "heartbeatInterval": "10s", "workers": 0},
        )
    )
    assert "not longer than lateness" in found["bigquery.tables[0].retention"]
    assert "between 1 and 4096" in found["bigquery.tables[0].partitions"]
    assert "above 0" in found["bigquery.tables[0].reconcileInterval"]
    assert "shorter than two heartbeats" in found["sync.lease"]
    assert "sync.workers" in found


def test_audit_retention_default_duration_and_bounds() -> None:
    assert parse(config()).sync.audit_retention_s == 30 * 86400.0  # docs/configuration.md
    assert parse(config(sync={"auditRetention": "7d"})).sync.audit_retention_s == 7 * 86400.0
    assert parse(config(sync={"auditRetention": 7200})).sync.audit_retention_s == 7200.0
    with pytest.raises(ConfigError) as caught:
        parse(config(sync={"auditRetention": "10m"}))
    (short,) = caught.value.problems
    assert (short.path, short.value) == ("sync.auditRetention", 600.0)
    assert "at least 1h" in short.message and short.fix and '"30d"' in short.fix
    found = problems(config(sync={"auditRetention": "a month"}))
    assert (
        "not a duration" in found["sync.auditRetention"] and '"1h"' in found["sync.auditRetention"]
    )
    assert (
        "node-wide"
        in problems(config(table(auditRetention="1d")))["bigquery.tables[0].auditRetention"]
    )


def test_node_wide_keys_in_a_table_point_to_the_sync_block() -> None:
    found = problems(config(table(workers=3)))
    assert "node-wide" in found["bigquery.tables[0].workers"]


def test_the_same_key_twice_with_different_values() -> None:
    found = problems(config(table(partitions=4, sync={"partitions": 8})))
    assert "set it in one place only" in found["bigquery.tables[0].sync.partitions"]


def test_legacy_and_multi_table_forms_together_are_a_problem() -> None:
    data = config()
    data["bigquery"]["dataset"] = "legacy"
    assert "bigquery.dataset" in problems(data)


def test_missing_required_keys_and_wrong_types() -> None:
    found = problems({"bigquery": {"tables": [{"id": "x", "timestampColumn": "t"}]}, "sync": 5})
    assert "add `dataset`" in found["bigquery.tables[0].dataset"]
    assert "add `table`" in found["bigquery.tables[0].table"]
    assert "sync" in found


def test_interpolation() -> None:
    env = {"PROJECT": "proj-1", "USER_NAME": "alice"}
    data = {
        "bigquery": {"projectId": "${PROJECT}", "tables": [table(dataset="${DATASET:-maritime}")]},
        "harper": {"username": "${USER_NAME}", "password": "pa$$word"},
    }
    cfg = parse(data, env)
    assert cfg.bigquery.project_id == "proj-1"
    assert cfg.tables[0].dataset == "maritime"
    assert cfg.harper.username == "alice"
    assert cfg.harper.password is not None and cfg.harper.password.get_secret_value() == "pa$word"
    found = problems({"harper": {"url": "${NOT_SET_ANYWHERE}"}})
    assert "NOT_SET_ANYWHERE is not set" in found["harper.url"]


def test_environment_overrides() -> None:
    data = config(harper={"url": "http://file:9925", "username": "u", "password": "from-file"})
    cfg = parse(data, {"HARPER_PASSWORD": "generic", "HARPER_URL": "http://generic:1"})
    assert cfg.harper.password is not None
    assert cfg.harper.password.get_secret_value() == "from-file"  # generic only fills gaps
    assert cfg.harper.url == "http://file:9925"
    cfg = parse(data, {"HARPERBQ_HARPER_PASSWORD": "namespaced"})
    assert cfg.harper.password is not None
    assert cfg.harper.password.get_secret_value() == "namespaced"  # namespaced wins
    assert cfg.origins["harper.password"] == "env HARPERBQ_HARPER_PASSWORD"
    cfg = parse(config(), {"HARPER_PASSWORD": "generic", "HARPER_USERNAME": "bob"})
    assert cfg.harper.password is not None and cfg.harper.password.get_secret_value() == "generic"
    assert cfg.harper.username == "bob"
    cfg = parse(
        {"bigquery": {"tables": [table()]}},
        {
            "BIGQUERY_PROJECT": "emu",
            "BIGQUERY_EMULATOR_HOST": "127.0.0.1:9050",
            "BIGQUERY_EMULATOR_GRPC_HOST": "127.0.0.1:9060",
        },
    )
    assert cfg.bigquery.project_id == "emu"
    assert cfg.bigquery.endpoint == "http://127.0.0.1:9050" and cfg.bigquery.emulator
    assert cfg.bigquery.storage_endpoint == "127.0.0.1:9060"


def test_harper_block_wins_over_operations_and_tls_options(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file-secret\n")
    (tmp_path / "ca.pem").write_text("ca")
    data = {
        "operations": {"host": "old", "port": 1, "username": "admin", "password": "old"},
        "harper": {
            "url": "https://harper.example:9925/",
            "passwordFile": "pw",
            "caFile": "ca.pem",
            "verify": False,
            "timeout": "45s",
            "database": "prod",
        },
        "bigquery": {"tables": [table()]},
    }
    path = tmp_path / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path, {})
    assert cfg.harper.url == "https://harper.example:9925"
    assert cfg.harper.username == "admin"  # not in `harper`: taken from `operations`
    assert cfg.harper.password is not None
    assert cfg.harper.password.get_secret_value() == "old"  # explicit password beats the file
    assert cfg.harper.ca_file == tmp_path / "ca.pem" and cfg.harper.verify is False
    assert cfg.harper.timeout_s == 45 and cfg.harper.database == "prod"
    del data["operations"]
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path, {})
    assert cfg.harper.password is not None
    assert cfg.harper.password.get_secret_value() == "from-file-secret"


def test_files_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "harper: {passwordFile: missing.txt, certFile: c.pem}\n"
        "bigquery: {credentials: nokey.json, tables: []}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    paths = {p.path for p in caught.value.problems}
    assert {"harper.passwordFile", "harper.keyFile", "bigquery.credentials"} <= paths


def test_yaml_errors_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("bigquery:\n  tables: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert "not valid YAML at line" in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", {})
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path, {})


def test_emulator_settings() -> None:
    cfg = parse(
        {
            "bigquery": {
                "projectId": "emu",
                "endpoint": "127.0.0.1:9050",
                "storageEndpoint": "127.0.0.1:9060",
                "jobLabels": {"team": "maritime"},
                "maximumBytesBilled": 10**9,
            }
        }
    )
    assert cfg.bigquery.emulator and cfg.bigquery.endpoint == "http://127.0.0.1:9050"
    assert cfg.bigquery.job_labels == {"team": "maritime"}
    assert cfg.bigquery.maximum_bytes_billed == 10**9
    assert cfg.tables == []
    found = problems({"bigquery": {"endpoint": "http://x:1", "jobLabels": {"Bad Key": "x"}}})
    assert "bigquery.projectId" in found and "bigquery.jobLabels.Bad Key" in found


def test_synthesizer_block() -> None:
    cfg = parse(
        {
            "synthesizer": {
                "table": "positions_v2",
                "seed": 7,
                "lateFraction": 0.1,
                "tables": {"portEvents": "events"},
            }
        }
    )
    s = cfg.synthesizer
    assert s.tables.vessel_positions == "positions_v2"  # the original's `table`
    assert s.tables.port_events == "events" and s.tables.vessel_metadata == "vessel_metadata"
    assert (s.seed, s.late_fraction, s.sampling_interval_s, s.late_max_s) == (7, 0.1, 60.0, 3600)
    assert s.duplicate_fraction == 0 and s.use_streaming_apis is False
    found = problems({"synthesizer": {"lateFraction": 2, "totalVessels": 0}})
    assert {"synthesizer.lateFraction", "synthesizer.totalVessels"} <= set(found)


def test_table_lookup() -> None:
    cfg = parse(config())
    assert cfg.table("positions").table == "vessel_positions"
    with pytest.raises(KeyError, match="configured: positions"):
        cfg.table("nope")


def test_workers_auto_and_its_bounds() -> None:
    fixed = parse(config(sync={"workers": 3})).sync
    assert (fixed.workers, fixed.auto, fixed.start_workers) == (3, False, 3)
    auto = parse(config(sync={"workers": "auto", "minWorkers": 2, "maxWorkers": 5})).sync
    assert (auto.workers, auto.auto, auto.start_workers) == ("auto", True, 2)  # minWorkers
    assert (auto.min_workers, auto.max_workers) == (2, 5)
    # `config show`: only what applies (bounds only for auto; table defaults are per table)
    assert set(fixed.node_settings()) == {
        "workers",
        "lease_s",
        "heartbeat_interval_s",
        "join_grace_s",
        "audit_retention_s",
    }
    assert (
        auto.node_settings()["max_workers"] == 5 and "poll_interval_s" not in auto.node_settings()
    )
    default = parse(config(sync={"workers": "auto"})).sync
    assert (default.min_workers, default.max_workers) == (1, 4)
    found = problems(config(sync={"workers": "auto", "minWorkers": 4, "maxWorkers": 2}))
    assert "above maxWorkers" in found["sync.minWorkers"]
    found = problems(config(sync={"workers": "auto", "maxWorkers": 300}))
    assert "between 1 and 256" in found["sync.maxWorkers"]
    found = problems(config(sync={"workers": "many"}))
    assert '"auto" or a whole number' in found["sync.workers"]
    assert "node-wide" in problems(config(table(maxWorkers=3)))["bigquery.tables[0].maxWorkers"]
