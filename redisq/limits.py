"""Message limits: how large and how deeply nested a message may be.

Producers refuse a message beyond the limits with a clear error (:class:`MessageTooLarge`,
:class:`MessageTooDeep`); workers dead-letter one that reaches them anyway (written to Redis by
something else) without parsing it, so no message can make a worker run out of stack or memory.

The depth check must not cost the producers' hot path a second walk of every message in
Python: a JSON message with at most ``limit`` opening brackets cannot be nested deeper than
``limit``, and ``bytes.count`` answers that at memory speed. Only a message with more brackets
gets the real measure (:func:`json_depth_exceeds`), whose loops also run in C.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from .errors import SerializationError

#: Deepest nesting of a value a message carries: one job argument, a keyword argument's
#: value, or a published message. ``[[1]]`` is 2 deep, ``1`` is 0.
MAX_DEPTH = 64
#: A job message wraps its arguments in two levels: the envelope object and ``args``/``kwargs``.
JOB_WRAPPING = 2
#: Default largest encoded message, in bytes (``max_message_bytes``).
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
#: Largest a job's headers may be, as compact JSON: they are metadata (a request id, a trace
#: context), copied into the job's record, and must not turn every record into a blob.
MAX_HEADERS_BYTES = 4096

# What is left of JSON text once strings are gone: brackets, all made square (a level is a
# level; text where they do not match is no JSON and fails to parse anyway).
_TO_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_SHAPE = bytes(b for b in range(256) if b not in b'[]{}"')


class MessageTooLarge(SerializationError, ValueError):
    """An encoded message is larger than ``max_message_bytes``."""


class MessageTooDeep(SerializationError, ValueError):
    """A message nests values deeper than :data:`MAX_DEPTH` levels."""


class HeadersTooLarge(SerializationError, ValueError):
    """A job's headers are larger than :data:`MAX_HEADERS_BYTES` as JSON."""


def headers_json(headers: dict[str, Any]) -> str:
    """``headers`` as compact JSON (what the job record keeps), if they are a JSON object of
    at most :data:`MAX_HEADERS_BYTES`; else :class:`HeadersTooLarge`, or ``TypeError`` /
    :class:`SerializationError` for what is not a JSON object with string keys."""
    if not isinstance(headers, dict) or not all(isinstance(k, str) for k in headers):
        raise TypeError("headers must be a dict with string keys")
    try:
        text = json.dumps(headers, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"headers must be plain JSON: {exc}") from None
    except RecursionError:
        raise HeadersTooLarge("headers nest too deep") from None
    size = len(text.encode())
    if size > MAX_HEADERS_BYTES:
        raise HeadersTooLarge(f"headers of {size:,} bytes (as JSON) are larger than "
                              f"MAX_HEADERS_BYTES={MAX_HEADERS_BYTES:,}")
    return text


def json_depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether the JSON text ``data`` nests arrays/objects more than ``limit`` deep. Cheap when
    it has at most ``limit`` brackets; otherwise at most ``limit`` passes of C-speed
    substitutions (a 1 MiB message: milliseconds). Text that is not JSON may pass; it fails to
    parse then."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    if b"\\" in data:  # escaped backslashes first: in \\" the quote ends the string
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = data.translate(None, _NOT_SHAPE)  # brackets and quotes only
    # Two quotes in a row are an empty string, or the end of one and the start of the next
    # with no bracket between them (removing them merges the two): either way no bracket
    # outside a string goes, and usually no quote is left.
    shape = shape.replace(b'""', b"")
    if b'"' in shape:  # strings with brackets inside: every other piece is outside them
        shape = b"".join(shape.split(b'"')[::2])
    brackets = shape.translate(_TO_SQUARE)
    if b"[" * (limit + 1) in brackets:  # the usual attack, [[[[...: no passes needed
        return True
    # One replace removes exactly one level (it scans the text it was given, so an empty
    # pair it uncovers waits for the next pass); what is left after ``limit`` passes is deeper.
    for _ in range(limit):
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):  # unbalanced: not JSON, the parser says why,
            return b"[" * (limit + 1) in brackets  # unless it would have to go too deep first
        brackets = shorter
    return bool(brackets)


