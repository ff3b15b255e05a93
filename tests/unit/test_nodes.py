"""Which Harper nodes the sync knows of (harper.url, harper.peers, heartbeats), and their config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harperbq.config import ConfigError, HarperConfig, parse_config
from harperbq.harper.errors import PeerSchemaError
from harperbq.sync.cluster.nodes import heartbeat_info, heartbeat_urls, known_urls
from harperbq.sync.state import WorkerRecord
from harperbq.times import iso_datetime

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def harper(peers: tuple[str, ...] = ()) -> HarperConfig:
    return HarperConfig.model_validate(
        {"url": "https://a:9925", "username": "sync", "password": "pw", "peers": peers}
    )


def record(worker: str, age_s: float, info: dict[str, Any]) -> WorkerRecord:
    seen = iso_datetime(NOW - timedelta(seconds=age_s))
    return WorkerRecord(worker, worker.split("-")[0], seen, seen, 1, info)


def test_known_urls_put_this_node_first_then_peers_then_published_each_once() -> None:
    cfg = harper(("https://b:9925/", "https://a:9925"))
    urls = known_urls(cfg, ["https://c:9925", "https://b:9925", "https://a:9925/"])
    assert urls == ["https://a:9925", "https://b:9925", "https://c:9925"]


def test_only_live_workers_publish_and_old_heartbeats_without_the_field_are_skipped() -> None:
    live = ["n1-0", "n2-0", "n4-0", "n5-0"]  # as the caller's leases judged: n3-0 is dead
    records = [
        record("n1-0", 1, {"harper": heartbeat_info(harper())}),
        record("n2-0", 5, {"harper": {"url": "https://b:9925"}}),
        record("n3-0", 300, {"harper": {"url": "https://dead:9925"}}),  # lease expired
        record("n4-0", 1, {"tables": {}}),  # a worker from before the field existed
        record("n5-0", 1, {"harper": "https://malformed"}),
    ]
    assert heartbeat_urls(records, live) == ["https://a:9925", "https://b:9925"]


def base(**harper_block: Any) -> dict[str, Any]:
    return {
        "harper": {"url": "https://a:9925", "username": "sync", **harper_block},
        "bigquery": {
            "projectId": "p",
            "tables": [
                {
                    "id": "t",
                    "dataset": "d",
                    "table": "t",
                    "timestampColumn": "ts",
                    "columns": ["ts"],
                }
            ],
        },
    }


def test_peers_are_parsed_and_deduplicated() -> None:
    cfg = parse_config(
        base(peers=["https://b:9925/", "https://b:9925", "http://c:9925"]),
        environ={"HARPERBQ_HARPER_PASSWORD": "pw"},
        read_files=False,
    )
    assert cfg.harper.peers == ("https://b:9925", "http://c:9925")
    assert parse_config(base(), environ={}, read_files=False).harper.peers == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [("b:9925", "not an http(s) URL"), ("https://u:secret@b:9925", "user name or password")],
)
def test_bad_peers_name_key_value_and_fix(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(base(peers=["https://ok:9925", value]), environ={}, read_files=False)
    [problem] = caught.value.problems
    assert problem.path == "harper.peers[1]" and message in problem.message
    assert problem.fix
    assert "secret" not in str(caught.value)


def test_peer_schema_error_names_each_node_and_the_exact_request() -> None:
    request = {"operation": "drop_attribute", "database": "d", "table": "t", "attribute": "x"}
    error = PeerSchemaError([("https://b:9925", "Unavailable: refused")], [request])
    assert error.permanent
    assert "https://b:9925: Unavailable: refused" in str(error)
    assert '{"operation": "drop_attribute", "database": "d", "table": "t", "attribute": "x"}' in (
        str(error)
    )
