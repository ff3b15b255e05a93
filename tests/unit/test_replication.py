"""The confirmation count for data writes: the pure decision, the holder, and its config keys."""

from typing import Any

import pytest

from harperbq.config import Config, ConfigError, parse_config
from harperbq.harper.errors import AuthenticationError, ValidationError
from harperbq.harper.models import ClusterStatus
from harperbq.harper.replication import (
    KEY,
    Confirmations,
    ReplicationConfigError,
    classify,
    decide,
)


def status(*peers: dict[str, Any]) -> ClusterStatus:
    return ClusterStatus.from_harper({"node_name": "a", "connections": list(peers)})


def peer(name: str, connected: bool = True, replicates: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "url": f"ws://{name}:9933",
        "replicates": replicates,
        "database_sockets": [{"database": "data", "connected": connected}],
    }


def test_auto_is_one_with_a_replicating_peer_even_when_it_is_down() -> None:
    assert decide("auto", status(peer("b"), peer("c", connected=False))).count == 1
    down = decide("auto", status(peer("b", connected=False)))
    assert down.count == 1 and "0 connected" in down.reason


def test_auto_is_zero_alone_or_with_only_non_replicating_peers() -> None:
    assert decide("auto", status()).count == 0
    assert decide("auto", status(peer("b", replicates=False))).count == 0


def test_auto_without_cluster_status_is_zero_and_says_how_to_fix_it() -> None:
    decision = decide("auto", None, refused="not authorized")
    assert decision.count == 0
    assert "super_user" in decision.reason and KEY in decision.reason
    assert "not authorized" in decision.reason


def test_a_number_is_used_as_given() -> None:
    assert decide(2, status()).count == 2
    assert decide(0, status(peer("b"))).count == 0


def test_the_holder_refreshes_after_its_interval_and_at_once_after_a_refusal() -> None:
    answers = [status(peer("b")), status(), status(peer("b"))]
    calls: list[int] = []
    now = [0.0]

    def cluster_status() -> ClusterStatus:
        calls.append(1)
        return answers[len(calls) - 1]

    seen: list[int] = []
    holder = Confirmations(
        cluster_status, clock=lambda: now[0], on_decision=lambda d: seen.append(d.count)
    )
    assert holder.count() == 1 and holder.count() == 1 and len(calls) == 1
    assert holder.refused().count == 0 and len(calls) == 2
    now[0] = 29.0
    assert holder.count() == 0 and len(calls) == 2
    now[0] = 31.0
    assert holder.count() == 1 and len(calls) == 3
    assert seen == [1, 0, 1]


def test_the_holder_falls_back_to_zero_when_cluster_status_is_refused() -> None:
    def refused() -> ClusterStatus:
        raise AuthenticationError("403", harper_message="not authorized to cluster_status")

    decision = Confirmations(refused).decision()
    assert decision.count == 0 and "super_user" in decision.reason


def test_the_holder_keeps_its_decision_through_a_passing_failure() -> None:
    calls: list[int] = []

    def flaky() -> ClusterStatus:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("connection reset")
        return status(peer("b"))

    now = [0.0]
    holder = Confirmations(flaky, clock=lambda: now[0])
    assert holder.count() == 1
    now[0] = 60.0
    assert holder.count() == 1 and len(calls) == 2


def test_harpers_refusal_becomes_a_permanent_config_error_naming_the_key() -> None:
    refusal = ValidationError(
        "rejected",
        harper_message="Cannot confirm replication to more nodes (3) than are in the network (2)",
        status=400,
        operation="upsert",
        url="http://h:9925",
    )
    error = classify(refusal, 3)
    assert isinstance(error, ReplicationConfigError) and error.permanent
    assert KEY in str(error) and "(3)" in str(error)
    other = ValidationError("bad", harper_message="type mismatch", status=400)
    assert classify(other, 1) is other


def parse(harper: dict[str, Any]) -> Config:
    data = {
        "harper": harper,
        "bigquery": {
            "projectId": "p",
            "tables": [{"id": "t", "dataset": "d", "table": "t", "timestampColumn": "ts"}],
        },
    }
    return parse_config(data, environ={}, read_files=False)


def test_config_defaults_and_accepted_values() -> None:
    cfg = parse({})
    assert cfg.harper.replicated_confirmation == "auto"
    assert cfg.harper.replication_timeout_s == 60.0
    for value, expected in (("auto", "auto"), ("AUTO", "auto"), (0, 0), (2, 2), ("1", 1)):
        assert parse({"replicatedConfirmation": value}).harper.replicated_confirmation == expected
    assert parse({"replicationTimeout": "3s"}).harper.replication_timeout_s == 3.0


@pytest.mark.parametrize("value", [-1, 1.5, "x", True, 101])
def test_a_bad_confirmation_names_key_value_and_fix(value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse({"replicatedConfirmation": value})
    text = str(caught.value)
    assert KEY in text and repr(value) in text and '"auto"' in text


@pytest.mark.parametrize("value", [0, "0.5s", "2h"])
def test_a_bad_replication_timeout_names_key_value_and_fix(value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse({"replicationTimeout": value})
    text = str(caught.value)
    assert "harper.replicationTimeout" in text and "60s" in text
