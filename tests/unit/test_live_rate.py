"""The live view's rows/s: over a sliding window, so polls every few seconds do not read 0."""

from harperbq.cli.live import SlidingRate


def test_steady_polls_show_their_rate_between_them() -> None:
    rates = SlidingRate(window_s=10)
    shown = []
    for tick in range(40):  # redraws every 0.5 s; 500 rows land every 3 s
        now = tick * 0.5
        shown.append(rates.observe("t", 500 * int(now // 3), now))
    # Once the window has filled, every redraw shows about 500/3 rows/s, never 0.
    assert all(120 <= rate <= 200 for rate in shown[22:]), shown


def test_a_stop_decays_to_zero_within_the_window() -> None:
    rates = SlidingRate(window_s=10)
    for second in range(10):
        rates.observe("t", 100 * second, float(second))
    assert rates.observe("t", 900, 10.0) > 0
    assert rates.observe("t", 900, 21.0) == 0.0


def test_keys_are_independent_and_the_first_sample_is_zero() -> None:
    rates = SlidingRate()
    assert rates.observe("a", 1_000, 0.0) == 0.0
    assert rates.observe("b", 0, 0.0) == 0.0
    assert rates.observe("a", 2_000, 1.0) == 1_000.0
    assert rates.observe("b", 10, 1.0) == 10.0
