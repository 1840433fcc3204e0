"""redisq.testing.run_until_idle: a real worker, in-process, until nothing is queued, waiting
to be retried, or running; on a real server and on fakeredis."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator

import pytest

from redisq import App, Retry, current_job
from redisq.testing import WorkerTimeout, fake_app, run_until_idle


@pytest.fixture(params=["real", "fake"])
def any_app(request: pytest.FixtureRequest) -> Iterator[App]:
    app = App(request.getfixturevalue("redis_url")) if request.param == "real" else fake_app()
    yield app
    app.close()


def test_runs_everything_and_counts(any_app: App) -> None:
    attempts: list[int] = []

    @any_app.task(name="t.add")
    def add(a: int, b: int) -> int:
        return a + b

    @any_app.task(name="t.flaky", retries=3, retry_backoff_s=60.0)
    def flaky() -> str:
        attempts.append(current_job().attempt)
        if len(attempts) == 1:
            raise Retry(delay_s=3600)
        if len(attempts) == 2:
            raise ConnectionError("again")
        return "ok"

    @any_app.task(name="t.broken", queue="other", retries=1, retry_backoff_s=60.0)
    def broken() -> None:
        raise ValueError("no")

    jobs = [add.delay(1, 2), flaky.delay(), broken.delay()]
    started = time.monotonic()
    counts = run_until_idle(any_app, timeout_s=8)
    assert time.monotonic() - started < 5  # an hour and minutes of retry delays skipped
    assert counts == {"succeeded": 2, "failed": 0, "retried": 3, "dead": 1,
                      "skipped_delays": 3}
    assert [j.status for j in jobs] == ["succeeded", "succeeded", "dead"]
    assert jobs[0].result() == 3 and attempts == [1, 2, 3]
    assert run_until_idle(any_app)["succeeded"] == 0  # idle: returns at once


def test_only_the_given_queues_and_not_the_producers_delays(any_app: App) -> None:
    @any_app.task(name="t.one")
    def one(n: int) -> int:
        return n

    here = one.delay(1)
    elsewhere = one.enqueue(args=(2,), queue="elsewhere")
    later = one.enqueue(args=(3,), delay_s=3600)
    assert run_until_idle(any_app, queues=["default"])["succeeded"] == 1
    assert here.status == "succeeded"
    assert elsewhere.status == "queued" and later.status == "queued"


def test_without_fast_forward_it_waits_out_the_retry(any_app: App) -> None:
    @any_app.task(name="t.later", retries=1)
    def later() -> str:
        if current_job().attempt == 1:
            raise Retry(delay_s=0.6)
        return "ok"

    job = later.delay()
    started = time.monotonic()
    counts = run_until_idle(any_app, fast_forward=False)
    assert time.monotonic() - started >= 0.55
    assert counts["skipped_delays"] == 0 and job.result() == "ok"


def test_timeout_raises_with_what_was_done(any_app: App) -> None:
    @any_app.task(name="t.slow", retries=0)
    def slow() -> None:
        time.sleep(1.5)

    slow.delay()
    with pytest.raises(WorkerTimeout, match="still had work") as err:
        run_until_idle(any_app, timeout_s=0.3)
    assert err.value.counts["succeeded"] == 0


def test_gives_the_process_its_signal_handlers_back(any_app: App) -> None:
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM),
              sys.getswitchinterval())
    run_until_idle(any_app)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM),
            sys.getswitchinterval()) == before


def test_refuses_an_eager_app() -> None:
    with pytest.raises(ValueError, match="eager"):
        run_until_idle(App("redis://127.0.0.1:1/0", eager=True))
