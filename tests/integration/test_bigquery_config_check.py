"""`harperbq config check` against the emulator: exit code, rich table and --json."""

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import bigquery
from typer.testing import CliRunner

from harperbq.bigquery.read import run_query
from harperbq.bigquery.retry import PolicyRetry
from harperbq.bigquery.sql import Query
from harperbq.cli.main import app
from harperbq.config import ENV_VARIABLES
from harperbq.devstack.emulator import Emulator
from harperbq.devstack.harper import HarperNode
from harperbq.devstack.ports import free_port
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import AuthenticationError, HarperError
from harperbq.retry import RetryPolicy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
POLICY = RetryPolicy(max_attempts=2, initial_delay_s=0.1, total_timeout_s=30)
# Hermetic: nothing from the caller's environment may change what the file says.
CLEAN_ENV: dict[str, str | None] = {
    name: None for _, override, generic in ENV_VARIABLES for name in (override, *generic)
}


@pytest.fixture(scope="module")
def dataset(bq: bigquery.Client) -> Iterator[str]:
    name = f"check_{uuid.uuid4().hex[:8]}"
    bq.create_dataset(name, retry=PolicyRetry(POLICY))
    sql = f"""
        CREATE TABLE `{bq.project}`.`{name}`.`positions` AS
        SELECT TIMESTAMP '2024-01-01 00:00:00+00' AS ts, 367001234 AS mmsi, 'x' AS label,
               1.5 AS speed
    """
    run_query(bq, Query(sql), policy=POLICY)
    yield name
    bq.delete_dataset(name, delete_contents=True, not_found_ok=True, retry=PolicyRetry(POLICY))


def write(
    tmp_path: Path,
    emulator_endpoint: str,
    project: str,
    tables: list[dict[str, Any]],
    harper: HarperNode | None = None,
    storage_endpoint: str | None = None,
) -> Path:
    path = tmp_path / "config.yaml"
    data: dict[str, Any] = {
        "bigquery": {"projectId": project, "endpoint": emulator_endpoint, "tables": tables}
    }
    if storage_endpoint is not None:
        data["bigquery"]["storageEndpoint"] = storage_endpoint
    if harper is not None:
        data["harper"] = {
            "url": harper.url,
            "username": harper.username,
            "password": harper.password,
        }
    path.write_text(yaml.safe_dump(data))
    return path


def check(path: Path, *flags: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["config", "check", "--config", str(path), *flags],
        env={**CLEAN_ENV, "COLUMNS": "200", **(env or {})},
    )
    return result.exit_code, result.output


def good(dataset: str) -> dict[str, Any]:
    return {
        "id": "positions",
        "dataset": dataset,
        "table": "positions",
        "timestampColumn": "ts",
        "columns": ["ts", "mmsi", "label"],
        "primaryKey": ["mmsi", "ts"],
        "targetTable": "VesselPositions",
    }


def test_a_good_config_passes(
    tmp_path: Path, bq_emulator: Emulator, dataset: str, harper_node: HarperNode
) -> None:
    path = write(
        tmp_path,
        bq_emulator.endpoint,
        bq_emulator.project,
        [good(dataset)],
        harper_node,
        storage_endpoint=bq_emulator.grpc_endpoint,
    )
    code, output = check(path, "--json")
    report = json.loads(output)
    assert code == 0, output
    assert report["ok"] is True and report["problems"] == []
    names = [c["check"] for c in report["checks"]]
    assert names == [
        "table exists",
        "layout",
        "change feed",
        "selected columns exist",
        "cursor column type",
        "window query accepted",
        "Storage Read session",
        "Harper reachable",
        "replicated confirmation",
        f"Harper user on {harper_node.url}",
    ]
    assert all(c["ok"] for c in report["checks"])
    detail = {c["check"]: c["detail"] for c in report["checks"]}
    # a lone node: auto decides 0, and says why
    assert detail["replicated confirmation"].startswith("0: auto: this node has no replicating")
    assert detail["layout"].startswith("not partitioned, not clustered")
    assert "bill the selected columns of the WHOLE table" in detail["layout"]
    assert detail["change feed"].startswith("appends: a regular table"), detail["change feed"]
    assert "168 h time-travel window" in detail["change feed"]
    assert "of commits" in detail["window query accepted"]
    assert "billed" in detail["window query accepted"] and "$" in detail["window query accepted"]
    assert "would be scanned" in detail["Storage Read session"]
    code, output = check(path)
    assert code == 0 and "config ok" in output and "VesselPositions" in output


def test_every_remote_problem_is_found(
    tmp_path: Path, bq_emulator: Emulator, dataset: str, harper_node: HarperNode
) -> None:
    tables = [
        good(dataset)
        | {"id": "missing_column", "columns": ["ts", "mmsi", "nope"], "targetTable": "A"},
        good(dataset) | {"id": "missing_table", "table": "absent", "targetTable": "B"},
        good(dataset)
        | {
            "id": "string_cursor",
            "timestampColumn": "label",
            "targetTable": "C",
            "primaryKey": ["mmsi"],
        },
        good(dataset)
        | {"id": "float_key", "columns": "*", "partitionKey": ["speed"], "targetTable": "D"},
    ]
    path = write(
        tmp_path,
        bq_emulator.endpoint,
        bq_emulator.project,
        tables,
        harper_node,
        storage_endpoint=bq_emulator.grpc_endpoint,
    )
    code, output = check(path, "--json")
    assert code == 1
    failed = {
        (c["table"], c["check"]): c["detail"] for c in json.loads(output)["checks"] if not c["ok"]
    }
    assert failed[("missing_column", "selected columns exist")] == "missing: nope"
    assert "absent not found" in failed[("missing_table", "table exists")]
    assert "label is STRING" in failed[("string_cursor", "cursor column type")]
    assert "speed (FLOAT64)" in failed[("float_key", "partition key types")]
    code, output = check(path)
    assert code == 1 and "FAIL" in output and "4 check(s) failed" in output


