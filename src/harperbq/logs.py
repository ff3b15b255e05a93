"""Structured logs: one event per line, as JSON or for a console; secrets never printed."""

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|credential|private", re.I)
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Make a secret value unprintable: it is replaced by *** in every log line."""
    if value and len(value) >= 4:
        _secrets.add(value)


def register_secrets(values: Iterable[str]) -> None:
    """Every secret of a loaded config (`Config.secrets()`)."""
    for value in values:
        register_secret(value)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    return {k: ("***" if _SECRET_KEYS.search(k) else v) for k, v in extra.items()}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            event["error"] = self.formatException(record.exc_info)
        return redact(json.dumps(event, default=str, ensure_ascii=False))


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extra:
            line += f"  {extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def configure(log_format: str = "console", debug: bool = False) -> None:
    """Route every harperbq logger to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("harperbq").setLevel(logging.DEBUG if debug else logging.INFO)


def configure_file(path: Path, debug: bool = False, *extra: logging.Handler) -> None:
    """Every harperbq logger to `path` (console format), plus `extra` handlers (e.g. warnings
    above a live view): for commands whose terminal is taken by a live view."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler, *extra]
    root.setLevel(logging.WARNING)
    logging.getLogger("harperbq").setLevel(logging.DEBUG if debug else logging.INFO)
