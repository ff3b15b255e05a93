"""examples/ are documentation users copy: each config must load with the project's own loader
(offline, environment given explicitly) and say what its README claims, or the README lies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harperbq.config import Config, ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

# What `harperbq dev up` writes to .harperbq/dev/credentials.env (values made up here).
DEV_ENV = {
    "HARPER_URL": "http://127.0.0.1:9925",
    "HARPER_USERNAME": "admin",
    "HARPER_PASSWORD": "example-password-1234",
    "BIGQUERY_PROJECT": "harperbq-local",
    "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9050",
    "BIGQUERY_EMULATOR_GRPC_HOST": "127.0.0.1:9060",
}


@dataclass(frozen=True)
class Table:
    id: str
    source: str
    target: str
    primary_key: tuple[str, ...] = ()
    change_feed: str = "auto"
    columns: tuple[str, ...] | None = None


EXPECTED: dict[str, tuple[Table, ...]] = {
    "append-only-events": (
        Table("ex_port_events", "harperbq_examples.port_events", "ExPortEvents", (), "appends"),
    ),
    "keyed-updates": (
        Table(
            "ex_vessel_metadata",
            "harperbq_examples.vessel_metadata",
            "ExVesselMetadata",
            ("mmsi",),
            "changes",
        ),
    ),
    "column-selection": (
        Table(
            "ex_positions_map",
            "harperbq_examples.vessel_positions",
            "ExPositionsMap",
            ("mmsi", "timestamp"),
            columns=(
                "timestamp",
                "mmsi",
                "vessel_name",
                "latitude",
                "longitude",
                "speed_knots",
                "course",
                "heading",
                "status",
            ),
        ),
        Table(
            "ex_port_calls",
            "harperbq_examples.port_events",
            "ExPortCalls",
            columns=("event_time", "port_id", "vessel_mmsi", "event_type"),
        ),
        Table(
            "ex_vessel_names",
            "harperbq_examples.vessel_metadata",
            "ExVesselNames",
            ("mmsi",),
            columns=("last_updated", "mmsi", "vessel_name", "vessel_type", "flag"),
        ),
    ),
    "cluster-three-nodes": (
        Table(
            "ex_cluster_positions",
            "harperbq_examples.vessel_positions",
            "ExClusterPositions",
            ("mmsi", "timestamp"),
        ),
    ),
    "synthesizer-end-to-end": (
        Table(
            "ex_synth_positions",
            "harperbq_synth_e2e.vessel_positions",
            "ExSynthPositions",
            ("mmsi", "timestamp"),
        ),
        Table("ex_synth_events", "harperbq_synth_e2e.port_events", "ExSynthEvents"),
        Table(
            "ex_synth_vessels", "harperbq_synth_e2e.vessel_metadata", "ExSynthVessels", ("mmsi",)
        ),
    ),
}


def _folders() -> list[Path]:
    return sorted(p for p in EXAMPLES.iterdir() if p.is_dir())


def _leaves(node: object, path: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, f"{path}[{i}]")]
    return [(path, node)]


def _load(name: str, **extra: str) -> Config:
    return load_config(EXAMPLES / name / "config.yaml", environ={**DEV_ENV, **extra})


def test_every_example_folder_has_a_readme_and_a_config_and_is_checked_here() -> None:
    folders = _folders()
    assert len(folders) >= 5
    for folder in folders:
        assert (folder / "README.md").is_file(), folder.name
        assert (folder / "config.yaml").is_file(), folder.name
    assert {f.name for f in folders} == set(EXPECTED)
    index = (EXAMPLES / "README.md").read_text()
    for folder in folders:
        assert f"]({folder.name}/)" in index, f"examples/README.md does not link {folder.name}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_config_parses_to_what_its_readme_claims(name: str) -> None:
    cfg = _load(name)
    readme = (EXAMPLES / name / "README.md").read_text()
    assert [t.id for t in cfg.tables] == [t.id for t in EXPECTED[name]]
    for table, expected in zip(cfg.tables, EXPECTED[name], strict=True):
        assert f"{table.dataset}.{table.table}" == expected.source, table.id
        assert table.target_table == expected.target, table.id
        assert tuple(table.primary_key) == expected.primary_key, table.id
        assert table.change_feed == expected.change_feed, table.id
        assert (tuple(table.columns) if table.columns else None) == expected.columns, table.id
        assert table.target_table in readme, f"{name}/README.md does not name {table.target_table}"
        assert table.id in readme, f"{name}/README.md does not name {table.id}"
    # Every command in the README runs this example's own file.
    for path in re.findall(r"-c (examples/[^\s`]+)", readme):
        assert path == f"examples/{name}/config.yaml", path
    # The local stack's endpoints come from the environment, not from the file.
    assert cfg.bigquery.endpoint == DEV_ENV["BIGQUERY_EMULATOR_HOST"]
    assert cfg.bigquery.storage_endpoint == DEV_ENV["BIGQUERY_EMULATOR_GRPC_HOST"]
    assert cfg.bigquery.project_id == DEV_ENV["BIGQUERY_PROJECT"]
    assert cfg.harper.url == DEV_ENV["HARPER_URL"]
    assert cfg.harper.password is not None
    assert cfg.harper.password.get_secret_value() == DEV_ENV["HARPER_PASSWORD"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_secrets_come_from_the_environment(name: str) -> None:
    text = (EXAMPLES / name / "config.yaml").read_text()
    raw = yaml.safe_load(text)
    assert raw["harper"]["password"] == "${HARPER_PASSWORD}"
    for key, value in _leaves(raw):
        if re.search(r"pass(word)?|secret|token", key, re.I):
            assert isinstance(value, str) and re.fullmatch(r"\$\{[A-Z_]+\}", value), key
    env = {k: v for k, v in DEV_ENV.items() if k != "HARPER_PASSWORD"}
    with pytest.raises(ConfigError) as raised:
        load_config(EXAMPLES / name / "config.yaml", environ=env)
    assert any("HARPER_PASSWORD" in p.message for p in raised.value.problems)


def test_examples_that_share_a_dataset_share_its_synthesizer_and_never_their_state() -> None:
    configs = {name: _load(name) for name in EXPECTED}
    by_dataset: dict[str, set[str]] = {}
    for name, cfg in configs.items():
        synth = cfg.synthesizer.model_dump()
        by_dataset.setdefault(cfg.synthesizer.dataset, set()).add(repr(sorted(synth.items())))
        # The synthesizer writes the very dataset the sync reads.
        assert {t.dataset for t in cfg.tables} == {cfg.synthesizer.dataset}, name
    # The synthesizer refuses to add rows made with other parameters: one block per dataset.
    assert all(len(blocks) == 1 for blocks in by_dataset.values()), by_dataset
    states = [cfg.harper.state_database for cfg in configs.values()]
    assert len(states) == len(set(states)), states
    targets = [t.target_table for cfg in configs.values() for t in cfg.tables]
    assert len(targets) == len(set(targets)), targets


def test_keyed_updates_example_follows_updates_and_deletes() -> None:
    (table,) = _load("keyed-updates").tables
    assert table.change_feed == "changes" and table.primary_key == ["mmsi"]
    assert table.cursor_column == "last_updated"
    # `changes` without the key is refused, as its README says.
    raw = yaml.safe_load((EXAMPLES / "keyed-updates" / "config.yaml").read_text())
    del raw["bigquery"]["tables"][0]["primaryKey"]
    from harperbq.config import parse_config

    with pytest.raises(ConfigError, match="changes needs a primary key"):
        parse_config(raw, environ=DEV_ENV)


def test_column_selection_example_sets_settings_at_every_level() -> None:
    positions, calls, names = _load("column-selection").tables
    assert positions.steady_batch_size == 2000 and calls.steady_batch_size == 500
    assert positions.partition_key == ["mmsi"]
    assert names.initial_batch_size == 5000 and names.primary_key == ["mmsi"]
    for table in (positions, calls, names):
        assert table.poll_interval_s == 10.0 and table.partitions == 8
        assert set(table.key_columns) <= set(table.columns or [])


def test_cluster_example_takes_each_nodes_settings_from_the_environment() -> None:
    cfg = _load("cluster-three-nodes", HARPERBQ_HARPER_URL="https://node-b:9925")
    assert cfg.harper.url == "https://node-b:9925"
    assert cfg.origins["harper.url"] == "env HARPERBQ_HARPER_URL"
    assert cfg.sync.workers == 1
    assert (cfg.sync.lease_s, cfg.sync.heartbeat_interval_s, cfg.sync.join_grace_s) == (
        15.0,
        5.0,
        6.0,
    )
    assert cfg.harper.replicated_confirmation == "auto"
    (table,) = cfg.tables
    assert table.partitions % 3 == 0 and table.snapshot_by == "one"
    readme = (EXAMPLES / "cluster-three-nodes" / "README.md").read_text()
    for node, port in (("node-a", 8181), ("node-b", 8182), ("node-c", 8183)):
        assert f"HARPERBQ_NODE_NAME={node} harperbq sync run" in readme
        assert f"--control-port {port}" in readme


def test_synthesizer_example_misbehaves_on_purpose_and_validates() -> None:
    cfg = _load("synthesizer-end-to-end")
    assert cfg.synthesizer.late_fraction > 0 and cfg.synthesizer.duplicate_fraction > 0
    assert cfg.validation.enabled and cfg.validation.interval_s == 60.0
    readme = (EXAMPLES / "synthesizer-end-to-end" / "README.md").read_text()
    assert "harperbq synth start" in readme and "harperbq sync run" in readme


def test_readme_links_the_examples() -> None:
    assert "(examples/)" in (REPO / "README.md").read_text()