def test_config_problems_are_listed_and_fail(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "bigquery:\n  tables:\n    - {id: a, dataset: d, table: t, timestampColum: ts}\n"
        "sync: {steadyThreshold: 9000}\n"
    )
    code, output = check(path, "--json")
    report = json.loads(output)
    assert code == 1 and report["ok"] is False
    paths = {p["path"]: p for p in report["problems"]}
    assert paths["bigquery.tables[0].timestampColum"]["fix"] == "did you mean `timestampColumn`?"
    assert "sync.steadyThreshold" in paths
    code, output = check(path)
    assert code == 1 and "did you mean" in output


def test_offline_does_not_contact_bigquery(tmp_path: Path, dataset: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    path = write(tmp_path, closed, "offline-project", [good(dataset)])
    code, output = check(path, "--offline", "--json")
    assert code == 0 and json.loads(output)["checks"] == []
    code, output = check(path, "--json")
    report = json.loads(output)
    assert code == 1
    assert report["checks"][0]["check"] == "table exists" and not report["checks"][0]["ok"]


@pytest.mark.parametrize("name", ["original-multi-table.yaml", "original-single-table.yaml"])
def test_the_original_config_files_pass_offline(name: str) -> None:
    code, output = check(FIXTURES / name, "--offline", "--json", env={"HARPER_PASSWORD": "pw"})
    report = json.loads(output)
    assert code == 0, output
    assert report["tables"] in (["vessel_positions", "port_events", "vessel_metadata"], ["default"])


def test_an_unreachable_harper_fails_the_check(
    tmp_path: Path, bq_emulator: Emulator, dataset: str
) -> None:
    path = write(tmp_path, bq_emulator.endpoint, bq_emulator.project, [good(dataset)])
    text = path.read_text() + (
        f"harper: {{url: 'http://127.0.0.1:{free_port()}', username: u, password: secret-pw}}\n"
    )
    path.write_text(text)
    code, output = check(path, "--json")
    failed = [c for c in json.loads(output)["checks"] if not c["ok"]]
    assert code == 1 and [c["check"] for c in failed] == ["Harper reachable"]
    assert "secret-pw" not in output


def _logs_in(node: HarperNode, user: str, password: str) -> bool:
    with HarperClient(node.url, user, password, max_retries=0) as client:
        try:
            client.operation({"operation": "user_info"})
        except AuthenticationError:
            return False
    return True


def _op(node: HarperNode, body: dict[str, Any]) -> None:
    with HarperClient(node.url, node.username, node.password) as client:
        client.operation(body)


def test_the_user_is_checked_on_every_node_of_the_cluster(
    tmp_path: Path,
    bq_emulator: Emulator,
    dataset: str,
    harper_cluster: list[HarperNode],
    harper_node: HarperNode,
) -> None:
    """Three cluster nodes OK; a node outside it (no replication of users there) without the
    user, then with the user lacking the permission, is named with the fix."""
    user, password = f"i14chk_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    lone, role = harper_node, f"i14chk_role_{uuid.uuid4().hex[:8]}"
    path = write(tmp_path, bq_emulator.endpoint, bq_emulator.project, [good(dataset)])
    peers = [n.url for n in harper_cluster[1:]] + [lone.url]
    harper = {"url": harper_cluster[0].url, "username": user, "password": password}
    path.write_text(path.read_text() + yaml.safe_dump({"harper": {**harper, "peers": peers}}))
    add = {"operation": "add_user", "username": user, "password": password, "active": True}
    _op(harper_cluster[0], {**add, "role": "super_user"})
    try:
        # Harper 4.7 replicates add_user (seen within 0.1 s on loopback), unlike its docs say.
        deadline = time.monotonic() + 10
        for node in harper_cluster[1:]:
            while not _logs_in(node, user, password):
                assert time.monotonic() < deadline, f"{user} never reached {node.url}"
                time.sleep(0.1)

        def user_checks() -> dict[str, dict[str, Any]]:
            _, output = check(path, "--json")
            assert password not in output
            checks = json.loads(output)["checks"]
            return {c["check"]: c for c in checks if c["check"].startswith("Harper user on")}

        users = user_checks()
        assert list(users) == [f"Harper user on {url}" for url in [harper["url"], *peers]]
        assert [users[f"Harper user on {n.url}"]["ok"] for n in harper_cluster] == [True] * 3
        lone_check = users[f"Harper user on {lone.url}"]
        assert not lone_check["ok"] and lone_check["detail"].startswith("missing user")
        assert '"operation": "add_user"' in lone_check["detail"]
        _op(lone, {"operation": "add_role", "role": role, "permission": {"super_user": False}})
        _op(lone, {**add, "role": role})
        lone_check = user_checks()[f"Harper user on {lone.url}"]
        assert not lone_check["ok"], lone_check
        assert lone_check["detail"].startswith("missing permission"), lone_check
        assert f'"operation": "alter_user", "username": "{user}"' in lone_check["detail"]
        code, _ = check(path, "--json")
        assert code == 1
    finally:
        for node, body in (
            (harper_cluster[0], {"operation": "drop_user", "username": user}),
            (lone, {"operation": "drop_user", "username": user}),
            (lone, {"operation": "drop_role", "id": role}),
        ):
            with contextlib.suppress(HarperError):  # not created (failed before): nothing to drop
                _op(node, body)
