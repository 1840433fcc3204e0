"""Message encodings. JSON by default, msgpack when installed and asked for; never pickle, so
whoever can write to Redis can send data, not code.

Beyond JSON's own types, four common values are encoded as text (:func:`encode_extra`):
``datetime`` and ``date`` as ISO 8601 (``datetime.isoformat()``: an aware one keeps its offset),
``UUID`` and ``Decimal`` as ``str()`` (exact: no float rounding). The encoding is byte-stable
(the same value always gives the same bytes, so ``unique_by`` keys and job ids built from it
are stable). A task receives them as those strings, or as the typed value again when it
annotates the parameter with the type (:func:`decode_typed`, applied before the task runs).

JSON goes through orjson when it is installed (``pip install 'redisq[fast]'``), else the standard
library, with byte-identical output and the same values accepted and refused either way:
orjson's bytes are used only when they are exactly what the standard encoder writes
(:func:`_orjson_dumps` says when), and its decoding only for input it decodes exactly as
``json.loads`` does (:func:`json_loads`); anything else takes the standard path. Tests run both
(``ORJSON = None`` forces the standard library).
"""

from __future__ import annotations

import json
import re
import types
import typing
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from .errors import SerializationError
from .limits import MAX_DEPTH, MessageTooDeep

_orjson: Any
try:
    import orjson as _orjson
except ImportError:  # the optional "fast" extra
    _orjson = None

#: orjson when installed, else None (set it to None to force the standard library).
ORJSON: Any = _orjson
#: Every type orjson would encode its own way (datetimes, dataclasses, subclasses of str, int,
#: dict, list) goes to ``default``, which hands the value to the standard encoder to judge.
_ORJSON_OPTS = (_orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS
                | _orjson.OPT_PASSTHROUGH_SUBCLASS) if _orjson is not None else 0
#: A float orjson writes unlike ``repr(float)``: a one-digit negative exponent (1e-7, Python:
#: 1e-07) or 0.00001 and smaller without one (Python: 1e-05). Checked on 10^6 floats.
_SHORT_EXPONENT = re.compile(rb"e-[0-9](?![0-9])")
#: An integer of 20+ digits, which orjson decodes as a float (json.loads: an exact int).
_LONG_INT = re.compile(rb"[0-9]{20}")


class _NotNative(TypeError):
    pass


def _not_native(value: Any) -> Any:
    raise _NotNative


def _orjson_dumps(value: Any) -> bytes | None:
    """orjson's encoding of ``value`` when it is byte for byte the standard encoder's (compact,
    ensure_ascii off, NaN refused); None when the standard encoder must decide."""
    lib = ORJSON
    if lib is None:
        return None
    try:
        out: bytes = lib.dumps(value, default=_not_native, option=_ORJSON_OPTS)
    except TypeError:  # a type for the standard encoder, an int over 64 bits, a non-str key
        return None
    if b"0.0000" in out or (b"e-" in out and _SHORT_EXPONENT.search(out)):
        return None  # a float that orjson formats differently
    # What orjson encodes natively but the standard encoder refuses or writes otherwise (a
    # UUID, a plain Enum, NaN, which orjson writes as null) does not decode back to itself.
    if lib.loads(out) != value:
        return None
    return out


def json_loads(data: bytes | str) -> Any:
    """``json.loads(data)``, through orjson when it decodes ``data`` to the same value."""
    lib = ORJSON
    if lib is not None:
        raw = data.encode() if isinstance(data, str) else data
        if not _LONG_INT.search(raw):
            try:
                return lib.loads(raw)
            except ValueError:  # NaN, Infinity, lone surrogates, very deep: json.loads decides
                pass
    return json.loads(data)


class Serializer(Protocol):
    name: str

    def dumps(self, value: Any) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...


def encode_extra(value: Any) -> Any:
    """The text a ``datetime``, ``date``, ``UUID`` or ``Decimal`` travels as; anything else
    JSON cannot carry is refused with :class:`SerializationError` (the JSON encoder's
    ``default``)."""
    if isinstance(value, (datetime, date)):  # (a datetime is a date)
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    raise SerializationError(
        f"{type(value).__name__} cannot be carried as JSON; pass ids or plain data")


_ASCII_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False,
                                  default=encode_extra).encode


