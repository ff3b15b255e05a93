"""BigQuery restrictions the emulator does not enforce.

- A Storage Read `row_restriction` beyond comparisons of a column with constants (combined by
  AND/OR/NOT, IN lists, IS [NOT] NULL, BETWEEN) is refused at session creation as "too complex";
  seen for functions such as PARSE_TIMESTAMP, and assumed for FARM_FINGERPRINT/MOD/CONCAT.
  https://cloud.google.com/bigquery/docs/reference/storage/rpc/google.cloud.bigquery.storage.v1#tablereadoptions
- UPDATE, DELETE and MERGE cannot touch rows written by streaming (insertAll or the Storage
  Write API) in the last 30 minutes.
  https://cloud.google.com/bigquery/docs/data-manipulation-language#limitations
"""

from __future__ import annotations

import threading
import time

import sqlglot
from sqlglot import exp

STREAMING_DML_WINDOW_S = 30 * 60

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


class TooComplexError(ValueError):
    """A row restriction the Storage Read API refuses."""


def too_complex_message(restriction: str) -> str:
    return (
        f"request failed: row filter '{restriction}' is too complex to be processed in "
        "filtering; consider executing a query instead"
    )


def _constant(node: exp.Expr) -> bool:
    if isinstance(node, exp.Paren):
        return _constant(node.this)
    if isinstance(node, exp.Literal | exp.Boolean | exp.Null):
        return True
    if isinstance(node, exp.Neg):
        return isinstance(node.this, exp.Literal)
    # A typed literal (TIMESTAMP '...', DATE '...') parses as a CAST of a string literal.
    return isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal)


def _simple(node: exp.Expr) -> bool:
    if isinstance(node, exp.Paren):
        return _simple(node.this)
    if isinstance(node, exp.And | exp.Or):
        return _simple(node.left) and _simple(node.right)
    if isinstance(node, exp.Not):
        return _simple(node.this)
    if isinstance(node, _COMPARISONS):
        left, right = node.left, node.right
        return (isinstance(left, exp.Column) and _constant(right)) or (
            isinstance(right, exp.Column) and _constant(left)
        )
    if isinstance(node, exp.In):
        return (
            isinstance(node.this, exp.Column)
            and not node.args.get("query")
            and not node.args.get("unnest")
            and all(_constant(v) for v in node.expressions)
        )
    if isinstance(node, exp.Between):
        return (
            isinstance(node.this, exp.Column)
            and _constant(node.args["low"])
            and _constant(node.args["high"])
        )
    if isinstance(node, exp.Is):
        return isinstance(node.this, exp.Column) and isinstance(node.expression, exp.Null)
    return isinstance(node, exp.Boolean)


def check_row_restriction(restriction: str) -> None:
    """Raise TooComplexError unless the restriction is column-vs-constant comparisons."""
    if not restriction.strip():
        return
    try:
        node = sqlglot.parse_one(restriction, read="bigquery")
    except sqlglot.errors.ParseError as exc:
        raise TooComplexError(too_complex_message(restriction)) from exc
    if node is None or not _simple(node):
        raise TooComplexError(too_complex_message(restriction))


class StreamingLog:
    """When each table last received streamed rows (thread safe; the emulator's process)."""

    def __init__(self, window_s: float = STREAMING_DML_WINDOW_S) -> None:
        self.window_s = window_s
        self._last: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def streamed(self, table: tuple[str, str, str], at: float | None = None) -> None:
        with self._lock:
            self._last[_norm(table)] = time.time() if at is None else at

    def forget(self, table: tuple[str, str, str]) -> None:
        """A dropped table takes its streaming buffer with it."""
        with self._lock:
            self._last.pop(_norm(table), None)

    def recent(self, table: tuple[str, str, str], now: float | None = None) -> bool:
        with self._lock:
            last = self._last.get(_norm(table))
        moment = time.time() if now is None else now
        return last is not None and moment - last < self.window_s


def _norm(table: tuple[str, str, str]) -> tuple[str, str, str]:
    return (table[0], table[1].lower(), table[2].lower())


def streaming_dml_message(table: str, statement: str) -> str:
    return (
        f"{statement} statement over table {table} would affect rows in the streaming buffer, "
        "which is not supported"
    )
