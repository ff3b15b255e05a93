"""Request bodies for Harper's Operations API: JSON (stdlib or orjson), CBOR or MessagePack.

Why more than one: Harper 4.7 parses `application/cbor` (cbor-x) and `application/x-msgpack`
(msgpackr) bodies as well as JSON, and the body format is part of the cost of every upsert
(`bench/harper_upsert.py` measures each; docs/performance.md has the figures).

Exactness: every encoding must make Harper store the very value the stdlib JSON body stores.
The converter's values are JSON values only (strings, bools, null, floats, integers within
+-2**53, lists and objects; big integers, decimals and timestamps are strings, see
docs/architecture.md "Types"), so the only differences to guard are:
- integers: cbor-x and msgpackr decode 64-bit integers as BigInt, which Harper stores as a
  different value than the double JSON.parse makes. Integers outside [-2**31, 2**32) are sent
  as the float64 JSON.parse would have made of their digits (exact within +-2**53);
- NaN and Infinity: JSON refuses them; orjson would write null, CBOR/MessagePack would send
  them. All refuse them here, with the stdlib's error;
- types JSON does not have (bytes, datetime, Decimal, sets...): CBOR and MessagePack have tags
  or extensions for some, which Harper would turn into Dates or lossy numbers. All refuse
  them, as the stdlib does; non-string keys become strings the way the stdlib makes them.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

INT32_MIN = -(2**31)
UINT32_END = 2**32
INT32 = (INT32_MIN, UINT32_END)
"""The integers CBOR and MessagePack carry in at most 32 bits (cbor-x/msgpackr: a number)."""
INT64 = (-(2**63), 2**64)
"""The integers orjson writes (it refuses larger ones; JSON.parse makes a double of any)."""


class Encoding(enum.Enum):
    """A body format; `auto` in the config resolves to `AUTO`."""

    JSON = "json"
    ORJSON = "orjson"
    CBOR = "cbor"
    MSGPACK = "msgpack"


# The fastest exact encoding measured by bench/harper_upsert.py (docs/performance.md).
AUTO = Encoding.JSON

CONTENT_TYPES = {
    Encoding.JSON: "application/json",
    Encoding.ORJSON: "application/json",
    Encoding.CBOR: "application/cbor",
    Encoding.MSGPACK: "application/x-msgpack",
}

_PACKAGES = {Encoding.ORJSON: "orjson", Encoding.CBOR: "cbor2", Encoding.MSGPACK: "msgpack"}

Encoder = Callable[[Mapping[str, Any]], bytes]


def resolve(name: str | Encoding) -> Encoding:
    """`auto` or an encoding's name; an encoding whose library is missing is refused here."""
    if isinstance(name, Encoding):
        encoding = name
    elif name == "auto":
        encoding = AUTO
    else:
        try:
            encoding = Encoding(name)
        except ValueError:
            choices = ", ".join(["auto", *(e.value for e in Encoding)])
            raise ValueError(
                f"unknown Harper body encoding {name!r}; use one of {choices}"
            ) from None
    encoder(encoding)  # fails now, not at the first write, when the library is missing
    return encoding


def json_encode(body: Mapping[str, Any]) -> bytes:
    """Compact JSON; NaN/Infinity are refused (they are not JSON and Harper would store junk)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def encoder(encoding: Encoding) -> Encoder:
    """The function that makes a body of `encoding` (imports its library on first use)."""
    if encoding is Encoding.JSON:
        return json_encode
    try:
        if encoding is Encoding.ORJSON:
            import orjson

            return lambda body: orjson.dumps(plain(body, ints=INT64))
        if encoding is Encoding.CBOR:
            import cbor2

            return lambda body: cbor2.dumps(plain(body, ints=INT32))
        import msgpack

        # packb makes a Packer per call: a shared Packer keeps a buffer and is not thread safe
        return lambda body: msgpack.packb(plain(body, ints=INT32), use_bin_type=True)
    except ImportError:
        package = _PACKAGES[encoding]
        raise ValueError(
            f"harper.encoding {encoding.value!r} needs the Python package {package!r}; install "
            f"it (pip install {package}) or use harper.encoding: json"
        ) from None


def plain(value: Any, *, ints: tuple[int, int]) -> Any:
    """`value` as the JSON value the stdlib encoder would write: the same object when nothing
    needs changing (the common case costs one walk, no copy), else a converted copy.

    Integers outside `[ints[0], ints[1])` become the float JSON.parse would make of them.
    Raises the stdlib's TypeError/ValueError for what JSON cannot hold.
    """
    kind = type(value)
    if kind is dict:
        if _fine_dict(value, ints):
            return value
        return {_key(k): plain(v, ints=ints) for k, v in value.items()}
    if kind is list:
        if _fine(value, ints):
            return value
        return [plain(v, ints=ints) for v in value]
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if ints[0] <= value < ints[1]:
            return value
        return _double(value)
    if kind is float:
        if value - value == 0.0:  # finite (NaN and +-Infinity give NaN)
            return value
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return _subclass(value, ints)


def _fine(items: Iterable[Any], ints: tuple[int, int]) -> bool:
    """True when every item is already as `plain` would make it (the hot loop: one row's
    values, inlined checks instead of a call per value)."""
    for item in items:
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is float:
            if item - item != 0.0:
                return False
        elif kind is int:
            if not ints[0] <= item < ints[1]:
                return False
        elif kind is dict:
            if not _fine_dict(item, ints):
                return False
        elif kind is list:
            if not _fine(item, ints):
                return False
        else:
            return False
    return True


def _fine_dict(items: dict[Any, Any], ints: tuple[int, int]) -> bool:
    """`_fine` for an object: string keys, then its values."""
    return all(type(key) is str for key in items) and _fine(items.values(), ints)


def _subclass(value: Any, ints: tuple[int, int]) -> Any:
    """What the stdlib accepts beyond the exact types: tuples and subclasses (e.g. IntEnum)."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return plain(int.__int__(value), ints=ints)
    if isinstance(value, float):
        return plain(float.__float__(value), ints=ints)
    if isinstance(value, dict):
        return {_key(k): plain(v, ints=ints) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, ints=ints) for v in value]
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _double(value: int) -> float:
    """The float64 JSON.parse makes of an integer's digits (both round to nearest, ties even)."""
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"integer {value} is too large for Harper (above float64)") from None


def _key(key: Any) -> str:
    """An object key as the stdlib writes it."""
    if isinstance(key, str):
        return str.__str__(key)
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        if not math.isfinite(key):
            raise ValueError(f"Out of range float values are not JSON compliant: {key!r}")
        return float.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
