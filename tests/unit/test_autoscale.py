"""The `workers: auto` policy: bounds, growth, sustained calm, and no flapping."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from harperbq.sync.cluster.autoscale import Decision, LagSample, ScalePolicy, decide

POLICY = ScalePolicy(
    min_workers=1, max_workers=3, lag_floor_s=2.0, grow_samples=3, calm_s=20.0, cooldown_s=10.0
)


def sample(at: float, lag: float, caught_up: bool = False) -> LagSample:
    return LagSample(at, {"t": lag}, {"t": caught_up})


def run(lags: list[tuple[float, bool]], start: int = 1, step: float = 2.0) -> list[int]:
    """Feed samples every `step` s and apply each decision; the worker count after each."""
    history: list[LagSample] = []
    current, last = start, None
    counts = []
    for i, (lag, caught) in enumerate(lags):
        now = i * step
        history.append(sample(now, lag, caught))
        d = decide(POLICY, history[-30:], current, now, last)
        if d.workers != current:
            current, last = d.workers, now
        counts.append(current)
    return counts


def test_growing_lag_scales_up_one_step_then_cools_down() -> None:
    counts = run([(float(i * 5), False) for i in range(12)])
    assert counts[:3] == [1, 1, 1] and counts[3] == 2  # grew over 3 samples, above 2 s
    assert counts[4:8] == [2] * 4  # the 10 s cool-down
    assert counts[-1] == 3  # at most maxWorkers


def test_a_lag_drifting_by_sampling_alone_does_not_scale() -> None:
    # Whole-second checkpoints sampled once a second: a rise at every sample, of microseconds.
    assert run([(2.5 + 1e-4 * i, False) for i in range(12)]) == [1] * 12


def test_a_checkpoint_standing_still_scales() -> None:
    # Lag rises by the sampling interval at every sample: nothing is being checkpointed.
    assert run([(1.0 + 2.0 * i, False) for i in range(5)])[3:] == [2, 2]


def test_a_lag_that_stood_still_does_not_scale() -> None:
    assert run([(9.0, False)] * 8) == [1] * 8


def test_lag_below_the_floor_does_not_scale() -> None:
    assert run([(0.1 * i, False) for i in range(15)]) == [1] * 15


def test_sustained_catch_up_scales_down_after_calm() -> None:
    counts = run([(0.5, True)] * 20, start=3)
    assert counts[:10] == [3] * 10  # 20 s of calm needed (samples from t=0)
    assert counts[10:15] == [2] * 5  # one step, then the 10 s cool-down
    assert counts[15:] == [1] * 5


def test_one_lagging_sample_resets_the_calm() -> None:
    lags = [(0.5, True)] * 8 + [(3.0, False)] + [(0.5, True)] * 9
    assert run(lags, start=2) == [2] * 18


def test_out_of_bounds_counts_are_clamped() -> None:
    assert decide(POLICY, [], 0, 0.0, None) == Decision(1, "below minWorkers 1")
    assert decide(POLICY, [], 5, 0.0, 0.0).workers == 3


@given(st.lists(st.tuples(st.floats(0, 1e5), st.booleans()), max_size=60), st.integers(1, 3))
def test_never_leaves_the_bounds(lags: list[tuple[float, bool]], start: int) -> None:
    assert all(1 <= c <= 3 for c in run(lags, start=start))


@given(st.floats(3, 1e4), st.floats(0, 1e4), st.integers(1, 3), st.integers(10, 60))
def test_oscillating_lag_never_flaps(high: float, low: float, start: int, n: int) -> None:
    lags = [(high if i % 2 else min(low, high), i % 2 == 0) for i in range(n)]
    counts = run(lags, start=start)
    assert counts == [start] * n


@given(st.lists(st.tuples(st.floats(0, 1e5), st.booleans()), min_size=2, max_size=60))
def test_changes_are_single_steps_at_least_a_cool_down_apart(
    lags: list[tuple[float, bool]],
) -> None:
    counts = run(lags, start=2)
    changes = [i for i in range(1, len(counts)) if counts[i] != counts[i - 1]]
    assert all(abs(counts[i] - counts[i - 1]) == 1 for i in changes)
    assert all(b - a >= POLICY.cooldown_s / 2.0 for a, b in pairwise(changes))


def test_the_loop_applies_one_step_and_remembers_why() -> None:
    from harperbq.sync.cluster.autoscaler import AutoScaler

    workers = [1]
    now = [0.0]
    lags = iter([1.0, 5.0, 9.0, 13.0, 17.0])
    scaler = AutoScaler(
        POLICY,
        2.0,
        lambda at: sample(at, next(lags)),
        lambda: workers[0],
        lambda: workers.__setitem__(0, workers[0] + 1),
        lambda: workers.__setitem__(0, workers[0] - 1),
        clock=lambda: now[0],
    )
    for _ in range(5):
        scaler.step()
        now[0] += 2.0
    assert workers == [2] and scaler.desired == 2 and "grew" in scaler.last_reason
