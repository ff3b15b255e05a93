"""Noticing a restarted Harper process, and how far back its data is checked."""

from harperbq.harper.restarts import RestartWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_reading_and_the_same_process_are_no_restart() -> None:
    watch = RestartWatch(margin_s=60, clock=Clock())
    assert watch.observe("10@2026-12-02 03:00:00") is None
    assert watch.observe("10@2026-12-02 03:00:00") is None


def test_a_new_process_is_a_restart_checked_back_to_the_old_ones_last_sight() -> None:
    clock = Clock()
    watch = RestartWatch(margin_s=60, clock=clock)
    watch.observe("10@a")
    clock.now += 5
    watch.observe("10@a")  # last seen alive here
    clock.now += 20
    assert watch.observe(None) is None  # down: no answer, nothing decided
    clock.now += 15
    restart = watch.observe("11@b")
    assert restart is not None
    assert (restart.before, restart.after) == ("10@a", "11@b")
    assert restart.check_s == 35 + 60
    assert watch.observe("11@b") is None  # reported once


def test_a_reused_pid_with_another_start_time_is_a_restart() -> None:
    watch = RestartWatch(margin_s=0, clock=Clock())
    watch.observe("10@a")
    assert watch.observe("10@b") is not None
    watch.observe("10@2026-12-02 03:00:00")
    assert watch.observe("10@2026-12-02 03:00:04") is not None  # 4 s apart: a new process


def test_the_start_time_wobbling_by_a_second_is_the_same_process() -> None:
    """Harper derives the start time from the uptime: one process reads 09:16:11 or 09:16:12
    from one call to the next, for hours. Never a restart, however long it goes on."""
    watch = RestartWatch(margin_s=0, clock=Clock())
    assert watch.observe("5437@2026-12-02 09:16:12") is None
    for _ in range(10):
        assert watch.observe("5437@2026-12-02 09:16:11") is None
        assert watch.observe("5437@2026-12-02 09:16:13") is None
    assert watch.observe("5438@2026-12-02 09:16:12") is not None  # another pid is another
