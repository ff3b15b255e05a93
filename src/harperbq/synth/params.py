"""The synthesizer's parameters, independent of how the config file spells them."""

from dataclasses import dataclass, fields, replace
from typing import Any

SCENARIOS: dict[str, float] = {"small": 1 / 24, "realistic": 1.0, "stress": 7.0}
"""Scenario name -> days of history (the original's `initialize` scenarios)."""


@dataclass(frozen=True)
class SynthParams:
    """Everything that decides what the synthesizer writes and where.

    `seed`, `total_vessels`, `sampling_interval_s`, `late_*` and `duplicate_fraction` decide the
    rows; the rest decides where and how often they are written.
    """

    dataset: str = "maritime_tracking"
    positions_table: str = "vessel_positions"
    events_table: str = "port_events"
    metadata_table: str = "vessel_metadata"
    total_vessels: int = 100_000
    seed: int = 42
    sampling_interval_s: float = 60.0
    late_fraction: float = 0.0
    late_max_s: float = 3600.0
    duplicate_fraction: float = 0.0
    generation_interval_s: float = 60.0
    retention_days: int = 30
    cleanup_interval_hours: float = 24.0
    batch_size: int = 100
    use_streaming: bool = False
    location: str | None = None

    def __post_init__(self) -> None:
        if self.total_vessels < 1:
            raise ValueError(f"totalVessels must be at least 1, got {self.total_vessels}")
        if self.sampling_interval_s <= 0:
            raise ValueError("samplingIntervalS must be positive")
        if not 0.0 <= self.late_fraction <= 1.0:
            raise ValueError("lateFraction must be within [0, 1]")
        if not 0.0 <= self.duplicate_fraction <= 1.0:
            raise ValueError("duplicateFraction must be within [0, 1]")
        if self.late_fraction > 0 and self.late_max_s < 1:
            raise ValueError("lateMaxS must be at least 1 s when lateFraction > 0")
        if self.generation_interval_s <= 0 or self.retention_days < 1:
            raise ValueError("generationIntervalMs and retentionDays must be positive")

    @property
    def tables(self) -> tuple[str, str, str]:
        return (self.positions_table, self.events_table, self.metadata_table)

    @property
    def late_horizon_s(self) -> float:
        """How far before a write window its rows' timestamps may lie."""
        return self.late_max_s if self.late_fraction > 0 else 0.0

    def with_overrides(self, **changes: Any) -> "SynthParams":
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in changes.items() if k in known and v is not None})


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return default


def params_from_config(cfg: Any) -> SynthParams:
    """Build parameters from the loaded config (`cfg.synthesizer`, pydantic or plain dict).

    Reads attributes by their snake_case names and falls back to the YAML's camelCase keys, so it
    works with `harperbq.config` and with a raw YAML mapping alike.
    """
    syn = _get(cfg, "synthesizer", default={}) or {}
    big = _get(cfg, "bigquery", default={}) or {}
    tables = _get(syn, "tables", default={}) or {}
    d = SynthParams()
    interval_ms = _get(syn, "generation_interval_ms", "generationIntervalMs")
    return SynthParams(
        dataset=str(_get(syn, "dataset", default=d.dataset)),
        positions_table=str(
            _get(tables, "vessel_positions", "vesselPositions", default=None)
            or _get(syn, "table", default=d.positions_table)
        ),
        events_table=str(_get(tables, "port_events", "portEvents", default=d.events_table)),
        metadata_table=str(
            _get(tables, "vessel_metadata", "vesselMetadata", default=d.metadata_table)
        ),
        total_vessels=int(_get(syn, "total_vessels", "totalVessels", default=d.total_vessels)),
        seed=int(_get(syn, "seed", default=d.seed)),
        sampling_interval_s=float(
            _get(syn, "sampling_interval_s", "samplingIntervalS", default=d.sampling_interval_s)
        ),
        late_fraction=float(_get(syn, "late_fraction", "lateFraction", default=d.late_fraction)),
        late_max_s=float(_get(syn, "late_max_s", "lateMaxS", default=d.late_max_s)),
        duplicate_fraction=float(
            _get(syn, "duplicate_fraction", "duplicateFraction", default=d.duplicate_fraction)
        ),
        generation_interval_s=(
            float(interval_ms) / 1000.0 if interval_ms is not None else d.generation_interval_s
        ),
        retention_days=int(_get(syn, "retention_days", "retentionDays", default=d.retention_days)),
        cleanup_interval_hours=float(
            _get(syn, "cleanup_interval_hours", "cleanupIntervalHours", default=24.0)
        ),
        batch_size=int(_get(syn, "batch_size", "batchSize", default=d.batch_size)),
        use_streaming=bool(
            _get(syn, "use_streaming_apis", "useStreamingAPIs", "useStreamingApis", default=False)
        ),
        location=_get(big, "location", default=None),
    )
