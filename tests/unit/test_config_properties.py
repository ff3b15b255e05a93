"""Property tests: any YAML-shaped input gives a Config or a ConfigError, never a crash;
durations parse exactly."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harperbq.config import Config, ConfigError, parse_config, parse_duration

KEYS = st.sampled_from(
    [
        "bigquery",
        "tables",
        "sync",
        "harper",
        "operations",
        "id",
        "dataset",
        "table",
        "timestampColumn",
        "columns",
        "primaryKey",
        "partitions",
        "settle",
        "pollInterval",
        "retry",
        "maxAttempts",
        "synthesizer",
        "password",
        "url",
        "x",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["*", "5m", "${HOME}", "$$", "ts", "2024-01-01T00:00:00Z"]),
)
YAMLISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, YAMLISH, max_size=6))
def test_any_input_gives_a_config_or_a_config_error(data: dict[str, Any]) -> None:
    try:
        result = parse_config(data, environ={"HOME": "/home/x"}, read_files=False)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.message
            assert isinstance(problem.path, str)
    else:
        assert isinstance(result, Config)


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(amount: int, unit: str) -> float:
    return amount / 1000 if unit == "ms" else float(amount * UNITS[unit])


@given(st.integers(0, 10**6), st.sampled_from(["ms", *sorted(UNITS)]))
def test_duration_strings(amount: int, unit: str) -> None:
    assert parse_duration(f"{amount}{unit}") == seconds(amount, unit)
    assert parse_duration(f" {amount} {unit.upper()} ") == seconds(amount, unit)


@given(st.integers(0, 10**6), st.integers(0, 59))
def test_compound_durations(hours: int, minutes: int) -> None:
    assert parse_duration(f"{hours}h{minutes}m") == hours * 3600 + minutes * 60


@given(st.floats(0, 1e9))
def test_bare_numbers_use_the_default_unit(value: float) -> None:
    assert parse_duration(value) == value
    assert parse_duration(value, unit="ms") == value / 1000
