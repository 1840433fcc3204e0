"""Sentry on a real server and worker, with a transport that records events (the real SDK, no
network): failures are reported with the job's id, task, attempt and the producer's headers
as tags; what the task itself reports carries them too; a deliberate Retry is not an error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from redisq import App, JobFailed, Retry, current_job
from redisq.contrib.sentry import SentryMiddleware
from tests.support.inproc import running
from tests.support.wait import wait_until


class RecordingTransport(Transport):
    """Keeps every event instead of sending it."""

    events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            RecordingTransport.events.append(event)


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    RecordingTransport.events = []
    # No default integrations: they patch threading and logging for the whole test process.
    sentry_sdk.init(dsn="https://public@sentry.invalid/1", transport=RecordingTransport,
                    default_integrations=False, auto_enabling_integrations=False)
    yield RecordingTransport.events
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def test_failures_are_reported_with_job_tags_and_headers(app: App,
                                                         events: list[dict[str, Any]]) -> None:
    app.add_middleware(SentryMiddleware())

    @app.task(name="t.charge", retries=1, retry_backoff_s=0.01)
    def charge(order: int) -> None:
        raise ValueError(f"card declined for {order}")

    @app.task(name="t.fine")
    def fine() -> int:
        return 1

    job = charge.options(headers={"request_id": "req-7", "user": 42}).delay(7)
    ok = fine.delay()
    with running(app):
        assert ok.result(5) == 1
        with pytest.raises(JobFailed):
            job.result(5)
    wait_until(lambda: len(events) == 2, what="two events")
    for attempt, (event, outcome) in enumerate(zip(events, ("retrying", "dead"),
                                                   strict=True), 1):
        assert event["tags"] == {"redisq.job_id": job.id, "redisq.task": "t.charge",
                                 "redisq.queue": "default", "redisq.attempt": str(attempt),
                                 "header.request_id": "req-7", "header.user": "42",
                                 "redisq.outcome": outcome}
        exc = event["exception"]["values"][-1]
        assert exc["type"] == "ValueError" and exc["value"] == "card declined for 7"
        assert exc["stacktrace"]["frames"][-1]["function"] == "charge"
        assert event["contexts"]["redisq"]["headers"] == {"request_id": "req-7", "user": 42}


def test_only_final_failures_and_what_the_task_reports(app: App,
                                                      events: list[dict[str, Any]]) -> None:
    app.add_middleware(SentryMiddleware(report_retries=False))
    tries: list[int] = []

    @app.task(name="t.flaky", retries=2, retry_backoff_s=0.01)
    def flaky() -> str:
        tries.append(current_job().attempt)
        if len(tries) == 1:
            raise Retry(delay_s=0.01)  # deliberate: never an error event
        if len(tries) == 2:
            raise ConnectionError("transient")  # a retry: not reported with report_retries=False
        sentry_sdk.capture_message("third time lucky")
        return "ok"

    job = flaky.delay()
    with running(app):
        assert job.result(5) == "ok"
    wait_until(lambda: events, what="the task's message")
    assert len(events) == 1 and events[0]["message"] == "third time lucky"
    assert events[0]["tags"]["redisq.job_id"] == job.id
    assert events[0]["tags"]["redisq.attempt"] == "3"
