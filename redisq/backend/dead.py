"""Dead letters: the JSON entry a dead-letter list keeps for a message that will not run, and
the way back to the message (``requeue_dead``, the dashboard, ``redisq dead``).

An entry says why and when, and keeps the message byte for byte (text when it is UTF-8 and not
too large, else base64), so a dead job can be inspected and run again; poison over the size cap
keeps only its head and digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

from .. import limits


def dead_entry(body: bytes, error_type: str, error_message: str, job_id: str = "",
               task: str = "", keep_bytes: int | None = None) -> bytes:
    """The JSON stored in a dead-letter list: why, when, and the original message, byte for
    byte (:func:`dead_message` gives it back): as text in ``message`` when it is UTF-8 and at
    most :data:`DEAD_TEXT_MAX` bytes, else base64 in ``message_b64``; ``message_bytes`` is its
    size. A message over ``keep_bytes`` (the size cap: it can never run) keeps only its first
    :data:`DEAD_HEAD_BYTES` (enough to tell who sent it) and its SHA-256, with
    ``message_truncated``: a flood of huge poison must not pin ``dead_max`` copies of itself."""
    fields: dict[str, Any] = {"job_id": job_id, "task": task, "error_type": error_type,
                              "reason": error_message, "failed_at": round(time.time(), 3),
                              "message_bytes": len(body)}
    if keep_bytes is not None and len(body) > keep_bytes:
        fields.update(message_truncated=True, message_sha256=hashlib.sha256(body).hexdigest())
        body = body[:DEAD_HEAD_BYTES]
    head = json.dumps(fields).encode()
    if len(body) <= DEAD_TEXT_MAX:
        try:
            return head[:-1] + b', "message": ' + json.dumps(body.decode()).encode() + b"}"
        except UnicodeDecodeError:
            pass
    return b"".join((head[:-1], b', "message_b64": "', base64.b64encode(body), b'"}'))


#: Largest message a dead-letter entry keeps as text (larger ones: base64).
DEAD_TEXT_MAX = limits.DEFAULT_MAX_MESSAGE_BYTES
#: What a dead-letter entry keeps of a message over the size cap: its head.
DEAD_HEAD_BYTES = 4096


def dead_message(entry: dict[str, Any]) -> bytes:
    """The original message of a parsed :func:`dead_entry` (``KeyError``/``ValueError`` for an
    entry without one); only its head when the entry says ``message_truncated``."""
    if "message_b64" in entry:
        return base64.b64decode(entry["message_b64"], validate=True)
    message = entry["message"]
    if not isinstance(message, str):
        raise ValueError("a dead letter's message is text")
    return message.encode()


__all__ = ["DEAD_HEAD_BYTES", "DEAD_TEXT_MAX", "dead_entry", "dead_message"]
