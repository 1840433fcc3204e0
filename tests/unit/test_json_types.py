"""datetime, date, UUID and Decimal: encoded as text (byte-stable), received as that text, or as
the typed value again when the task annotates the parameter (decoded before it runs, by the
execute step the worker and eager mode share)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any, Optional

import pytest

from redisq import App, JobContext
from redisq.execution import execute
from redisq.model import Envelope
from redisq.serializers import get


@pytest.fixture
def app() -> App:
    return App("redis://127.0.0.1:1/0")  # never connected: nothing here needs Redis

WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
DAY = dt.date(2024, 2, 29)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
PRICE = Decimal("19.990")  # trailing zero kept: str(), not float


def test_encoded_as_iso_text_and_str() -> None:
    dumps = get("json").dumps
    assert dumps([WHEN, DAY, ID, PRICE, dt.datetime(2024, 1, 1)]) == (
        b'["2024-05-06T07:08:09.123456+02:00","2024-02-29",'
        b'"12345678-1234-5678-1234-567812345678","19.990","2024-01-01T00:00:00"]')
    # Byte-stable: equal values, equal bytes (unique keys and job ids built from them hold).
    assert dumps({"at": WHEN}) == dumps({"at": WHEN.replace()}) == dumps({"at": WHEN})


def test_a_job_message_carries_them(app: App) -> None:
    @app.task(name="t.typed")
    def typed(when: dt.datetime, on: dt.date | None = None) -> None: ...

    body = json.loads(app.prepare("t.typed", [WHEN], {"on": DAY}, None, None).message)
    assert body["args"] == ["2024-05-06T07:08:09.123456+02:00"]
    assert body["kwargs"] == {"on": "2024-02-29"}


def run(app: App, name: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
    """What a worker does with a message carrying ``args``: decode its JSON, execute."""
    env = Envelope.from_dict(json.loads(app.prepare(name, args, kwargs, None, None).message))
    ctx = JobContext(env.id, env.task, env.queue, env.attempt)
    return execute(app.tasks[name], env, ctx, app.hooks)


def test_annotated_parameters_arrive_typed_others_as_text(app: App) -> None:
    seen: dict[str, Any] = {}

    @app.task(name="t.all")
    def everything(when: dt.datetime, day: dt.date, key: uuid.UUID, price: Decimal,
                   maybe: Optional[dt.date] = None,  # noqa: UP045 (Optional is supported too)
                   other: dt.datetime | None = None, raw: Any = None, *more: uuid.UUID,
                   **named: Decimal) -> None:
        seen.update(when=when, day=day, key=key, price=price, maybe=maybe, other=other,
                    raw=raw, more=more, named=named)

    outcome = run(app, "t.all", [WHEN, DAY, ID, PRICE, DAY, None, WHEN, ID],
                  {"tip": Decimal("0.10")})
    assert outcome.status == "succeeded", outcome.traceback
    assert seen == {"when": WHEN, "day": DAY, "key": ID, "price": PRICE, "maybe": DAY,
                    "other": None, "raw": WHEN.isoformat(), "more": (ID,),
                    "named": {"tip": Decimal("0.10")}}
    assert str(seen["price"]) == "19.990" and seen["when"].utcoffset() == dt.timedelta(hours=2)


def test_typed_keyword_arguments(app: App) -> None:
    seen: list[Any] = []

    @app.task(name="t.kw")
    def kw(*, when: dt.datetime, note: str = "") -> None:
        seen.append((when, note))

    assert run(app, "t.kw", [], {"when": WHEN, "note": "2024-01-01"}).status == "succeeded"
    assert seen == [(WHEN, "2024-01-01")]  # a str parameter keeps its text


def test_text_that_is_no_such_value_fails_the_attempt(app: App) -> None:
    @app.task(name="t.day", retries=0)
    def on(day: dt.date) -> None: ...

    outcome = run(app, "t.day", ["not a date"])
    assert outcome.status == "dead" and outcome.error_type == "ValueError"
    assert "'not a date' is not a valid date" in outcome.error_message


def test_results_carry_them_too_and_eager_mode_decodes_the_same() -> None:
    eager = App("redis://127.0.0.1:1/0", eager=True)

    @eager.task
    def shift(day: dt.date, price: Decimal) -> list[Any]:
        return [day + dt.timedelta(days=1), price * 2, type(day).__name__]

    assert shift.delay(DAY, PRICE).result() == ["2024-03-01", "39.980", "date"]
