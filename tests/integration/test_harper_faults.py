"""Failures against a real Harper: credentials, outages, 503s, dropped connections, SIGKILL.

Destructive tests run on a node of their own (module scope), never on the shared session node.
Transport faults are injected by a small proxy in front of the real Harper (no mock of Harper).
"""

import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import FaultProxy

from harperbq.devstack import harper
from harperbq.devstack.harper import HarperNode
from harperbq.devstack.ports import free_port
from harperbq.harper.client import HarperClient
from harperbq.harper.errors import (
    AuthenticationError,
    HarperError,
    IncompleteWriteError,
    TLSError,
    Unavailable,
)
from harperbq.harper.models import Attribute, Condition
from harperbq.harper.transport import RequestEvent


def everything_said(exc: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    parts = [str(exc), repr(exc), *getattr(exc, "__notes__", []), caplog.text]
    parts += [repr(a) for a in exc.args] + [repr(vars(exc))]
    cause = exc.__cause__
    while cause is not None:
        parts += [str(cause), repr(cause)]
        cause = cause.__cause__
    return "\n".join(parts)


def test_wrong_password(harper_node: HarperNode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Wr0ng-but-s3cret-passw0rd"
    events: list[RequestEvent] = []
    client = HarperClient(harper_node.url, harper_node.username, secret, on_event=events.append)
    with client, pytest.raises(AuthenticationError) as info:
        client.describe_table("data", "anything")
    message = str(info.value)
    assert harper_node.username in message and harper_node.url in message
    assert info.value.status == 401 and info.value.harper_message == "Login failed"
    assert secret not in everything_said(info.value, caplog)
    assert len(events) == 1  # never retried


def test_password_never_logged_during_retries(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "An0ther-s3cret-passw0rd"
    url = f"http://127.0.0.1:{free_port()}"
    events: list[RequestEvent] = []
    with (
        HarperClient(
            url, "someone", secret, max_retries=3, backoff_base_s=0.01, on_event=events.append
        ) as c,
        pytest.raises(Unavailable) as info,
    ):
        c.search_by_id("db", "t", ["a"])
    assert [e.will_retry for e in events] == [True, True, True, False]
    assert "gave up after 4 attempts" in info.value.__notes__[0]
    assert url in str(info.value) and "retrying" in caplog.text
    assert secret not in everything_said(info.value, caplog)


def test_retry_rules_through_a_faulty_link(proxy: FaultProxy) -> None:
    db = f"fl_{uuid.uuid4().hex[:10]}"
    events: list[RequestEvent] = []
    with proxy.client(max_retries=3, on_event=events.append) as c:
        try:
            proxy.plan = ["503", "503"]  # DDL is retried on 503 (Harper refused, did nothing)
            c.create_table(db, "t", attributes=[Attribute("v", "Float")])
            assert proxy.seen == ["503", "503", "pass"]

            proxy.plan = ["503", "drop", "forward-drop"]  # upserts are idempotent: all retried
            result = c.upsert(db, "t", [{"id": "a", "v": 1.0}, {"id": "b", "v": 2.0}])
            assert result.distinct_ids == 2 and proxy.seen[-4:] == [
                "503",
                "drop",
                "forward-drop",
                "pass",
            ]

            # Harper answers 200 but does not confirm every id: never reported as success
            proxy.plan = ["pass", "lose-confirmation"]
            rows = [{"id": f"c{i}", "v": float(i)} for i in range(6)]
            with pytest.raises(IncompleteWriteError) as lost:
                c.upsert(db, "t", rows, chunk_rows=3)
            assert lost.value.missing_ids == ["c5"] and lost.value.confirmed_rows == 3
            assert "did not confirm 1 of 3 ids" in str(lost.value) and "c5" in str(lost.value)
            assert "3 rows in 1 chunks were confirmed" in lost.value.__notes__[0]

            proxy.plan = ["drop"]  # a lost answer to DDL is NOT retried: outcome unknown
            with pytest.raises(Unavailable, match="may or may not have been applied"):
                c.create_attribute(db, "t", "w")

            proxy.plan = ["503"] * 4  # retries exhausted: Unavailable with Harper's message
            with pytest.raises(Unavailable) as info:
                c.search_by_id(db, "t", ["a"])
            assert info.value.status == 503 and "too long of queue" in str(info.value)
            assert c.search_by_id(db, "t", ["a", "b"]) == [{"id": "a", "v": 1}, {"id": "b", "v": 2}]
            assert any(e.will_retry and e.status == 503 for e in events)
        finally:
            c.drop_database(db, missing_ok=True)


def test_an_unanswered_status_read_is_retried_after_seconds_not_the_full_timeout(
    proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Harper 4.7 now and then leaves one of two concurrent `cluster_status` requests
    unanswered: the status read gives up on it after `STATUS_TIMEOUT_S`, not `harper.timeout`."""
    monkeypatch.setattr("harperbq.harper.client.STATUS_TIMEOUT_S", 1.0)
    events: list[RequestEvent] = []
    with proxy.client(timeout_s=120, on_event=events.append) as c:
        proxy.plan = ["slow:30"]  # held far beyond the status timeout, then forwarded
        status = c.cluster_status()
        assert status.node_name
        first, second = events[0], events[1]
        assert first.will_retry and first.error == "timed out", first
        assert first.duration_s < 10 and second.status == 200 and not second.will_retry


# -- destructive: a node of our own ----------------------------------------------------------


@pytest.fixture(scope="module")
def own_node(
    tmp_path_factory: pytest.TempPathFactory, harper_install: Path
) -> Iterator[HarperNode]:
    node = harper.new_node(tmp_path_factory.mktemp("harper-faults"), name="faults")
    harper.start(node, harper_install)
    yield node
    harper.stop(node)


@pytest.fixture
def killable(own_node: HarperNode, harper_install: Path) -> HarperNode:
    """The module's own node, running, restartable right after a SIGKILL."""
    if not harper.is_ready(own_node):
        harper.start(own_node, harper_install)
    return own_node


def position_rows(n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}{i:06d}",
            "ts": f"2024-03-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:"
            f"{i % 60:02d}.{i % 1000:06d}Z",
            "lat": i % 90 + 0.5,
            "lon": i % 180 + 0.25,
            "name": f"VESSEL {i % 997}",
        }
        for i in range(n)
    ]


def stored_ids(client: HarperClient, db: str, table: str) -> set[str]:
    rows = client.search(db, table, [Condition("ts", "greater_than_equal", "")], attributes=["id"])
    return {r["id"] for r in rows}


def kill_when(
    node: HarperNode,
    reached: threading.Event,
    then_start: Path | None,
    log: list[str],
    progress: list[int],
) -> threading.Thread:
    """Once `reached` is set, SIGKILL the node (noting how many rows were confirmed by then),
    and start it again if `then_start` (the install dir) is given."""

    def run() -> None:
        reached.wait(60)
        harper.kill(node)
        log.append(f"killed at {progress[-1]}")
        if then_start is not None:
            harper.start(node, then_start)
            log.append("restarted")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_harper_killed_mid_upsert_and_restarted(killable: HarperNode, harper_install: Path) -> None:
    """SIGKILL while a chunked upsert is in flight, restart: the call completes, and then every
    id is really in Harper; rows confirmed before the kill survived it."""
    db = f"kill_{uuid.uuid4().hex[:8]}"
    rows = position_rows(40_000, "k")
    with HarperClient(
        killable.url,
        killable.username,
        killable.password,
        max_retries=200,
        backoff_base_s=0.05,
        backoff_cap_s=0.5,
        connect_timeout_s=2,
    ) as c:
        c.create_table(
            db,
            "pos",
            attributes=[
                Attribute("ts", "String", indexed=True),
                Attribute("lat", "Float"),
                Attribute("lon", "Float"),
                Attribute("name", "String"),
            ],
        )
        progress: list[int] = []
        reached = threading.Event()

        def on_chunk(confirmed: int) -> None:
            progress.append(confirmed)
            if confirmed >= 6_000:
                reached.set()

        log: list[str] = []
        killer = kill_when(killable, reached, harper_install, log, progress)
        try:
            outcome: Any = c.upsert(db, "pos", rows, chunk_rows=2_000, on_chunk=on_chunk)
        except HarperError as exc:  # allowed, never silent: then the confirmed part must be there
            outcome = exc
        killer.join()
        killed_at = int(log[0].split()[-1])
        assert log[1:] == ["restarted"] and killed_at < len(rows)  # killed mid-call
        stored = stored_ids(c, db, "pos")
        if isinstance(outcome, HarperError):
            assert {r["id"] for r in rows[: progress[-1]]} <= stored, outcome
        else:
            assert outcome.distinct_ids == len(rows) and progress[-1] == len(rows)
            assert stored == {r["id"] for r in rows}
        assert c.count_range(db, "pos", "ts", "2024", "2025") == len(stored)


def test_harper_killed_and_not_back_raises(killable: HarperNode, harper_install: Path) -> None:
    """With Harper gone for good the call raises Unavailable, saying how far it got."""
    db = f"gone_{uuid.uuid4().hex[:8]}"
    rows = position_rows(30_000, "g")
    with HarperClient(
        killable.url,
        killable.username,
        killable.password,
        max_retries=3,
        backoff_base_s=0.05,
        backoff_cap_s=0.2,
        connect_timeout_s=1,
    ) as c:
        c.create_table(db, "pos", attributes=[Attribute("ts", "String", indexed=True)])
        progress: list[int] = []
        reached = threading.Event()

        def on_chunk(confirmed: int) -> None:
            progress.append(confirmed)
            if confirmed >= 4_000:
                reached.set()

        log: list[str] = []
        killer = kill_when(killable, reached, None, log, progress)
        with pytest.raises(Unavailable) as info:
            c.upsert(db, "pos", rows, chunk_rows=2_000, on_chunk=on_chunk)
        killer.join()
        notes = "\n".join(info.value.__notes__)
        assert f"{progress[-1]} rows in {len(progress)} chunks were confirmed" in notes
        assert progress[-1] < len(rows)
        harper.start(killable, harper_install)
        assert {r["id"] for r in rows[: progress[-1]]} <= stored_ids(c, db, "pos")


# -- TLS: a node serving the Operations API over HTTPS with Harper's self-signed certificate ---


@pytest.fixture(scope="module")
def tls_node(
    tmp_path_factory: pytest.TempPathFactory, harper_install: Path
) -> Iterator[HarperNode]:
    node = harper.new_node(tmp_path_factory.mktemp("harper-tls"), name="tls", secure=True)
    harper.start(node, harper_install)
    yield node
    harper.stop(node)


def test_tls_verification(tls_node: HarperNode, tmp_path: Path) -> None:
    assert tls_node.url.startswith("https://")
    events: list[RequestEvent] = []
    with (
        HarperClient(
            tls_node.url, tls_node.username, tls_node.password, on_event=events.append
        ) as strict,
        pytest.raises(HarperError) as info,
    ):
        strict.ping()
    assert isinstance(info.value, TLSError)
    message = str(info.value)
    assert "certificate verification failed" in message and tls_node.url in message
    assert "self-signed" in message and "caFile" in message
    assert len(events) == 1  # a TLS failure is configuration: not retried

    # Harper's CA is not a file under <root>/keys (private keys only): Harper keeps certificates
    # in its system database and serves them by the list_certificates operation
    keys = [p for p in (tls_node.root / "keys").iterdir() if p.is_file()]
    assert not any("BEGIN CERTIFICATE" in p.read_text(errors="replace") for p in keys)
    with HarperClient(tls_node.url, tls_node.username, tls_node.password, verify=False) as loose:
        certificates = loose.operation({"operation": "list_certificates"}, idempotent=True)
    ca = next(c["certificate"] for c in certificates if c.get("is_authority"))
    ca_file = tmp_path / "harper-ca.pem"
    ca_file.write_text(ca)
    with HarperClient(
        tls_node.url, tls_node.username, tls_node.password, verify=str(ca_file)
    ) as verified:
        assert verified.ping() > 0
        assert verified.cluster_status().node_name == "tls"

    import certifi

    with (
        HarperClient(
            tls_node.url, tls_node.username, tls_node.password, verify=certifi.where()
        ) as wrong_ca,
        pytest.raises(TLSError),
    ):
        wrong_ca.ping()


def test_https_to_a_plain_http_port(harper_node: HarperNode) -> None:
    url = harper_node.url.replace("http://", "https://")
    with (
        HarperClient(url, harper_node.username, harper_node.password) as c,
        pytest.raises(TLSError, match="use an http:// URL"),
    ):
        c.ping()
