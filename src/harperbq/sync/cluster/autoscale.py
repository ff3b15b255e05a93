"""When `sync.workers: auto` adds or removes a local worker: a pure policy over lag samples.

Pure (no clock, no threads) so it can be tested exhaustively; the service samples its engines
and applies the answer. Scale up one step when some table's lag grew across each of the last
`grow_samples` samples, by at least half the time they span, and is above `lag_floor_s`; scale
down one step only when every table was caught up in every sample of the last `calm_s`; after
any change wait `cooldown_s`. Lag that merely oscillates never grows `grow_samples` times in a
row nor stays caught up, so it changes nothing: that, and the cool-down, is the hysteresis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True)
class LagSample:
    """One reading of every table at `at` (seconds): its lag and whether it is at the head."""

    at: float
    lag_s: Mapping[str, float | None]
    caught_up: Mapping[str, bool]


@dataclass(frozen=True)
class ScalePolicy:
    min_workers: int
    max_workers: int
    lag_floor_s: float
    """Growth below this lag is normal polling jitter, not a backlog (e.g. 2 poll intervals)."""
    grow_samples: int = 3
    calm_s: float = 60.0
    cooldown_s: float = 30.0


@dataclass(frozen=True)
class Decision:
    workers: int
    reason: str


def _growing(history: Sequence[LagSample], table: str, k: int, floor: float) -> bool:
    """Rose at each of the last `k` samples, above `floor`, and by at least half the time
    they span: the checkpoint advances at under half real time. The last condition keeps
    sampling noise out: checkpoints on a whole-second grid sampled once a second drift by
    microseconds per sample, a rise at every sample that is no backlog."""
    recent = history[-(k + 1) :]
    lags = [s.lag_s.get(table) for s in recent]
    if len(lags) < k + 1 or any(lag is None for lag in lags):
        return False
    values = [float(lag) for lag in lags if lag is not None]
    span = recent[-1].at - recent[0].at
    rose = all(b > a for a, b in pairwise(values))
    return values[-1] > floor and rose and values[-1] - values[0] >= span / 2


def _calm(history: Sequence[LagSample], now: float, calm_s: float) -> bool:
    """Every table caught up in every sample of the last `calm_s`, and the samples span it."""
    if not history or now - history[0].at < calm_s:
        return False
    recent = [s for s in history if s.at >= now - calm_s]
    return bool(recent) and all(s.caught_up and all(s.caught_up.values()) for s in recent)


def decide(
    policy: ScalePolicy,
    history: Sequence[LagSample],
    current: int,
    now: float,
    last_change_at: float | None,
) -> Decision:
    """The worker count wanted now (always within the policy's bounds), with why."""
    low, high = policy.min_workers, policy.max_workers
    if current < low:
        return Decision(low, f"below minWorkers {low}")
    if current > high:
        return Decision(high, f"above maxWorkers {high}")
    if last_change_at is not None and now - last_change_at < policy.cooldown_s:
        return Decision(current, "cooling down")
    tables = sorted(history[-1].lag_s) if history else []
    growing = [t for t in tables if _growing(history, t, policy.grow_samples, policy.lag_floor_s)]
    if growing and current < high:
        lag = history[-1].lag_s[growing[0]]
        return Decision(
            current + 1,
            f"lag of {growing[0]} grew over {policy.grow_samples} samples to {lag:.1f} s",
        )
    if not growing and current > low and _calm(history, now, policy.calm_s):
        return Decision(current - 1, f"every table caught up for {policy.calm_s:g} s")
    return Decision(current, "steady")
