"""The write routes' request bodies: read (size-capped, straight from the server's input),
parsed as strict JSON once per request, checked field by field, and answered with a small JSON
encode; every refusal is a :class:`BadRequest` (400/415) naming the problem."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from redisq.backend import keys

from .http import state
from .security import is_json

_KIND_NAMES = {str: "a string", list: "a list", dict: "an object", int: "a number",
               float: "a number", bool: "a boolean"}

Kind = type | tuple[type, ...]


class BadRequest(Exception):
    """A rejected request: ``status`` (400/415) and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json.loads would accept NaN and Infinity


# Made once: json.loads and json.dumps build a new decoder or encoder at every call that passes
# an option (a third of the body's parse time on the write routes). Both are stateless.
_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_encode = json.JSONEncoder(separators=(",", ":")).encode


def _loads(raw: bytes) -> Any:
    """``json.loads(raw, parse_constant=_no_constants)``, the same way: UTF-8, -16 or -32."""
    return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))


def json_body(required: dict[str, Kind], optional: dict[str, Kind]) -> dict[str, Any]:
    """The request's JSON object, checked field by field (415 / 400 with the field named)."""
    environ = request.environ
    if not is_json(environ.get("CONTENT_TYPE", "")):
        raise BadRequest(415, "Content-Type must be application/json")
    try:
        body = _loads(_read_body(environ))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "body must be a JSON object")
    for name in required:
        if name not in body:
            raise BadRequest(400, f"missing field {name!r}")
    for name, value in body.items():
        kind = required.get(name) or optional.get(name)
        if kind is None:
            raise BadRequest(400, f"unknown field {name!r} (expected: "
                                  f"{', '.join([*required, *optional])})")
        if value is None and name in optional:
            continue
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            raise BadRequest(400, f"field {name!r} must be {_kind_name(kind)}")
    return body


def _read_body(environ: dict[str, Any]) -> bytes:
    """The body, at most ``web_max_body_bytes`` (413 beyond). It is read straight from the
    server's input: the hot routes skip werkzeug's stream wrappers, which cost more than the
    JSON parse (and would silently truncate an oversized chunked body)."""
    limit = state().settings.web_max_body_bytes
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        size = int(length)
        if size > limit:
            raise RequestEntityTooLarge()
        return environ["wsgi.input"].read(size) if size else b""
    if not environ.get("wsgi.input_terminated"):
        # No length and no chunked framing the server decodes: an HTTP request without a
        # body (werkzeug's safe fallback reads the same: nothing).
        return b""
    chunks, total = [], 0
    while total <= limit:  # chunked: read until the end, or until one byte past the limit
        chunk = environ["wsgi.input"].read(limit + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise RequestEntityTooLarge()
    return b"".join(chunks)


def _json(data: dict[str, Any], status: int) -> Response:
    """A JSON response without jsonify's per-call machinery (the write routes are hot)."""
    return Response(_encode(data), status, content_type="application/json")


def _tuple(kind: Kind) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: Kind) -> str:
    return " or ".join(dict.fromkeys(_KIND_NAMES.get(k, k.__name__) for k in _tuple(kind)))


def _name(value: str, what: str) -> str:
    try:
        return keys.check_name(value, what)
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from None
