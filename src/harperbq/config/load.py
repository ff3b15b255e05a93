"""Entry points: a parsed mapping or a YAML file to a `Config`, every problem reported at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from harperbq.config.environment import apply_environment, interpolate
from harperbq.config.messages import problems_from
from harperbq.config.models import GlobalSync, RawConfig, SynthesizerConfig
from harperbq.config.node import (
    check_node,
    check_retry,
    resolve_bigquery,
    resolve_control,
    resolve_harper,
)
from harperbq.config.problems import Checker, ConfigError, ConfigProblem
from harperbq.config.resolved import Config
from harperbq.config.tables import check_numbers, lenient, settings_of, validate_tables
from harperbq.config.values import DAY


def parse_config(
    data: Mapping[str, Any] | None,
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    source: Path | None = None,
    read_files: bool = True,
) -> Config:
    """Validate and resolve a parsed YAML mapping. Raises ConfigError listing every problem.

    `environ` (default os.environ) feeds `${VAR}` interpolation and the overrides; relative file
    paths are taken from `base_dir`; `read_files=False` skips reading `passwordFile` and checking
    that files exist.
    """
    env = os.environ if environ is None else environ
    check = Checker()
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            [ConfigProblem("", "the config must be a mapping of keys to values", None)],
            str(source) if source else None,
        )
    origins: dict[str, str] = {}
    interpolated = interpolate(dict(data), env, "", check.problems)
    prepared = apply_environment(interpolated, env, origins)
    raw: RawConfig | None = None
    try:
        raw = RawConfig.model_validate(prepared)
    except ValidationError as exc:
        check.problems.extend(problems_from(exc))
    defaults = lenient(GlobalSync, prepared.get("sync") or {}) or GlobalSync.model_validate({})
    check_numbers(settings_of(defaults), lambda key: f"sync.{key}", check)
    tables = validate_tables(prepared, defaults, check)
    if raw is not None:
        base = base_dir if base_dir is not None else (source.parent if source else None)
        harper = resolve_harper(raw, base, check, read_files)
        bigquery = resolve_bigquery(raw.bigquery, base, check, read_files)
        check_node(raw.sync, check)
        check_retry(raw.retry, check)
        control = resolve_control(raw.control, base, check, read_files)
        check.at_most("validation.interval", raw.validation.interval_s, 7 * DAY)
        check.at_most("validation.stalledAfter", raw.validation.stalled_after_s, 30 * DAY)
        if raw.bigquery.initial_retry_delay_s is not None:
            check.at_most("bigquery.initialRetryDelay", raw.bigquery.initial_retry_delay_s, 3600.0)
    if check.problems or raw is None:
        raise ConfigError(check.problems, str(source) if source else None)
    return Config(
        tables=tables,
        harper=harper,
        bigquery=bigquery,
        sync=raw.sync,
        retry=raw.retry,
        validation=raw.validation,
        synthesizer=_synthesizer(raw),
        source=source,
        origins=origins,
        control=control,
    )


def load_config(
    path: str | Path, environ: Mapping[str, str] | None = None, *, read_files: bool = True
) -> Config:
    """Read, interpolate, validate and resolve a YAML config file (see parse_config)."""
    file = Path(path).expanduser().absolute()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [
                ConfigProblem(
                    "",
                    f"cannot read {file}: {exc.strerror or exc}",
                    None,
                    "pass the right file with --config, or create it",
                )
            ],
            str(file),
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            [ConfigProblem("", f"not valid YAML at {where}: {problem}", None, "fix the syntax")],
            str(file),
        ) from exc
    if data is None:
        raise ConfigError(
            [
                ConfigProblem(
                    "",
                    "the config file is empty (or only comments)",
                    None,
                    "add at least `harper` and `bigquery` blocks; docs/configuration.md has a "
                    "complete example",
                )
            ],
            str(file),
        )
    return parse_config(
        data, environ=environ, base_dir=file.parent, source=file, read_files=read_files
    )


def _synthesizer(raw: RawConfig) -> SynthesizerConfig:
    """The `synthesizer` block, whose dataset and positions table default to the legacy
    single-table `bigquery.dataset` / `bigquery.table` (as in the JS plugin), so that a migrated
    single-table file has the synthesizer write the very table the sync reads."""
    synth, bq = raw.synthesizer, raw.bigquery
    if bq.tables is not None:
        return synth
    update: dict[str, Any] = {}
    if bq.dataset and "dataset" not in synth.model_fields_set:
        update["dataset"] = bq.dataset
    positions_set = "table" in synth.model_fields_set or (
        "vessel_positions" in synth.tables.model_fields_set
    )
    if bq.table and not positions_set:
        update["table"] = bq.table
        update["tables"] = synth.tables.model_copy(update={"vessel_positions": bq.table})
    return synth.model_copy(update=update) if update else synth
