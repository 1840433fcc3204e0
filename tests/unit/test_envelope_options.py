"""The Envelope's ``headers`` and ``options``: left out of the message when empty (so plain
jobs are byte for byte what they were), carried when set, and validated by workers
(``from_dict``: a wrong message is a BadMessage, dead-lettered with that reason)."""

from __future__ import annotations

import json

import pytest

from redisq import App
from redisq.model import BadMessage, Envelope, check_options


def test_empty_headers_and_options_are_left_out() -> None:
    env = Envelope("j1", "t", [1], {}, "default")
    assert "headers" not in env.to_dict() and "options" not in env.to_dict()
    full = Envelope("j1", "t", [], {}, "q", headers={"r": "1"}, options={"retries": 0})
    out = full.to_dict()
    assert out["headers"] == {"r": "1"} and out["options"] == {"retries": 0}
    assert Envelope.from_dict(json.loads(json.dumps(out))) == full
    assert full.next_attempt().headers == {"r": "1"}  # retries keep them


def test_plain_delay_messages_are_unchanged_by_the_new_fields() -> None:
    app = App("redis://127.0.0.1:1/0")

    @app.task(name="t.add")
    def add(a: int, b: int) -> int:
        return a + b

    prepared = app.prepare("t.add", (1, 2), None, None, None)
    assert json.loads(prepared.message) == {**prepared.env.to_dict()}
    assert b"headers" not in prepared.message and b"options" not in prepared.message
    with_opts = app.prepare("t.add", (1, 2), None, None, None,
                            {"headers": {"r": "x"}, "expires_s": 10, "retries": 1})
    body = json.loads(with_opts.message)
    assert body["headers"] == {"r": "x"} and body["options"]["retries"] == 1
    assert body["options"]["expires_at"] == pytest.approx(body["enqueued_at"] + 10, abs=0.1)


@pytest.mark.parametrize(("data", "reason"), [
    ({"options": {"bogus": 1}}, "unknown job option 'bogus'"),
    ({"options": {"retries": 1.5}}, "'retries' must be int"),
    ({"options": {"timeout_s": -1}}, "'timeout_s' must be > 0"),
    ({"options": {"expires_at": float("nan")}}, "finite"),
    ({"options": []}, "'options' must be dict"),
    ({"headers": "x"}, "'headers' must be dict"),
])
def test_from_dict_refuses_bad_options_and_headers(data: dict, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        Envelope.from_dict({"id": "j", "task": "t", **data})


def test_check_options_accepts_the_known_ones() -> None:
    check_options({"retries": 0, "timeout_s": None, "result_ttl_s": 1.5, "expires_at": 1e9})
