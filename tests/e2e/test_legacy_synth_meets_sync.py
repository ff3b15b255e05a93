"""A migrating user's legacy single-table file (`bigquery.dataset`/`bigquery.table`, no
`synthesizer` block): the synthesizer writes the very table the sync reads, as in the JS
plugin, so `synth initialize` followed by `sync run --once` brings the rows into Harper."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from google.cloud import bigquery
from tests.support import harper_rows
from typer.testing import CliRunner

from harperbq.cli.main import app
from harperbq.config import load_config, parse_config
from harperbq.devstack.emulator import Emulator
from harperbq.devstack.harper import HarperNode
from harperbq.harper.client import HarperClient


def legacy_config(node: HarperNode, emu: Emulator, unique: str, **bigquery: Any) -> dict[str, Any]:
    return {
        "operations": {
            "host": node.host,
            "port": node.ops_port,
            "username": node.username,
            "password": "${TEST_HARPER_PASSWORD}",
        },
        "harper": {"database": f"legacy_{unique}", "stateDatabase": f"legacystate_{unique}"},
        "bigquery": {
            "projectId": emu.project,
            "endpoint": emu.endpoint,
            "storageEndpoint": emu.grpc_endpoint,
            "dataset": f"fleet_ops_{unique}",
            "table": "ais_positions",
            "timestampColumn": "timestamp",
            "columns": ["timestamp", "mmsi", "vessel_name", "latitude", "longitude"],
            **bigquery,
        },
        "sync": {"settle": "0s"},
    }


def test_synth_and_sync_meet_on_the_legacy_table(
    harper_node: HarperNode,
    bq_emulator: Emulator,
    bq: bigquery.Client,
    tmp_path: Path,
    unique: str,
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(legacy_config(harper_node, bq_emulator, unique)))
    env = {"TEST_HARPER_PASSWORD": harper_node.password}
    cfg = load_config(path, env)
    assert cfg.synthesizer.dataset == f"fleet_ops_{unique}"
    assert cfg.synthesizer.tables.vessel_positions == "ais_positions"

    os.environ["TEST_HARPER_PASSWORD"] = harper_node.password
    try:
        synth = CliRunner().invoke(
            app, ["synth", "initialize", "small", "--vessels", "6", "-c", str(path)]
        )
    finally:
        del os.environ["TEST_HARPER_PASSWORD"]
    assert synth.exit_code == 0, synth.output
    source = f"{bq.project}.fleet_ops_{unique}.ais_positions"
    [row] = bq.query(f"SELECT COUNT(*) AS n FROM `{source}`").result()  # noqa: S608
    assert row["n"] > 0

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harperbq",
            "sync",
            "run",
            "--once",
            "--no-control",
            "-c",
            str(path),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with HarperClient(harper_node.url, harper_node.username, harper_node.password) as harper:
        records = harper_rows(harper, f"legacy_{unique}", "ais_positions")
    assert len(records) == row["n"]
    assert {r["mmsi"] for r in records.values()} and all(r["timestamp"] for r in records.values())


def test_an_explicit_synthesizer_block_still_wins(
    harper_node: HarperNode, bq_emulator: Emulator, unique: str
) -> None:
    data = legacy_config(harper_node, bq_emulator, unique)
    data["synthesizer"] = {"dataset": "elsewhere", "tables": {"vesselPositions": "pos"}}
    cfg = parse_config(data, environ={"TEST_HARPER_PASSWORD": "x"}, read_files=False)
    assert (cfg.synthesizer.dataset, cfg.synthesizer.tables.vessel_positions) == (
        "elsewhere",
        "pos",
    )
    data["synthesizer"] = {"table": "pos2", "totalVessels": 5}
    cfg = parse_config(data, environ={"TEST_HARPER_PASSWORD": "x"}, read_files=False)
    assert cfg.synthesizer.dataset == f"fleet_ops_{unique}"  # only the table was given
    assert cfg.synthesizer.tables.vessel_positions == "pos2"
    # The multi-table form keeps the synthesizer's own defaults.
    data["bigquery"] = {"projectId": "p", "tables": []}
    data.pop("synthesizer")
    cfg = parse_config(data, environ={"TEST_HARPER_PASSWORD": "x"}, read_files=False)
    assert (cfg.synthesizer.dataset, cfg.synthesizer.tables.vessel_positions) == (
        "maritime_tracking",
        "vessel_positions",
    )
