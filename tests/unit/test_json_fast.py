"""JSON through orjson (the ``fast`` extra) and through the standard library give the same
bytes, and accept and refuse the same values: every case runs both ways (``ORJSON = None``
forces the standard library, which must stay tested where orjson is installed)."""

from __future__ import annotations

import datetime
import enum
import json
import math
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from redisq import serializers
from redisq.errors import SerializationError
from redisq.serializers import JSONSerializer, compact_json, json_loads

orjson = pytest.importorskip("orjson")


@pytest.fixture(params=["orjson", "stdlib"])
def lib(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(serializers, "ORJSON", orjson if request.param == "orjson" else None)
    yield request.param


def both(fn: Any, *args: Any) -> tuple[Any, Any]:
    """``fn(*args)`` through orjson and through the standard library: each a value or the
    exception's type."""
    out = []
    for chosen in (orjson, None):
        saved, serializers.ORJSON = serializers.ORJSON, chosen
        try:
            out.append(fn(*args))
        except Exception as exc:
            out.append(type(exc))
        finally:
            serializers.ORJSON = saved
    return out[0], out[1]


class Colour(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 2


class Name(str):
    pass


EDGE_VALUES = [
    None, True, 0, -1, 2**63 - 1, 2**64, -(2**70), 0.1, -0.0, 1e16, 1e-5, 1e-7, 1.5e-9, 5e-324,
    1e308, math.nan, math.inf, "", "é\n\t\"\\\x00\x1f\x7f\u2028", "\ud800", [1, (2, 3)],
    (1, 2), {"a": None}, {1: "int key"}, {"k": [0.00001]}, uuid.UUID(int=1), Colour.RED,
    Level.HIGH, Name("sub"), {Name("k"): 1}, datetime.date(2026, 1, 1), b"bytes", {1, 2},
    Decimal("2.50"), [datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)],
    {"nested": {"deeper": [1.25, "x", None, False]}},
]


@pytest.mark.parametrize("value", EDGE_VALUES, ids=repr)
def test_edge_values_encode_alike(value: Any) -> None:
    fast, std = both(JSONSerializer().dumps, value)
    assert fast == std
    fast, std = both(compact_json, value)
    assert fast == std


def test_refusals_are_the_same(lib: str) -> None:
    ser = JSONSerializer()
    for bad in (math.nan, Colour.RED, b"x", {1, 2}, object()):
        with pytest.raises(SerializationError):
            ser.dumps(bad)
    assert ser.dumps({"a": [1, 2.5, None]}) == b'{"a":[1,2.5,null]}'
    # The four values that travel as text (encode_extra), through orjson too.
    assert ser.dumps([uuid.UUID(int=1), datetime.date(2026, 1, 2), Decimal("1.10")]) == (
        b'["00000000-0000-0000-0000-000000000001","2026-01-02","1.10"]')
    assert compact_json({"at": datetime.datetime(2026, 1, 2, 3, 4, 5)}) == (
        '{"at":"2026-01-02T03:04:05"}')
    assert ser.dumps(Level.HIGH) == b"2" and ser.dumps(2**64) == b"18446744073709551616"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(json_values)
@example({"\x7f": None})  # DEL: escaped by the standard encoder's ASCII mode, not by orjson
def test_any_value_encodes_alike(value: Any) -> None:
    fast, std = both(JSONSerializer().dumps, value)
    assert fast == std
    fast, std = both(compact_json, value)
    assert fast == std


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_message_decodes_alike(value: Any) -> None:
    try:
        data = json.dumps(value).encode()  # NaN and Infinity too: json.loads takes them
    except ValueError:
        return
    fast, std = both(json_loads, data)
    assert json.dumps(fast) == json.dumps(std)


@pytest.mark.parametrize("data", [b"18446744073709551616123", b"NaN", b"[Infinity]", b"1e400",
                                  b'"\\ud800"', b"\xff", b"{", b'{"a":1,"a":2}', b"-0"])
def test_edge_messages_decode_alike(data: bytes) -> None:
    fast, std = both(json_loads, data)
    if isinstance(std, type):
        assert fast is std  # the same exception type (poison_reason names it)
    else:
        assert json.dumps(fast) == json.dumps(std) and type(fast) is type(std)


def test_job_messages_are_byte_identical(lib: str) -> None:
    from redisq.model import Envelope
    from redisq.serializers import job_encoder

    ser = JSONSerializer()
    env = Envelope("id1", "t.add", [1, "é", 1e-7], {"k": None}, "default", 1, 1.5)
    encode = job_encoder(ser, "t.add", "default")
    assert encode("id1", [1, "é", 1e-7], {"k": None}, 1.5) == ser.dumps(env.to_dict())
    assert ser.loads(ser.dumps(env.to_dict())) == env.to_dict()
