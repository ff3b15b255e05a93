"""BigQuery's clock carried by the monotonic clock: asked once, again every refresh."""

import pytest

from harperbq.bigquery.server_clock import RETRY_S, ServerClock


class Ticks:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_carries_the_server_time_by_the_monotonic_clock() -> None:
    mono = Ticks()
    asked: list[float] = []

    def ask() -> float:
        asked.append(mono.t)
        return 1_700_000_000.0 + (mono.t - 1000.0)  # the server's clock, 10 min behind ours

    clock = ServerClock(ask, refresh_s=600, monotonic=mono, fallback=lambda: 1_700_000_600.0)
    assert clock.now() == 1_700_000_000.0
    mono.t += 42.5
    assert clock.now() == 1_700_000_042.5  # not asked again: carried forward
    assert len(asked) == 1
    assert clock.offset_s() == pytest.approx(-600 + 42.5)
    mono.t += 600
    clock.now()
    assert len(asked) == 2  # asked again after the refresh interval


def test_failures_keep_the_last_reading_and_retry_later() -> None:
    mono = Ticks()
    answers: list[float | Exception] = [500.0, RuntimeError("down"), 2000.0]

    def ask() -> float:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = ServerClock(ask, refresh_s=10, monotonic=mono, fallback=lambda: -1.0)
    assert clock.now() == 500.0
    mono.t += 10
    assert clock.now() == 510.0  # the refresh failed: carried on from the last reading
    mono.t += RETRY_S - 1
    assert clock.now() == 510.0 + RETRY_S - 1 and answers == [2000.0]  # not asked meanwhile
    mono.t += 1
    assert clock.now() == 2000.0


def test_falls_back_to_the_local_clock_only_when_never_read() -> None:
    def ask() -> float:
        raise RuntimeError("no BigQuery")

    clock = ServerClock(ask, monotonic=Ticks(), fallback=lambda: 123.0)
    assert clock.now() == 123.0 and clock.offset_s() is None
