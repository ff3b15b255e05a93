"""Checkpoint/audit/worker records: validation and round trips (pure)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from harperbq.sync.state import MAX_DETAILS_CHARS, Checkpoint, WorkerRecord, _bounded
from harperbq.times import iso_datetime, parse_iso, parse_iso_datetime, utc_now_iso


def test_checkpoint_round_trip() -> None:
    cp = Checkpoint(
        table_id="vessel_positions",
        partition=3,
        hi=parse_iso("2024-01-01T00:00:10.000000Z"),
        rows_total=1234,
        window_s=12.5,
        phase="catchup",
        batch_size=1000,
        worker_id="node-a-0",
        updated_at="2024-01-01T00:00:11.000001Z",
        last_error=None,
        recent=[
            {
                "lo": parse_iso("2024-01-01T00:00:00.000000Z"),
                "hi": parse_iso("2024-01-01T00:00:10.000000Z"),
                "count": 7,
            }
        ],
        generation=2,
    )
    assert cp.id == "vessel_positions/3/node-a-0"  # the writer's own record
    assert replace(cp, worker_id="").id == "vessel_positions/3"  # the legacy shared record
    record = cp.to_record()
    # µs in memory, the same ISO text in Harper as before bounds became integers.
    assert record["hi"] == "2024-01-01T00:00:10.000000Z"
    assert record["recent"] == [
        {"lo": "2024-01-01T00:00:00.000000Z", "hi": "2024-01-01T00:00:10.000000Z", "count": 7}
    ]
    assert Checkpoint.from_record(record) == cp


def test_the_epoch_is_a_checkpoint_like_any_other() -> None:
    """`hi` 0 (1970-01-01) is synced, not "no checkpoint": nothing tests it for truth."""
    from harperbq.sync.table.checkpoint_merge import merge_partition

    epoch = Checkpoint("t", 0, hi=0, worker_id="a")
    assert Checkpoint.from_record(epoch.to_record()).hi == 0
    assert merge_partition([epoch, Checkpoint("t", 0, worker_id="b")]).worker_id == "a"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hi": "2024-01-01T00:00:10.000000Z"},  # text: bounds are µs in memory
        {"hi": 1.5},
        {"partition": -1},
        {"rows_total": -5},
        {"recent": [{"lo": "a", "hi": "b"}]},
        {"table_id": "a/b"},
        {"generation": -1},
        {"worker_id": "a/b"},
    ],
)
def test_checkpoint_validation(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"table_id": "t", "partition": 0}
    with pytest.raises((ValueError, TypeError)):
        Checkpoint(**{**base, **kwargs})  # type: ignore[arg-type]


def test_timestamps_are_iso_utc_micro_z() -> None:
    now = utc_now_iso()
    assert parse_iso_datetime(now).tzinfo is UTC
    assert iso_datetime(datetime(2024, 1, 1, 1, 0, tzinfo=UTC) + timedelta(microseconds=5)) == (
        "2024-01-01T01:00:00.000005Z"
    )
    with pytest.raises(ValueError):
        iso_datetime(datetime(2024, 1, 1))  # naive


def test_worker_age() -> None:
    worker = WorkerRecord("w", "n", "2024-01-01T00:00:00.000000Z", "2024-01-01T00:00:00.000000Z", 1)
    assert worker.age_s(datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC)) == pytest.approx(30.0)


def test_audit_details_are_bounded_and_json_safe() -> None:
    assert _bounded({"x": float("nan"), "d": datetime(2024, 1, 1)}) == {
        "x": "NaN",
        "d": "2024-01-01 00:00:00",
    }
    big = _bounded({"sample": "x" * (MAX_DETAILS_CHARS + 10)})
    assert big["truncated"] is True and len(big["json_prefix"]) == MAX_DETAILS_CHARS
