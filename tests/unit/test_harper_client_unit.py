"""Pure logic of the Harper client: response parsing, id checks, backoff, URL and TLS settings."""

import ssl
import subprocess
from pathlib import Path

import pytest

from harperbq.harper.client import _chunks, _merge_by_id, _rows, unconfirmed_ids
from harperbq.harper.models import Attribute, ClusterStatus, Condition, TableInfo
from harperbq.harper.transport import Transport, check_url, ssl_context

# The shape Harper 4.7.29 answers `cluster_status` with on a two-node cluster (recorded).
CLUSTER_STATUS = {
    "type": "cluster-status",
    "connections": [
        {
            "url": "ws://127.0.0.2:55773",
            "name": "127.0.0.2",
            "replicates": True,
            "database_sockets": [
                {
                    "database": "system",
                    "connected": True,
                    "latency": 0.59,
                    "backPressurePercent": 0,
                },
                {"database": "data", "connected": False, "latency": None},
            ],
        },
        {"url": "ws://127.0.0.3:1", "name": "127.0.0.3", "database_sockets": []},
    ],
    "node_name": "127.0.0.1",
    "url": "ws://127.0.0.1:56405",
    "is_enabled": True,
}


def test_cluster_status_parses_topology() -> None:
    status = ClusterStatus.from_harper(CLUSTER_STATUS)
    assert status.node_name == "127.0.0.1"
    assert status.size == 3
    first, second = status.peers
    assert (first.name, first.url, first.connected) == ("127.0.0.2", "ws://127.0.0.2:55773", True)
    assert [link.database for link in first.databases] == ["system", "data"]
    assert first.databases[0].latency_ms == pytest.approx(0.59)
    assert second.connected is False
    assert status.connected_peers == (first,)


def test_lone_node_has_no_peers() -> None:
    status = ClusterStatus.from_harper({"connections": [], "node_name": "n", "is_enabled": True})
    assert status.size == 1 and status.peers == ()


def test_table_info_from_describe_table() -> None:
    info = TableInfo.from_harper(
        {
            "schema": "db",
            "name": "t",
            "hash_attribute": "id",
            "schema_defined": True,
            "record_count": 12,
            "attributes": [
                {"attribute": "id", "type": "String", "is_primary_key": True},
                {"attribute": "ts", "type": "String", "indexed": True},
                {"attribute": "n"},
            ],
        }
    )
    assert info.primary_key == "id" and info.schema_defined
    assert info.indexed == {"id", "ts"}
    assert info.attribute("n") == Attribute("n", None, False)
    assert info.attribute("n") is not None and info.attribute("n").untyped  # type: ignore[union-attr]
    assert info.record_count_estimate == 12


def test_every_id_must_be_confirmed() -> None:
    records = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    assert unconfirmed_ids(records, {"upserted_hashes": ["a", "b", "c"]}) == []
    assert unconfirmed_ids(records, {"upserted_hashes": ["c", "a"]}) == ["b"]
    assert unconfirmed_ids(records, {"upserted_hashes": [None, "a"]}) == ["b", "c"]
    assert unconfirmed_ids(records, {"message": "upserted 3 of 3 records"}) == ["a", "b", "c"]
    assert unconfirmed_ids(records, None) == ["a", "b", "c"]


def test_duplicate_ids_in_a_chunk_are_merged_like_harper_merges() -> None:
    merged = _merge_by_id([{"id": "a", "x": 1, "y": 1}, {"id": "b"}, {"id": "a", "y": 2}], offset=0)
    assert merged == [{"id": "a", "x": 1, "y": 2}, {"id": "b"}]


@pytest.mark.parametrize("bad", [{"x": 1}, {"id": ""}, {"id": 5}, {"id": None}])
def test_records_without_string_id_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="record #7"):
        _merge_by_id([{"id": "ok"}, bad], offset=6)


def test_chunks_cover_everything_in_order() -> None:
    assert [len(c) for c in _chunks(range(10), 4)] == [4, 4, 2]
    assert [x for c in _chunks(iter(range(10)), 3) for x in c] == list(range(10))
    assert list(_chunks([], 5)) == []


def test_ghost_rows_are_dropped() -> None:
    rows = _rows([{"id": None}, {"id": "a", "v": None}, {"id": None, "v": None}, "junk", {"c": 0}])
    assert rows == [{"id": "a", "v": None}, {"c": 0}]
    assert _rows({"message": "x"}) == []


def test_condition_rejects_unknown_comparator() -> None:
    with pytest.raises(ValueError, match="unknown comparator"):
        Condition("a", "like", "x")


def test_backoff_is_full_jitter_and_capped() -> None:
    transport = Transport("http://127.0.0.1:9", "u", "p", backoff_base_s=0.5, backoff_cap_s=3.0)
    try:
        for attempt in range(8):
            samples = [transport.backoff_s(attempt) for _ in range(300)]
            ceiling = min(3.0, 0.5 * 2**attempt)
            assert all(0.0 <= s <= ceiling for s in samples)
            assert min(samples) < ceiling * 0.2 and max(samples) > ceiling * 0.8  # full range
    finally:
        transport.close()


def test_url_with_credentials_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as info:
        check_url("https://admin:hunter2secret@harper.example:9925")
    assert "hunter2secret" not in str(info.value)
    with pytest.raises(ValueError, match="http"):
        check_url("ftp://harper.example")


def test_repr_never_shows_the_password() -> None:
    transport = Transport("http://127.0.0.1:9", "someone", "s3cr3t-pass")
    try:
        assert "s3cr3t-pass" not in repr(transport) and "someone" in repr(transport)
    finally:
        transport.close()


def test_tls_settings_check_files() -> None:
    with pytest.raises(ValueError, match="CA file"):
        ssl_context("/nonexistent/ca.pem")
    with pytest.raises(ValueError, match="client certificate"):
        ssl_context(True, ("/nonexistent/cert.pem", "/nonexistent/key.pem"))
    assert ssl_context(False).check_hostname is False


def test_client_certificate_is_loaded_for_mutual_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=harperbq_admin", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert ssl_context(True, (str(cert), str(key))) is not None
    with pytest.raises(ssl.SSLError):
        ssl_context(True, (str(cert), str(cert)))  # a certificate is not a key
