"""Pydantic's errors as config problems: key paths, plain messages, fixes and "did you mean"."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Annotated, Any, get_args, get_origin

from pydantic import (
    BaseModel,
    ValidationError,
)

from harperbq.config.environment import join_path
from harperbq.config.models import GlobalSync, RawConfig
from harperbq.config.problems import ConfigProblem, jsonable, masked

_NODE_WIDE = {
    "workers",
    "minWorkers",
    "maxWorkers",
    "lease",
    "heartbeatInterval",
    "joinGrace",
    "auditRetention",
}


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (for listing its allowed keys)."""
    model: type[BaseModel] = RawConfig
    for part in loc:
        if isinstance(part, int):
            continue
        found = next((f for f in model.model_fields.values() if f.alias == part), None)
        if found is None:
            return None
        inner = _model_in(found.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        inner = _model_in(arg)
        if inner is not None:
            return inner
    if get_origin(annotation) is Annotated:
        return _model_in(get_args(annotation)[0])
    return None


def _normal(name: str) -> str:
    return re.sub(r"[_\-\s]", "", name).lower()


def _suggest(key: str, loc: Sequence[Any]) -> str:
    model = _model_at(loc)
    if model is None:
        return "remove it"
    allowed = [f.alias for f in model.model_fields.values() if f.alias]
    if key in _NODE_WIDE and model is not GlobalSync:
        return f"`{key}` is node-wide: set it in the top-level `sync` block"
    same = [a for a in allowed if _normal(a) == _normal(key)]
    close = same or difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    return "remove it; allowed here: " + ", ".join(sorted(allowed))


def _path(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else join_path(text, part)[len(text) :]
    return text.lstrip(".")


def problems_from(error: ValidationError, prefix: Sequence[Any] = ()) -> list[ConfigProblem]:
    problems = []
    for item in error.errors():
        loc = [*prefix, *item["loc"]]
        path = _path(loc)
        kind = item["type"]
        ctx = item.get("ctx") or {}
        value = masked(path, item.get("input"))
        if kind == "extra_forbidden":
            key = str(loc[-1])
            problems.append(
                ConfigProblem(path, f"unknown key `{key}`", None, _suggest(key, loc[:-1]))
            )
            continue
        if kind == "missing":
            problems.append(
                ConfigProblem(path, "required key is missing", None, f"add `{loc[-1]}`")
            )
            continue
        message = item["msg"]
        fix = ctx.get("fix") or _FIXES.get(kind)
        problems.append(ConfigProblem(path, message, value if jsonable(value) else None, fix))
    return problems


_FIXES = {
    "int_parsing": "use a whole number",
    "int_type": "use a whole number",
    "int_from_float": "use a whole number",
    "float_parsing": "use a number",
    "bool_parsing": "use true or false",
    "bool_type": "use true or false",
    "string_type": "use a string",
    "list_type": "use a list, e.g. [a, b]",
    "dict_type": "use a mapping of keys to values",
    "model_type": "use a mapping of keys to values",
    "greater_than": "use a larger number",
    "greater_than_equal": "use a larger number",
    "less_than_equal": "use a smaller number",
    "literal_error": "use one of the values listed",
}
