"""Message encodings. JSON by default, msgpack when installed and asked for; never pickle, so
whoever can write to Redis can send data, not code.

Beyond JSON's own types, four common values are encoded as text (:func:`encode_extra`):
``datetime`` and ``date`` as ISO 8601 (``datetime.isoformat()``: an aware one keeps its offset),
``UUID`` and ``Decimal`` as ``str()`` (exact: no float rounding). The encoding is byte-stable
(the same value always gives the same bytes, so ``unique_by`` keys and job ids built from it
are stable). A task receives them as those strings, or as the typed value again when it
annotates the parameter with the type (:func:`decode_typed`, applied before the task runs).
"""

from __future__ import annotations

import json
import types
import typing
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from .errors import SerializationError
from .limits import MAX_DEPTH, MessageTooDeep


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
        return json.loads(data)


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
