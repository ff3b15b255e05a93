"""The environment's part of a config: `${VAR}` interpolation, and the variables that
override a key or fill in one the file leaves unset (`ENV_VARIABLES`, docs/configuration.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from harperbq.config.problems import ConfigProblem

_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def interpolate(
    node: Any, environ: Mapping[str, str], path: str, problems: list[ConfigProblem]
) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string value; `$$` is a literal `$`."""
    if isinstance(node, dict):
        return {k: interpolate(v, environ, join_path(path, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, environ, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(
            ConfigProblem(
                path,
                f"environment variable {name} is not set",
                None,
                f"export {name}=... or write ${{{name}:-default}}",
            )
        )
        return ""

    return _INTERPOLATION.sub(replace, node)


def join_path(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# (config path, namespaced variable that overrides the file, generic variables that only fill in)
_ENV_SETTINGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("harper.url", "HARPERBQ_HARPER_URL", ("HARPER_URL",)),
    ("harper.username", "HARPERBQ_HARPER_USERNAME", ("HARPER_USERNAME",)),
    ("harper.password", "HARPERBQ_HARPER_PASSWORD", ("HARPER_PASSWORD",)),
    (
        "bigquery.projectId",
        "HARPERBQ_BIGQUERY_PROJECT",
        ("BIGQUERY_PROJECT", "GOOGLE_CLOUD_PROJECT"),
    ),
    ("bigquery.credentials", "HARPERBQ_BIGQUERY_CREDENTIALS", ()),
    ("bigquery.endpoint", "HARPERBQ_BIGQUERY_ENDPOINT", ("BIGQUERY_EMULATOR_HOST",)),
    (
        "bigquery.storageEndpoint",
        "HARPERBQ_BIGQUERY_STORAGE_ENDPOINT",
        ("BIGQUERY_EMULATOR_GRPC_HOST",),
    ),
    ("control.token", "HARPERBQ_CONTROL_TOKEN", ()),
    ("control.host", "HARPERBQ_CONTROL_HOST", ()),
)
ENV_VARIABLES = _ENV_SETTINGS
"""Documented in docs/configuration.md: namespaced variables win over the file; generic ones
(`HARPER_PASSWORD`, `BIGQUERY_EMULATOR_HOST`, ...) are used only where the file sets nothing."""


def apply_environment(
    data: dict[str, Any], environ: Mapping[str, str], origins: dict[str, str]
) -> dict[str, Any]:
    data = dict(data)
    for path, override, fallbacks in _ENV_SETTINGS:
        section, key = path.split(".")
        block = data.get(section)
        if block is not None and not isinstance(block, dict):
            continue  # reported by validation
        block = dict(block or {})
        if (
            section == "harper"
            and "harper" not in data
            and isinstance(data.get("operations"), dict)
        ):
            current = _from_operations(data["operations"], key)
        else:
            current = block.get(key)
        chosen: str | None = None
        if environ.get(override):
            chosen = override
        elif current in (None, ""):
            chosen = next((name for name in fallbacks if environ.get(name)), None)
        if chosen is None:
            continue
        block[key] = environ[chosen]
        data[section] = block
        origins[path] = f"env {chosen}"
    return data


def _from_operations(operations: Mapping[str, Any], key: str) -> Any:
    if key == "url":
        return None if "host" not in operations and "port" not in operations else "set"
    return operations.get(key)
