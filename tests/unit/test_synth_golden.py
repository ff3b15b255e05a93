"""Golden digests: the synthesizer's rows stay byte-identical across optimisations.

The digests below were produced by the code before the speed-up of issue 15 (commit 79e49db). A
change that alters any value, type, null or row order of the three tables for a fixed seed fails
here; a change of chunking alone does not (each column is combined before hashing).
"""

import hashlib
import itertools

import numpy as np
import pyarrow as pa
import pytest

from harperbq.synth.fleet import EPOCH_S
from harperbq.synth.params import SynthParams
from harperbq.synth.tables import Generator

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
BOUNDARY = np.ceil(T0 / EPOCH_S) * EPOCH_S  # first schedule-slot boundary after T0


def digest(table: pa.Table) -> str:
    """sha256 over the schema and every column's validity and values, in row order."""
    h = hashlib.sha256(str(table.schema).encode())
    for name, column in zip(table.column_names, table.columns, strict=True):
        arr = column.combine_chunks()
        h.update(name.encode())
        h.update(np.asarray(arr.is_null(), dtype=np.bool_).tobytes())
        if pa.types.is_string(arr.type):
            h.update("\x00".join(arr.fill_null("").to_pylist()).encode())
        else:
            if pa.types.is_timestamp(arr.type):
                arr = arr.cast(pa.int64())
            h.update(arr.fill_null(0).to_numpy(zero_copy_only=False).tobytes())
    return h.hexdigest()


PLAIN = SynthParams(total_vessels=300, seed=7)
KNOBS = SynthParams(
    total_vessels=120,
    seed=9,
    sampling_interval_s=10,
    late_fraction=0.2,
    late_max_s=900,
    duplicate_fraction=0.05,
)
CASES: dict[
    str, tuple[SynthParams, str, float, float] | tuple[SynthParams, str, float, float, float]
] = {
    "plain-10min": (PLAIN, "positions", T0, T0 + 600),
    "plain-1h": (PLAIN, "positions", T0 + 600, T0 + 4200),
    "plain-slot-boundary": (PLAIN, "positions", BOUNDARY - 900, BOUNDARY + 900),
    "plain-events-day": (PLAIN, "events", T0, T0 + 86_400),
    "plain-metadata-1h": (PLAIN, "metadata", T0, T0 + 3600),
    "knobs-positions": (KNOBS, "positions", T0, T0 + 1800),
    "knobs-positions-boundary": (KNOBS, "positions", BOUNDARY - 300, BOUNDARY + 300),
    "knobs-events-day": (KNOBS, "events", T0, T0 + 86_400),
    "knobs-metadata": (KNOBS, "metadata", T0, T0 + 1800),
    # consecutive windows from one generator, as the bench and `synth start` call it
    "plain-consecutive": (PLAIN, "positions", T0, T0 + 3600, 600),
    "knobs-consecutive": (KNOBS, "positions", BOUNDARY - 1200, BOUNDARY + 1200, 300),
}
# Produced by the code before the optimisation, at commit 79e49db.
GOLDEN = {
    "knobs-consecutive": "5089864fcdfbbcc4d7ef7422c7780f10b9940004afeb342f7ea6bdf860339e88",
    "knobs-events-day": "43090b93cd1d31df1c178a04e30df11aef9874d8944198fa027499fae32bd807",
    "knobs-metadata": "5934b22ce389fea2f786231ce0397430462d4c91df1618759d3e5a441a2772b7",
    "knobs-positions": "532323eab8de07637898b2b9425604409b8c00a312f1fa4a131c1b1b0230a6d3",
    "knobs-positions-boundary": "d112a038151222c26f8cea80a8d06e8c0a7394a1a77bd09f4ebae0c8a49cfbea",
    "plain-10min": "8013fa40a72e766b922eaf09a08f0b957c6f670ad8abf10e04e54ae934eebf70",
    "plain-1h": "7f3b05a903095760ad51c61e307bab099b815c5b3f3408cc98f02ab0851ee140",
    "plain-consecutive": "caa224b9fd88d530bc84c7a71b1814761f63a9d90691fb7f0f9ebea27547bc69",
    "plain-events-day": "4e3cf9f86655da7557d2dbb82c5e0aade0467f707b05982f2de2b8107dc91607",
    "plain-metadata-1h": "3949f4ca290ff89adefb3bfc0a1ce345bca7854cdc44eeda068d7a5af3f0e72d",
    "plain-slot-boundary": "b429381cc374d4a9404e69095ae46cad8c12edf6e77d1d01cfabf764e983a71f",
}


def rows(params: SynthParams, kind: str, lo: float, hi: float, step: float = 0) -> pa.Table:
    """One window [lo, hi), or consecutive windows of `step` seconds from one generator."""
    gen = Generator(params)
    if not step:
        return gen.table(kind, lo, hi)
    edges = np.arange(lo, hi + step / 2, step)
    return pa.concat_tables([gen.table(kind, a, b) for a, b in itertools.pairwise(edges)])


@pytest.mark.parametrize("case", sorted(CASES))
def test_rows_match_the_golden_digest(case: str) -> None:
    table = rows(*CASES[case])
    assert table.num_rows > 0
    assert digest(table) == GOLDEN[case]
