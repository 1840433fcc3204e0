"""Unit tests of job control's pure parts (ctl): the weighted queue picker, rate and queue
weight parsing, and the gate/release steps on fakeredis."""

from __future__ import annotations

from collections import Counter

import pytest

from redisq.broker.weights import WeightedOrder
from redisq.config import queue_weights
from redisq.errors import ConfigError
from redisq.tasks import parse_rate


def test_weighted_order_is_five_to_one_and_interleaved() -> None:
    order = WeightedOrder(["high", "default"], [5, 1])
    firsts = [order.next()[0] for _ in range(600)]
    assert Counter(firsts) == {"high": 500, "default": 100}
    # Smooth: default is first once in every 6 picks, never after a run of more than 5 highs.
    assert firsts[:6].count("default") == 1
    assert max(len(run) for run in "".join(f[0] for f in firsts).split("d")) <= 5


def test_weighted_order_falls_through_and_starves_nothing() -> None:
    order = WeightedOrder(["a", "b", "c"], [10, 1, 1])
    picks = [order.next() for _ in range(12)]
    assert all(sorted(p) == ["a", "b", "c"] for p in picks)  # every queue tried each time
    assert {p[0] for p in picks} == {"a", "b", "c"}  # each one first within a round


def test_queue_weights_parse() -> None:
    assert queue_weights(("high:5", "default:1")) == (("high", "default"), (5, 1))
    assert queue_weights(("high", "default")) == (("high", "default"), None)
    with pytest.raises(ConfigError):
        queue_weights(("high:5", "default"))
    with pytest.raises(ConfigError):
        queue_weights(("a:1", "a:2"))


@pytest.mark.parametrize(("text", "expected"), [("100/m", (100, 60.0)), ("50/s", (50, 1.0)),
                                                ("1/h", (1, 3600.0))])
def test_parse_rate(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("bad", ["", "10", "0/s", "x/s", "10/d", "-1/m"])
def test_parse_rate_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(bad)


def test_task_options_are_checked_at_registration() -> None:
    from redisq import App

    app = App("redis://127.0.0.1:1/0")
    with pytest.raises(ValueError):
        app.task(rate_limit="lots")(lambda: None)
    with pytest.raises(ValueError):
        app.task(concurrency_limit=0)(lambda: None)
    t = app.task(name="ok", rate_limit="4/s", concurrency_limit=2)(lambda: None)
    assert t.options.limited and t.options.rate_interval_ms == 250.0


def test_pool_replaces_a_stuck_thread_which_ends_after_its_work() -> None:
    import threading

    from redisq.worker.pool import Pool

    pool = Pool(1, "t")
    stuck, release, ran = threading.Event(), threading.Event(), threading.Event()
    ident: list[int] = []

    def block() -> None:
        ident.append(threading.get_ident())
        stuck.set()
        release.wait(5)

    pool.submit(block)
    assert stuck.wait(2)
    pool.replace(ident[0])
    pool.submit(ran.set)  # the new thread takes it while the old one is still stuck
    assert ran.wait(2)
    release.set()
    old = next(t for t in threading.enumerate() if t.ident == ident[0])
    old.join(2)
    assert not old.is_alive()  # retired: it took no more work
    pool.close()
    assert pool.join(2)


def test_time_limiter_abort_stops_a_watched_loop_within_the_grace() -> None:
    import threading

    from redisq.execution import JobAborted, TimeLimiter

    now = [100.0]
    limiter = TimeLimiter(clock=lambda: now[0])
    caught: list[BaseException] = []
    inside = threading.Event()

    def job() -> None:
        limiter.watch(None)  # no time limit: abortable only
        try:
            inside.set()
            while True:
                pass
        except BaseException as exc:
            caught.append(exc)
        finally:
            limiter.unwatch()

    t = threading.Thread(target=job, daemon=True)
    t.start()
    assert inside.wait(2)
    assert limiter.abort(t.ident or 0, 0.05)
    assert limiter.enforce() == 0  # the grace is not over yet
    now[0] += 0.05
    assert limiter.enforce() == 1
    t.join(2)
    assert len(caught) == 1 and isinstance(caught[0], JobAborted)
    assert not limiter.abort(t.ident or 0, 0.0)  # nothing watched in that thread any more


def test_waker_promotes_each_queue_when_due_and_then_ends() -> None:
    import threading
    import time

    from redisq.worker.waker import Waker

    calls: list[tuple[str, float]] = []
    done = threading.Event()

    def promote(q: str) -> None:
        calls.append((q, time.monotonic()))
        if len(calls) == 2:
            done.set()

    waker = Waker(promote)
    t0 = time.monotonic()
    waker.at("b", 0.08)
    waker.at("a", 0.02)
    assert done.wait(2)
    assert [q for q, _ in calls] == ["a", "b"]  # soonest first, whatever the order asked
    assert calls[0][1] - t0 >= 0.02 and calls[1][1] - t0 >= 0.08
    deadline = time.monotonic() + 2
    while waker._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waker._thread is None and waker.pending() == 0  # nothing left: the thread ended
