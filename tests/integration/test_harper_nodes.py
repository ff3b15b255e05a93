"""Schema changes Harper does not replicate, applied on every known node of a real cluster."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from harperbq.config import HarperConfig
from harperbq.devstack.harper import HarperNode
from harperbq.devstack.ports import free_port
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import AlreadyExistsError, NotFound, PeerSchemaError
from harperbq.harper.models import Attribute
from harperbq.harper.schema import ensure_table
from harperbq.sync.cluster.nodes import KnownNodes

DB = "nodes_i14"  # used by no other test


def poll(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def config(nodes: list[HarperNode], peers: tuple[str, ...]) -> HarperConfig:
    return HarperConfig.model_validate(
        {
            "url": nodes[0].url,
            "username": nodes[0].username,
            "password": nodes[0].password,
            "peers": peers,
        }
    )


@pytest.fixture(scope="module")
def clients(harper_cluster: list[HarperNode]) -> Iterator[list[HarperClient]]:
    out = [HarperClient(n.url, n.username, n.password) for n in harper_cluster]
    with contextlib.suppress(AlreadyExistsError):  # a rerun on the same cluster
        out[0].create_database(DB)
    yield out
    for c in out:
        c.close()


def typed_table(clients: list[HarperClient]) -> str:
    """A fresh table with a typed attribute `x`, visible on every node."""
    table = f"t_{uuid.uuid4().hex[:8]}"
    attrs = [Attribute("id", "String", is_primary_key=True), Attribute("x", "Float")]
    ensure_table(clients[0], DB, table, attrs)

    def everywhere() -> bool:
        try:
            return all(c.describe_table(DB, table).attribute("x") is not None for c in clients)
        except NotFound:
            return False

    poll(everywhere, 30, f"{table} on every node")
    return table


def x_type(client: HarperClient, table: str) -> str | None:
    have = client.describe_table(DB, table).attribute("x")
    return None if have is None or have.untyped else have.type


def test_evolve_drops_the_typed_attribute_on_every_node(
    harper_cluster: list[HarperNode], clients: list[HarperClient]
) -> None:
    table = typed_table(clients)
    # Two sources of peers: one configured, one as a worker's heartbeat would publish it.
    known = KnownNodes(
        config(harper_cluster, (harper_cluster[1].url,)),
        clients[0],
        lambda: [harper_cluster[2].url],
    )
    assert known.urls() == [n.url for n in harper_cluster]
    evolved = [Attribute("id", "String", is_primary_key=True), Attribute("x", "String")]
    report = ensure_table(
        clients[0],
        DB,
        table,
        evolved,
        on_schema_change="evolve",
        untype=known.untype_attribute,
    )
    assert report.evolved == ("x",)
    poll(
        lambda: all(x_type(c, table) is None for c in clients),
        30,
        "x untyped on every node",
    )
    for c in clients:
        assert c.describe_table(DB, table).attribute("x") is not None, c.url  # re-added
    known.untype_attribute(DB, table, "x", False)  # done everywhere already: fine
    for c in clients:
        c.drop_attribute(DB, table, "x")
        c.drop_attribute(DB, table, "x")  # Harper 4.7 answers 200 for a gone attribute, too


def test_a_node_that_refuses_is_named_with_the_request_to_run(
    harper_cluster: list[HarperNode], clients: list[HarperClient]
) -> None:
    table = typed_table(clients)
    dead = f"http://127.0.0.1:{free_port()}"
    known = KnownNodes(config(harper_cluster, (dead, harper_cluster[1].url)), clients[0])
    evolved = [Attribute("id", "String", is_primary_key=True), Attribute("x", "String")]
    with pytest.raises(PeerSchemaError) as caught:
        ensure_table(
            clients[0],
            DB,
            table,
            evolved,
            on_schema_change="evolve",
            untype=known.untype_attribute,
        )
    message = str(caught.value)
    assert dead in message and harper_cluster[1].url not in message
    assert f'{{"operation": "drop_attribute", "database": "{DB}", "table": "{table}"' in message
    assert '"operation": "create_attribute"' in message
    assert [url for url, _ in caught.value.failures] == [dead]
    # This node and the reachable peer are done: the attribute was re-added untyped there.
    for c in clients[:2]:
        assert x_type(c, table) is None
        assert c.describe_table(DB, table).attribute("x") is not None, c.url
    # The node not known stays typed: drop_attribute does not replicate in Harper 4.7.
    assert x_type(clients[2], table) == "Float"
    # The refused node stays pending: retried (and still refused) before the next evolve step.
    with pytest.raises(PeerSchemaError) as again:
        known.retry_pending(DB, table)
    assert [url for url, _ in again.value.failures] == [dead]
    known.retry_pending(DB, "another_table")  # other tables are not held up
