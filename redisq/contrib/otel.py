"""OpenTelemetry tracing of jobs, from ``delay()`` to the task body (the ``otel`` extra).

>>> app.add_middleware(OpenTelemetryMiddleware())

* The producer opens a ``PRODUCER`` span ``send <queue>`` around each enqueue and injects its
  context into the job's headers with the configured propagator (W3C ``traceparent`` by
  default), so the context travels in the message.
* The worker extracts it and opens a ``CONSUMER`` span ``process <queue>`` as its child around
  each attempt; the span is current while the task runs, so spans the task opens are its
  children: one trace from the caller's request to the work it caused.
* Attributes follow the messaging semantic conventions: ``messaging.system`` ("redisq"),
  ``messaging.operation.type``/``messaging.operation.name`` (and the older
  ``messaging.operation``), ``messaging.destination.name`` (the queue),
  ``messaging.message.id`` (the job id), plus ``redisq.task``, ``redisq.attempt`` and
  ``redisq.outcome``. A failed attempt records its exception and sets the ERROR status.

Install the same middleware in producers and workers (one App object usually serves both).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..model import SUCCEEDED, Envelope

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator

    from ..job import Job, JobContext
    from ..model import Outcome

log = logging.getLogger("redisq.contrib.otel")

SYSTEM = "redisq"
#: Producer spans waiting for their ``after_enqueue`` longer than this (their enqueue failed,
#: so never reached it) are ended as errors rather than kept for ever; and at most this many
#: wait (a ``map`` of many jobs opens all its spans before it sends them).
PENDING_TIMEOUT_S = 300.0
MAX_PENDING = 1_000_000


class OpenTelemetryMiddleware:
    """Traces enqueues and attempts (see the module's docstring). ``tracer_provider``: the
    provider to use (default: the global one); ``propagator``: how the context is written
    into and read from headers (default: the global one, W3C trace context and baggage)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None,
                 propagator: TextMapPropagator | None = None) -> None:
        self.tracer = trace.get_tracer("redisq", tracer_provider=tracer_provider)
        self.propagator = propagator
        self._pending: OrderedDict[str, tuple[trace.Span, float]] = OrderedDict()
        self._lock = threading.Lock()
        # The attempt running in this context: (job id, its span, the token to detach).
        self._active: contextvars.ContextVar[tuple[str, trace.Span, object] | None] = \
            contextvars.ContextVar("redisq_otel_attempt", default=None)

    # -- producer ----------------------------------------------------------------------------
    def before_enqueue(self, envelope: Envelope) -> Envelope:
        span = self.tracer.start_span(f"send {envelope.queue}", kind=SpanKind.PRODUCER,
                                      attributes=_attributes(envelope.queue, envelope.id,
                                                             envelope.task, "send"))
        headers = dict(envelope.headers)
        (self.propagator or propagate.get_global_textmap()).inject(
            headers, context=trace.set_span_in_context(span))
        now = time.monotonic()
        with self._lock:
            self._pending[envelope.id] = (span, now)
            # Oldest first (insertion order): only the spans that are over are looked at.
            while True:
                job_id, (stale, since) = next(iter(self._pending.items()))
                if now - since < PENDING_TIMEOUT_S and len(self._pending) <= MAX_PENDING:
                    break
                del self._pending[job_id]
                stale.set_status(Status(StatusCode.ERROR, "the enqueue did not complete"))
                stale.end()
        return replace(envelope, headers=headers)

    def after_enqueue(self, job: Job[Any]) -> None:
        with self._lock:
            pending = self._pending.pop(job.id, None)
        if pending is not None:
            if not job.created:
                pending[0].set_attribute("redisq.duplicate", True)
            pending[0].end()

    # -- worker ------------------------------------------------------------------------------
    def before_execute(self, job: JobContext) -> None:
        try:
            parent = (self.propagator or propagate.get_global_textmap()).extract(job.headers)
        except Exception:  # headers are the producer's: a bad one must not fail the job
            log.warning("job=%s: no trace context from its headers", job.id, exc_info=True)
            parent = None
        attributes = _attributes(job.queue, job.id, job.task, "process")
        attributes["redisq.attempt"] = job.attempt
        span = self.tracer.start_span(f"process {job.queue}", context=parent,
                                      kind=SpanKind.CONSUMER, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        self._active.set((job.id, span, token))

    def after_execute(self, job: JobContext, outcome: Outcome) -> None:
        active = self._active.get()
        if active is None or active[0] != job.id:
            return  # our before_execute did not run for this attempt (an earlier one failed)
        self._active.set(None)
        _, span, token = active
        span.set_attribute("redisq.outcome", outcome.status)
        if outcome.status != SUCCEEDED:
            if outcome.exception is not None:
                span.record_exception(outcome.exception)
            span.set_status(Status(StatusCode.ERROR,
                                   f"{outcome.error_type}: {outcome.error_message}"[:500]))
        span.end()
        otel_context.detach(token)  # type: ignore[arg-type]


def _attributes(queue: str, job_id: str, task: str, operation: str) -> dict[str, Any]:
    return {"messaging.system": SYSTEM, "messaging.operation.type": operation,
            "messaging.operation.name": operation,
            "messaging.operation": "publish" if operation == "send" else operation,
            "messaging.destination.name": queue, "messaging.message.id": job_id,
            "redisq.task": task}


__all__ = ["OpenTelemetryMiddleware"]