def compact_json(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"), allow_nan=False, default=encode_extra)``
    (ASCII), faster with orjson; raises as it does for what JSON cannot carry."""
    out = _orjson_dumps(value)
    # (The standard encoder's ASCII mode also escapes DEL, 0x7f, which orjson writes as is.)
    if out is not None and out.isascii() and b"\x7f" not in out:
        return out.decode()
    return _ASCII_COMPACT(value)


#: Types :func:`decode_typed` turns the text of :func:`encode_extra` back into, and how.
TYPED: dict[type, Callable[[str], Any]] = {
    datetime: datetime.fromisoformat,
    date: date.fromisoformat,
    uuid.UUID: uuid.UUID,
    Decimal: Decimal,
}


def typed_kind(annotation: Any) -> type | None:
    """The type of :data:`TYPED` a parameter annotated ``annotation`` asks for: ``datetime``,
    ``date``, ``UUID``, ``Decimal``, or one of them ``| None`` (``Optional``); None for any
    other annotation (its value is passed as it arrived)."""
    if isinstance(annotation, type) and annotation in TYPED:
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(kinds) == 1 and kinds[0] in TYPED:
            return kinds[0]  # type: ignore[no-any-return]
    return None


def decode_typed(value: Any, kind: type) -> Any:
    """``value`` as a ``kind`` when it is text (None, and values of other types, pass through
    as they are); a malformed text raises ``ValueError`` naming the type."""
    if not isinstance(value, str):
        return value
    try:
        return TYPED[kind](value)
    except (ValueError, ArithmeticError) as exc:  # decimal.InvalidOperation is ArithmeticError
        raise ValueError(f"{value!r} is not a valid {kind.__name__}: "
                         f"{type(exc).__name__}") from None


class JSONSerializer:
    name = "json"

    def __init__(self) -> None:
        # One encoder for every call: json.dumps with options builds a new one each time,
        # which is a third of the cost of encoding a small message.
        self._encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                                        allow_nan=False, default=encode_extra).encode

    def dumps(self, value: Any) -> bytes:
        fast = _orjson_dumps(value)
        if fast is not None:
            return fast
        # Refuse at enqueue time what JSON cannot carry (sets, bytes, objects, NaN) so the
        # error reaches the producer, not a worker minutes later.
        try:
            return self._encode(value).encode()
        except (TypeError, ValueError) as exc:
            if isinstance(exc, SerializationError):
                raise
            raise SerializationError(str(exc)) from exc
        except RecursionError:  # far deeper than any message may be: the same refusal
            raise MessageTooDeep(f"message nests values more than {MAX_DEPTH} levels deep "
                                 f"(the limit, MAX_DEPTH={MAX_DEPTH})") from None

    def loads(self, data: bytes) -> Any:
        return json_loads(data)


class MsgpackSerializer:
    name = "msgpack"

    def __init__(self) -> None:
        import msgpack

        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        try:
            return bytes(self._msgpack.packb(value, use_bin_type=True, default=encode_extra))
        except (TypeError, ValueError) as exc:
            raise SerializationError(str(exc)) from exc

    def loads(self, data: bytes) -> Any:
        return self._msgpack.unpackb(data, raw=False)


#: ``encode(job_id, args, kwargs, enqueued_at) -> bytes``: a first attempt's message.
JobEncoder = Callable[[str, Sequence[Any], dict[str, Any], float], bytes]


def job_encoder(json_serializer: Serializer, task_name: str, queue: str) -> JobEncoder:
    """The JSON messages of first attempts of ``task_name`` on ``queue``, byte for byte what
    ``json_serializer.dumps(Envelope(...).to_dict())`` gives (same keys, same order), with the
    fields every such job shares encoded once: only the id, the arguments and the time are
    encoded per job, a third of the cost on the producers' hot path (``delay``, ``map``)."""
    dumps = json_serializer.dumps
    # "id" first: reserve.lua finds it by a pattern anchored at the start.
    head = b'{"id":"'
    middle = b'","task":' + dumps(task_name)
    tail = b',"queue":' + dumps(queue) + b',"attempt":1,"enqueued_at":'

    def encode(jid: str, args: Sequence[Any], kwargs: dict[str, Any], at: float) -> bytes:
        # Empty args and kwargs are left out, as Envelope.to_dict does.
        a = b',"args":' + dumps(list(args)) if args else b""
        k = b',"kwargs":' + dumps(kwargs) if kwargs else b""
        # repr(float) is what the JSON encoder writes for a float.
        return b"".join((head, jid.encode(), middle, a, k, tail, repr(float(at)).encode(),
                         b"}"))
    return encode


def get(name: str) -> Serializer:
    if name == "json":
        return JSONSerializer()
    if name == "msgpack":
        return MsgpackSerializer()
    raise ValueError(f"unknown serializer {name!r} (json or msgpack)")
