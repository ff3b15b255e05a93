"""The whole YAML config file as one pydantic model tree, resolved into per-table settings.

Accepts the JavaScript plugin's files unchanged (camelCase keys, the legacy single-table form,
`operations`, `retry`, `validation`, `synthesizer`) and honours every key. Parsing reports every
problem at once, each with its key path, the bad value and a fix. Units: the original keys keep
their units (`pollInterval`, `initialDelay`, `initialRetryDelay` in ms; thresholds and
`validation.interval` in s); the new duration keys take seconds or a string such as "250ms",
"90s", "5m", "1h", "7d". Any duration may also be written as such a string.

The package, one module per job, lowest first: `problems` (what is wrong, reported at once),
`values` (durations, timestamps, names), `models` (the file's shape), `resolved` (what the rest
of harperbq reads), `environment` (`${VAR}` and overrides), `messages` (pydantic's errors as
problems), `tables` and `node` (checks and resolution), `load` (the entry points). Import from
here: this is the public surface.
"""

from harperbq.config.environment import ENV_VARIABLES
from harperbq.config.load import load_config, parse_config
from harperbq.config.models import (
    AUDIT_RETENTION_S,
    LEGACY_TABLE_FIELDS,
    MIN_AUDIT_RETENTION_S,
    BigQueryConfig,
    ControlConfig,
    GlobalSync,
    HarperConfig,
    OperationsModel,
    RawConfig,
    RetryConfig,
    SyncSettings,
    SynthesizerConfig,
    SynthesizerTables,
    TableModel,
    ValidationConfig,
)
from harperbq.config.node import is_loopback, redact_url
from harperbq.config.problems import ConfigError, ConfigProblem
from harperbq.config.resolved import (
    STALL_TIMEOUT_MAX_S,
    STALL_TIMEOUT_MIN_S,
    Config,
    TableConfig,
)
from harperbq.config.tables import MAX_BATCH_SIZE
from harperbq.config.values import (
    MAX_CONFIRMATIONS,
    MAX_DURATION_S,
    MAX_WORKERS,
    parse_duration,
    parse_timestamp,
)

__all__ = [
    "AUDIT_RETENTION_S",
    "ENV_VARIABLES",
    "LEGACY_TABLE_FIELDS",
    "MAX_BATCH_SIZE",
    "MAX_CONFIRMATIONS",
    "MAX_DURATION_S",
    "MAX_WORKERS",
    "MIN_AUDIT_RETENTION_S",
    "STALL_TIMEOUT_MAX_S",
    "STALL_TIMEOUT_MIN_S",
    "BigQueryConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "ControlConfig",
    "GlobalSync",
    "HarperConfig",
    "OperationsModel",
    "RawConfig",
    "RetryConfig",
    "SyncSettings",
    "SynthesizerConfig",
    "SynthesizerTables",
    "TableConfig",
    "TableModel",
    "ValidationConfig",
    "is_loopback",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_timestamp",
    "redact_url",
]
