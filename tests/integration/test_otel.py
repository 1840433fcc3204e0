"""OpenTelemetry on a real server and worker, with the SDK's in-memory exporter: one trace from
the caller's span through ``delay()`` (PRODUCER span, context in the headers) to the worker's
CONSUMER span and a span the task body opens (its child); messaging attributes; errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from redisq import App, DuplicateJob, JobFailed, current_job
from redisq.contrib import otel
from redisq.contrib.otel import OpenTelemetryMiddleware
from redisq.worker.scheduler import Scheduler
from tests.support.inproc import running
from tests.support.wait import wait_until


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # not the global one: tests must not share a provider
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def test_one_trace_from_delay_to_the_task_body(
        app: App, traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = traced
    app.add_middleware(OpenTelemetryMiddleware(tracer_provider=provider))
    tracer = provider.get_tracer("test")

    @app.task(name="t.render", queue="reports")
    def render(n: int) -> str:
        with tracer.start_as_current_span("render body"):
            return current_job().headers["traceparent"]

    with tracer.start_as_current_span("http request"):
        job = render.delay(7)
    assert "traceparent" in job.headers  # the context travels in the message
    with running(app, queues="reports"):
        traceparent = job.result(5)
    spans = wait_until(lambda: exporter.get_finished_spans()
                       if len(exporter.get_finished_spans()) == 4 else None, what="4 spans")
    request, send = by_name(spans, "http request"), by_name(spans, "send reports")
    process, body = by_name(spans, "process reports"), by_name(spans, "render body")
    assert {s.context.trace_id for s in spans} == {request.context.trace_id}  # one trace
    assert send.parent is not None and send.parent.span_id == request.context.span_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert body.parent is not None and body.parent.span_id == process.context.span_id
    assert f"{send.context.span_id:016x}" in traceparent
    assert send.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert process.attributes is not None and send.attributes is not None
    assert dict(process.attributes) == {
        "messaging.system": "redisq", "messaging.operation.type": "process",
        "messaging.operation.name": "process", "messaging.operation": "process",
        "messaging.destination.name": "reports", "messaging.message.id": job.id,
        "redisq.task": "t.render", "redisq.attempt": 1, "redisq.outcome": "succeeded"}
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.message.id"] == job.id


def test_failed_attempts_are_error_spans_with_the_exception(
        app: App, traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = traced
    app.add_middleware(OpenTelemetryMiddleware(tracer_provider=provider))

    @app.task(name="t.boom", retries=1, retry_backoff_s=0.01)
    def boom() -> None:
        raise ValueError("kaput")

    job = boom.delay()  # no span around the call: the producer span starts the trace
    with running(app), pytest.raises(JobFailed):
        job.result(5)

    def attempts() -> list[ReadableSpan] | None:
        found = [s for s in exporter.get_finished_spans() if s.name == "process default"]
        return found if len(found) == 2 else None

    spans = wait_until(attempts, what="both attempts' spans")
    assert [s.attributes["redisq.outcome"] for s in spans] == ["retrying", "dead"]  # type: ignore[index]
    for span in spans:
        assert span.status.status_code == StatusCode.ERROR
        assert span.events[0].name == "exception"
        assert span.events[0].attributes["exception.type"] == "ValueError"  # type: ignore[index]
    send = by_name(exporter.get_finished_spans(), "send default")
    assert all(s.parent and s.parent.span_id == send.context.span_id for s in spans)


def test_periodic_jobs_are_traced_and_their_producer_spans_end(
        app: App, traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = traced
    middleware = OpenTelemetryMiddleware(tracer_provider=provider)
    app.add_middleware(middleware)

    @app.periodic(every_s=1, name="p.tick")
    def tick() -> str:
        return current_job().headers["traceparent"]

    assert exporter.get_finished_spans() == ()  # registering sent nothing: no span
    clock = [10_000.0]
    scheduler = Scheduler(app, lease_s=5, clock=lambda: clock[0])
    scheduler.tick()
    clock[0] += 1.5
    assert scheduler.tick() == ["periodic:p.tick:10001"]
    send = by_name(exporter.get_finished_spans(), "send default")
    assert middleware._pending == {}  # every producer span ended
    job = app.job("periodic:p.tick:10001")
    assert job is not None
    with running(app):
        assert f"{send.context.span_id:016x}" in job.result(5)


def test_a_malformed_trace_header_starts_a_new_trace_and_fails_nothing(
        app: App, traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = traced
    app.add_middleware(OpenTelemetryMiddleware(tracer_provider=provider))

    @app.task(name="t.ok")
    def ok() -> int:
        return 1

    producer = App(app.url)  # no middleware: the header is the caller's own
    try:
        jobs = [producer.enqueue("t.ok", options={"headers": {"traceparent": bad}})
                for bad in (5, "00-garbage", ["x"])]
        with running(app):
            assert [j.result(5) for j in jobs] == [1, 1, 1]
    finally:
        producer.close()
    spans = wait_until(lambda: [s for s in exporter.get_finished_spans()
                                if s.name == "process default"] or None, what="spans")
    assert all(s.parent is None for s in spans)


def test_map_ends_every_producer_span_once_queued(
        app: App, traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = traced
    middleware = OpenTelemetryMiddleware(tracer_provider=provider)
    app.add_middleware(middleware)

    @app.task(name="t.n")
    def n(x: int) -> int:
        return x

    jobs = n.map(range(1500))  # more spans than any small cap on pending ones
    sends = [s for s in exporter.get_finished_spans() if s.name == "send default"]
    assert len(sends) == 1500 and middleware._pending == {}
    assert all(s.status.status_code != StatusCode.ERROR for s in sends)
    assert {s.attributes["messaging.message.id"] for s in sends} == {j.id for j in jobs}  # type: ignore[index]


def test_a_producer_span_whose_enqueue_failed_is_ended_as_an_error(
        app: App, traced: tuple[TracerProvider, InMemorySpanExporter],
        monkeypatch: pytest.MonkeyPatch) -> None:
    provider, exporter = traced
    monkeypatch.setattr(otel, "PENDING_TIMEOUT_S", 0.05)
    app.add_middleware(OpenTelemetryMiddleware(tracer_provider=provider))

    @app.task(name="t.once", unique_by="key", on_duplicate="raise")
    def once(key: str) -> None: ...

    once.delay("k")
    with pytest.raises(DuplicateJob):
        once.delay("k")  # raised before after_enqueue: its span waits
    started = time.monotonic()
    wait_until(lambda: time.monotonic() - started > 0.1, what="the pending timeout")
    once.delay("other")  # the next enqueue ends what waited too long
    sends = [s for s in exporter.get_finished_spans() if s.name == "send default"]
    assert [s.status.status_code for s in sends] == [StatusCode.UNSET, StatusCode.ERROR,
                                                     StatusCode.UNSET]