def value_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether the Python value ``value`` nests lists/tuples/dicts more than ``limit`` deep
    (for serializers other than JSON; iterative, so a deep value cannot exhaust the stack)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


def check_message(data: bytes, max_bytes: int, depth_limit: int, serializer: str = "json",
                  value: Any = None, what: str = "message") -> bytes:
    """Return ``data`` if it is within the limits, else raise :class:`MessageTooLarge` or
    :class:`MessageTooDeep` naming the limit. ``depth_limit`` counts the whole message (a job:
    :data:`MAX_DEPTH` + :data:`JOB_WRAPPING`); ``value`` is what non-JSON ``data`` encodes."""
    if len(data) > max_bytes:
        raise MessageTooLarge(f"{what} of {len(data):,} bytes is larger than "
                              f"max_message_bytes={max_bytes:,}")
    if serializer == "json":
        deep = json_depth_exceeds(data, depth_limit)
    else:
        deep = value_depth_exceeds(value, depth_limit)
    if deep:
        raise MessageTooDeep(f"{what} nests values more than {MAX_DEPTH} levels deep "
                             f"(the limit, MAX_DEPTH={MAX_DEPTH})")
    return data


class Decoder(Protocol):
    """What :func:`decode` needs of a serializer (:class:`redisq.serializers.Serializer` is one;
    named here so this module, under the serializers, imports none of them)."""

    name: str

    def loads(self, data: bytes) -> Any: ...


def decode(serializer: Decoder, data: bytes, max_bytes: int, depth_limit: int) -> Any:
    """A stored message's value, checked before it is parsed: too large or too deep raise
    :class:`MessageTooLarge` / :class:`MessageTooDeep` without parsing it. Anything else the
    serializer raises (``ValueError``, ``UnicodeDecodeError``, ``RecursionError``,
    ``MemoryError``...) passes through: callers treat every exception as a poison message."""
    if len(data) > max_bytes:
        raise MessageTooLarge(f"message of {len(data):,} bytes is larger than "
                              f"max_message_bytes={max_bytes:,} (not parsed)")
    if serializer.name == "json" and json_depth_exceeds(data, depth_limit):
        raise MessageTooDeep(f"message nests values more than {MAX_DEPTH} levels deep "
                             "(not parsed)")
    value = serializer.loads(data)
    if serializer.name != "json" and value_depth_exceeds(value, depth_limit):
        raise MessageTooDeep(f"message nests values more than {MAX_DEPTH} levels deep")
    return value


def max_message_bytes(app_bytes: int, setting_bytes: int) -> int:
    """A worker's cap: the setting when it is set (not the default), else the App's own (so
    an ``App(max_message_bytes=...)`` is honoured by its workers too)."""
    return setting_bytes if setting_bytes != DEFAULT_MAX_MESSAGE_BYTES else app_bytes


def poison_reason(exc: BaseException) -> tuple[str, str]:
    """``(error_type, reason)`` for the dead letter of a message that could not be decoded:
    one line, bounded (an exception's text may quote the message)."""
    if isinstance(exc, (MessageTooLarge, MessageTooDeep, HeadersTooLarge)):
        error_type, text = type(exc).__name__, str(exc)
    else:
        error_type = "BadMessage"
        text = "malformed message: " + (str(exc) if isinstance(exc, ValueError)
                                        else f"{type(exc).__name__}: {exc}")
    text = " ".join(text.split())
    return error_type, text if len(text) <= 500 else text[:497] + "..."


__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "JOB_WRAPPING",
    "MAX_DEPTH",
    "MAX_HEADERS_BYTES",
    "Decoder",
    "HeadersTooLarge",
    "MessageTooDeep",
    "MessageTooLarge",
    "check_message",
    "decode",
    "headers_json",
    "json_depth_exceeds",
    "max_message_bytes",
    "poison_reason",
    "value_depth_exceeds",
]
