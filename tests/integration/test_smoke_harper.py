"""Smoke: a real Harper answers, and a row goes in and comes back out."""

import time

import httpx

from harperbq.devstack.harper import HarperNode


def op(node: HarperNode, body: dict[str, object]) -> httpx.Response:
    return httpx.post(node.url, json=body, auth=(node.username, node.password), timeout=30)


def test_harper_round_trip(harper_node: HarperNode) -> None:
    assert op(harper_node, {"operation": "create_database", "database": "smoke"}).status_code == 200
    created = op(
        harper_node,
        {"operation": "create_table", "database": "smoke", "table": "t", "primary_key": "id"},
    )
    assert created.status_code == 200, created.text
    rows = [{"id": f"r{i}", "n": i, "label": f"row {i}"} for i in range(50)]
    upserted = op(
        harper_node, {"operation": "upsert", "database": "smoke", "table": "t", "records": rows}
    ).json()
    assert sorted(upserted["upserted_hashes"]) == sorted(str(r["id"]) for r in rows)
    found = op(
        harper_node,
        {
            "operation": "search_by_id",
            "database": "smoke",
            "table": "t",
            "ids": ["r7"],
            "get_attributes": ["*"],
        },
    ).json()
    assert found[0]["n"] == 7 and found[0]["label"] == "row 7"
    count = op(harper_node, {"operation": "sql", "sql": "SELECT COUNT(*) AS c FROM smoke.t"}).json()
    assert count[0]["c"] == 50


def test_wrong_password_is_refused(harper_node: HarperNode) -> None:
    response = httpx.post(
        harper_node.url,
        json={"operation": "describe_all"},
        auth=(harper_node.username, "wrong"),
        timeout=10,
    )
    assert response.status_code == 401


def test_replication_between_nodes(harper_cluster: list[HarperNode]) -> None:
    first, second, third = harper_cluster
    assert op(first, {"operation": "create_database", "database": "repl"}).status_code == 200
    op(first, {"operation": "create_table", "database": "repl", "table": "t", "primary_key": "id"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        written = op(
            second,
            {
                "operation": "upsert",
                "database": "repl",
                "table": "t",
                "records": [{"id": "x", "v": 42}],
            },
        )
        if written.status_code == 200:
            break
        time.sleep(0.5)  # the table itself replicates to the second node first
    assert written.status_code == 200, written.text
    seen = None
    while time.monotonic() < deadline:
        response = op(
            third,
            {
                "operation": "search_by_id",
                "database": "repl",
                "table": "t",
                "ids": ["x"],
                "get_attributes": ["*"],
            },
        )
        if response.status_code == 200 and response.json():
            seen = response.json()[0]
            break
        time.sleep(0.25)
    assert seen is not None and seen["v"] == 42
