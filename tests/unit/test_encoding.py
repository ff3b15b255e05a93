"""Every body encoding carries the value the stdlib JSON body carries, as Harper decodes it.

Harper parses JSON with JSON.parse (every number a double), CBOR with cbor-x and MessagePack with
msgpackr (64-bit integers become BigInt, which Harper stores differently). So "the same value" is:
decoded here, every number equals the double JSON.parse makes of the JSON body, no integer on the
wire needs 64 bits, and what JSON refuses every encoding refuses. The real Harper round trip is in
tests/integration/test_harper_types.py.
"""

import decimal
import enum
import importlib.util
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harperbq.config import ConfigError, parse_config
from harperbq.harper.encoding import (
    CONTENT_TYPES,
    INT32_MIN,
    UINT32_END,
    Encoding,
    encoder,
    json_encode,
    resolve,
)

INSTALLED = [
    e
    for e in Encoding
    if e is Encoding.JSON
    or importlib.util.find_spec(
        {"orjson": "orjson", "cbor": "cbor2", "msgpack": "msgpack"}[e.value]
    )
]


def decode(encoding: Encoding, body: bytes) -> Any:
    if encoding in (Encoding.JSON, Encoding.ORJSON):
        return json.loads(body)
    if encoding is Encoding.CBOR:
        import cbor2

        return cbor2.loads(body)
    import msgpack

    return msgpack.unpackb(body)


def as_js(value: Any) -> Any:
    """A decoded value with every number as the double JavaScript would hold."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {k: as_js(v) for k, v in value.items()}
    return [as_js(v) for v in value]


def wire_ints(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, dict):
        return [i for v in value.values() for i in wire_ints(v)]
    if isinstance(value, list):
        return [i for v in value for i in wire_ints(v)]
    return []


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize("encoding", INSTALLED, ids=lambda e: e.value)
@given(value=json_values)
def test_every_encoding_carries_the_json_value(encoding: Encoding, value: Any) -> None:
    body = {"operation": "upsert", "records": [{"id": "a", "v": value}]}
    reference = json.loads(json_encode(body))
    got = decode(encoding, encoder(encoding)(body))
    assert as_js(got) == as_js(reference)
    if encoding is Encoding.ORJSON and all(-(2**63) <= i < 2**64 for i in wire_ints(reference)):
        assert json.dumps(got) == json.dumps(reference)  # the very same text of every number
    if encoding in (Encoding.CBOR, Encoding.MSGPACK):
        assert all(INT32_MIN <= i < UINT32_END for i in wire_ints(got))


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize("encoding", INSTALLED, ids=lambda e: e.value)
def test_what_json_refuses_every_encoding_refuses(encoding: Encoding) -> None:
    encode = encoder(encoding)
    for bad in (math.nan, math.inf, -math.inf, [1, {"x": math.nan}]):
        with pytest.raises(ValueError, match="not JSON compliant"):
            encode({"records": [{"id": "a", "v": bad}]})
    odd: tuple[Any, ...] = (b"x", datetime(2024, 1, 1, tzinfo=UTC), decimal.Decimal("1.5"), {1})
    for other in odd:
        with pytest.raises(TypeError):
            json_encode({"v": other})
        with pytest.raises(TypeError):
            encode({"records": [{"id": "a", "v": other}]})


@pytest.mark.parametrize("encoding", INSTALLED, ids=lambda e: e.value)
def test_keys_tuples_and_subclasses_as_the_stdlib_writes_them(encoding: Encoding) -> None:
    body = {"v": {7: "a", True: "b", None: "c", 2.5: "d"}, "t": (1, 2), "e": Color.RED}
    assert decode(encoding, encoder(encoding)(body)) == json.loads(json_encode(body))


def test_big_integers_travel_as_the_double_json_parse_makes() -> None:
    for encoding in INSTALLED:
        if encoding in (Encoding.CBOR, Encoding.MSGPACK):
            got = decode(encoding, encoder(encoding)({"v": [2**53, 2**32, -(2**31) - 1, 7]}))
            assert got == {"v": [2.0**53, 2.0**32, -(2.0**31) - 1, 7]}
            assert [type(v) for v in got["v"]] == [float, float, float, int]


def test_resolve_and_content_types() -> None:
    assert resolve("auto") in Encoding
    assert CONTENT_TYPES[Encoding.CBOR] == "application/cbor"
    assert CONTENT_TYPES[Encoding.MSGPACK] == "application/x-msgpack"
    with pytest.raises(ValueError, match="use one of auto, json, orjson, cbor, msgpack"):
        resolve("xml")


def test_config_key_and_its_problem() -> None:
    base = {"bigquery": {"projectId": "p", "tables": []}, "harper": {"url": "http://h:9925"}}
    cfg = parse_config(base, environ={}, read_files=False)
    assert cfg.harper.encoding == "auto"
    for name in ("json", *(e.value for e in INSTALLED)):
        data = {**base, "harper": {"url": "http://h:9925", "encoding": name}}
        assert parse_config(data, environ={}, read_files=False).harper.encoding == name
    data = {**base, "harper": {"url": "http://h:9925", "encoding": "xml"}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ={}, read_files=False)
    (problem,) = [p for p in caught.value.problems if p.path == "harper.encoding"]
    assert problem.value == "xml" and problem.fix
    assert "'auto', 'json', 'orjson', 'cbor' or 'msgpack'" in problem.message
