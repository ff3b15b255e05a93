"""What is wrong with a config: each problem with its key path, the value and a fix, collected
so that parsing reports every problem at once instead of the first."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harperbq.config.values import span


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the config: where, what was found, why it is wrong, how to fix it."""

    path: str
    message: str
    value: Any = None
    fix: str | None = None

    def __str__(self) -> str:
        text = f"{self.path or '(file)'}: {self.message}"
        if self.value is not None:
            text += f" (got {self.value!r})"
        if self.fix:
            text += f". Fix: {self.fix}"
        return text

    def to_json(self) -> dict[str, Any]:
        value = self.value if jsonable(self.value) else repr(self.value)
        return {"path": self.path, "message": self.message, "value": value, "fix": self.fix}


class ConfigError(ValueError):
    """The config cannot be used; `problems` lists every problem found, not only the first."""

    def __init__(self, problems: Sequence[ConfigProblem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} config problem(s){where}:\n{lines}")


def jsonable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


_SECRET_KEY = re.compile(r"pass(word)?|secret|token", re.I)


def masked(path: str, value: Any) -> Any:
    return "***" if _SECRET_KEY.search(path.rsplit(".", 1)[-1]) and value is not None else value


class Checker:
    """Collects problems (each once: a global setting is checked once per table)."""

    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []

    def add(self, path: str, message: str, value: Any = None, fix: str | None = None) -> None:
        problem = ConfigProblem(path, message, masked(path, value), fix)
        if problem not in self.problems:  # a global setting is checked once per table
            self.problems.append(problem)

    def at_most(self, path: str, value: float | None, limit: float) -> None:
        """A duration above its sensible maximum (a typo such as ms for s, or a unit too large)."""
        if value is not None and value > limit:
            self.add(
                path,
                f"must be at most {span(limit)} ({limit:g} s)",
                value,
                f'use a duration between 0 and "{span(limit)}"',
            )
