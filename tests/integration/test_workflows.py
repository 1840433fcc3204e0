"""Workflows against a real server with an in-process worker: chain, group, chord and its
failure policies, depends_on, signatures built by name."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from redisq import App, JobFailed, Signature, chain, group
from redisq.backend import keys, workflows
from redisq.model import Outcome
from redisq.ops.cli import main
from tests.support.inproc import running
from tests.support.wait import wait_until


@pytest.fixture
def tasks(app: App) -> App:
    @app.task(name="w.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    @app.task(name="w.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="w.total")
    def total(values: list, extra: int = 0) -> int:
        return sum(v for v in values if isinstance(v, int)) + extra

    @app.task(name="w.echo")
    def echo(values: list) -> list:
        return values

    @app.task(name="w.boom", retries=0)
    def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    @app.task(name="w.other", queue="other")
    def other(x: int) -> int:
        return x + 100

    return app


def test_chain_passes_each_result_on(tasks: App) -> None:
    add, mul, other = tasks.tasks["w.add"], tasks.tasks["w.mul"], tasks.tasks["w.other"]
    c = chain(add.s(1, 2), mul.s(10), other.s()).delay()
    assert [s.status for s in c.steps] == ["queued", "deferred", "deferred"]
    with running(tasks, queues=["default", "other"]):
        assert c.result(5) == 130
    assert c.status == "succeeded"
    assert [s.id for s in c.steps] == [f"{c.id}-{i}" for i in range(3)]
    assert c.steps[2].queue == "other"


def test_chain_stops_at_a_failed_step_and_cancels_the_rest(tasks: App) -> None:
    add, boom, mul = tasks.tasks["w.add"], tasks.tasks["w.boom"], tasks.tasks["w.mul"]
    c = (add.s(1) | boom.s() | mul.s(2)).delay()
    with running(tasks), pytest.raises(JobFailed, match="boom 1"):
        c.result(5)
    last = c.steps[2].info()
    assert last["status"] == "cancelled" and last["error_type"] == "ChainStopped"
    assert "chain step 1" in last["error_message"]


def test_chain_refuses_steps_that_cannot_take_the_result(tasks: App) -> None:
    add, total = tasks.tasks["w.add"], tasks.tasks["w.total"]
    with pytest.raises(TypeError):
        chain(total.s([1]), add.s(1, 2)).delay()  # add(prev, 1, 2): too many arguments
    assert tasks.client.llen(keys.pending("default")) == 0


def test_group_results_in_member_order(tasks: App) -> None:
    mul = tasks.tasks["w.mul"]
    g = group(mul.s(i, 2) for i in range(20)).delay()
    assert len(g) == 20 and g.status == "queued"
    with running(tasks):
        assert g.results(5) == [i * 2 for i in range(20)]
    assert g.status == "succeeded"
    assert g.progress()["done"] == 20


def test_chord_callback_runs_once_with_every_result(tasks: App) -> None:
    add, total = tasks.tasks["w.add"], tasks.tasks["w.total"]
    g = group(add.s(i) for i in range(10)).then(total.s(extra=1000)).delay()
    assert g.callback is not None and g.callback.status == "deferred"
    with running(tasks):
        assert g.callback.result(5) == 45 + 1000
    assert tasks.client.hget(keys.stats("default"), "succeeded") == b"11"
    assert tasks.client.zcard(keys.wf_active("default")) == 0


def test_chord_callback_on_its_own_queue(tasks: App) -> None:
    add = tasks.tasks["w.add"]
    cb = tasks.signature("w.echo", queue="other")
    g = group(add.s(i) for i in range(3)).then(cb).delay()
    assert g.queue == "other"  # the group's state lives beside its callback
    with running(tasks, queues=["default", "other"]):
        assert g.callback is not None and g.callback.result(5) == [0, 1, 2]


@pytest.mark.parametrize(("policy", "expected"), [
    ("skip", [0, 2]),
    ("run", [0, {"status": "dead", "error_type": "ValueError", "error_message": "boom 1"}, 2]),
])
def test_chord_failure_policies_that_run(tasks: App, policy: str, expected: list) -> None:
    add, boom = tasks.tasks["w.add"], tasks.tasks["w.boom"]
    g = group([add.s(0), boom.s(1), add.s(2)]).then(tasks.tasks["w.echo"].s(),
                                                    on_failure=policy).delay()
    with running(tasks):
        assert g.callback is not None and g.callback.result(5) == expected
        with pytest.raises(JobFailed, match="boom 1"):
            g.results(5)
    assert g.status == "failed"


def test_chord_fail_policy_fails_the_callback_without_running_it(tasks: App) -> None:
    add, boom = tasks.tasks["w.add"], tasks.tasks["w.boom"]
    g = group([add.s(0), boom.s(1)]).then(tasks.tasks["w.echo"].s()).delay()
    with running(tasks):
        assert g.callback is not None
        with pytest.raises(JobFailed, match="1 of 2 group members failed"):
            g.callback.result(5)
    assert g.callback.info()["error_type"] == "GroupFailed"
    assert tasks.client.hget(keys.stats("default"), "succeeded") == b"1"


def test_empty_group_callback_gets_no_results(tasks: App) -> None:
    g = group([]).then(tasks.tasks["w.echo"].s()).delay(tasks)
    with running(tasks):
        assert g.callback is not None and g.callback.result(5) == []
    assert g.results() == [] and g.status == "succeeded"


def test_depends_on_runs_after_every_parent_succeeded(tasks: App) -> None:
    add = tasks.tasks["w.add"]
    a, b = add.delay(1), add.delay(2)
    report = add.enqueue(args=(7,), depends_on=[a, b])
    assert report.status == "deferred"
    with running(tasks):
        assert report.result(5) == 7
        assert a.status == b.status == "succeeded"
    wait_until(lambda: tasks.client.zcard(keys.wf_parents("default")) == 0, 3,
               what="the parents released")


def test_depends_on_a_failed_parent_cancels_with_the_reason(tasks: App) -> None:
    add, boom = tasks.tasks["w.add"], tasks.tasks["w.boom"]
    a, bad = add.delay(1), boom.delay(1)
    with running(tasks):
        assert a.result(5) == 1
        wait_until(lambda: bad.status == "failed" or bad.status == "dead", 5, what="the failure")
        later = add.enqueue(args=(3,), depends_on=[a, bad])  # a parent already over
        child = add.enqueue(args=(7,), depends_on=[bad])
        for job in (later, child):
            wait_until(lambda job=job: job.status == "cancelled", 5, what="the cancel")
            info = job.info()
            assert info["error_type"] == "DependencyFailed" and bad.id in info["error_message"]
    assert tasks.client.llen(keys.pending("default")) == 0


def test_depends_on_parent_already_succeeded_queues_at_once(tasks: App) -> None:
    add = tasks.tasks["w.add"]
    a = add.delay(5)
    with running(tasks):
        a.result(5)
        child = add.enqueue(args=(1,), depends_on=[a])
        assert child.status in ("queued", "started", "succeeded")  # no sweep needed
        assert child.result(5) == 1


def test_signatures_are_json_and_buildable_by_name(tasks: App) -> None:
    sig = tasks.tasks["w.add"].s(1, y=2)
    data = json.loads(json.dumps(sig.to_dict()))
    assert data == {"task": "w.add", "args": [1], "kwargs": {"y": 2}, "queue": "default"}
    again = Signature.from_dict(data, tasks)
    assert again == sig
    producer = App(tasks.url)  # knows no task at all
    c = chain(producer.signature("w.add", [2]), producer.signature("w.mul", [3])).delay()
    with running(tasks):
        assert c.result(5) == 6
    producer.close()
    with pytest.raises(ValueError):
        Signature.from_dict({"task": "", "args": []})
    with pytest.raises(ValueError, match="on_failure"):
        group([sig]).then(sig, on_failure="maybe")


def test_group_state_lives_under_one_hash_tag(tasks: App) -> None:
    g = group(tasks.tasks["w.add"].s(i) for i in range(3)).then(
        tasks.signature("w.echo", queue="other")).delay()
    state = workflows.group_state(tasks.client, "other", g.id)
    assert state["total"] == 3 and state["done"] == 0 and state["fired"] is None
    assert tasks.client.exists(keys.wf_state("other", g.id))
    assert all(k.startswith(b"redisq:{other}") for k in tasks.client.keys(f"*{g.id}*")
               if b":wf:" in k)


def test_info_and_snapshot_show_workflow_progress(tasks: App) -> None:
    add = tasks.tasks["w.add"]
    g = group(add.s(i) for i in range(4)).then(tasks.tasks["w.total"].s()).delay()
    tasks.records.scripts.run(*workflows.member_call(
        {"kind": "member", "id": g.id, "index": 0, "queue": "default",
         "callback": f"{g.id}-callback"}, Outcome("succeeded", 0, result_json="0"),
        "1.0"))
    add.enqueue(args=(1,), depends_on=[add.delay(1)])
    out = CliRunner().invoke(main, ["info"], env={"REDIS_URL": tasks.url})
    assert out.exit_code == 0, out.output
    assert "workflows: 1 group(s) in progress, 1 job(s) awaited" in out.stdout
    assert f"group {g.id} on default: 1/4 ended, then {g.id}-callback" in out.stdout
    snap = json.loads(CliRunner().invoke(main, ["info", "--json"],
                                         env={"REDIS_URL": tasks.url}).stdout)
    (shown,) = snap["workflows"]["groups"]
    assert shown["done"] == 1 and shown["total"] == 4 and shown["callback"] == f"{g.id}-callback"


def test_a_cancelled_member_counts_as_ended(tasks: App) -> None:
    add, echo = tasks.tasks["w.add"], tasks.tasks["w.echo"]
    g = group(add.s(i) for i in range(3)).then(echo.s(), on_failure="skip").delay()
    assert g.members[1].cancel()
    with running(tasks):
        assert g.callback is not None and g.callback.result(5) == [0, 2]
    c = chain(add.s(1), add.s(2)).delay()
    assert c.steps[0].cancel()
    assert c.steps[1].info()["error_type"] == "ChainStopped"


def test_cancelling_deferred_jobs(tasks: App) -> None:
    add, echo = tasks.tasks["w.add"], tasks.tasks["w.echo"]
    g = group(add.s(i) for i in range(2)).then(echo.s()).delay()
    c = chain(add.s(1), add.s(2), add.s(3)).delay()
    a = add.delay(1)
    child = add.enqueue(args=(2,), depends_on=[a])
    assert g.callback is not None and g.callback.cancel()
    assert c.steps[1].cancel() and child.cancel()
    assert not child.cancel()  # once
    with running(tasks):
        assert g.results(5) == [0, 1] and a.result(5) == 1
        wait_until(lambda: c.steps[2].status == "cancelled", 5, what="the chain to stop")
    assert c.steps[0].status == "succeeded"
    assert "was cancelled" in c.steps[2].info()["error_message"]
    for job in (g.callback, c.steps[1], child):
        assert job.status == "cancelled"
    assert tasks.client.llen(keys.pending("default")) == 0
    assert not tasks.client.exists(keys.wf_held("default", child.id))


def test_depends_on_an_unknown_job_cancels(tasks: App) -> None:
    from redisq import Job

    ghost = Job(tasks.records, "0" * 32, "default")
    child = tasks.tasks["w.add"].enqueue(args=(1,), depends_on=[ghost])
    assert child.status == "cancelled"  # at once: nothing to wait for
    assert "has no record" in child.info()["error_message"]
    with running(tasks):  # and the sweep, finding the parent registered, forgets it
        wait_until(lambda: not tasks.client.zcard(keys.wf_parents("default")), 5,
                   what="the parent forgotten")
    assert child.status == "cancelled"


def test_unique_tasks_are_refused_in_workflows(tasks: App) -> None:
    once = tasks.task(name="w.once", unique_by="x")(lambda x: x)
    add = tasks.tasks["w.add"]
    for wf in (group([add.s(1), once.s(2)]), chain(add.s(1), once.s()),
               group([add.s(1)]).then(once.s())):
        with pytest.raises(ValueError, match="unique task"):
            wf.delay()
    with pytest.raises(ValueError, match="unique task"):
        once.enqueue(args=(1,), depends_on=[add.delay(1)])
    assert tasks.client.llen(keys.pending("default")) == 1  # only the parent above


def test_settling_a_running_parent_releases_its_dependents_at_once(tasks: App) -> None:
    gate = threading.Event()
    slow = tasks.task(name="w.slow")(lambda: gate.wait(5))
    add = tasks.tasks["w.add"]
    parent = slow.delay()
    child = add.enqueue(args=(4,), depends_on=[parent])
    with running(tasks) as worker:
        wait_until(lambda: parent.id in worker._awaited.get("default", ()), 5,
                   what="a sweep to note the running parent")
        worker._sweep_parents = lambda q: 0  # from here on only the settle can release it
        gate.set()
        assert child.result(5) == 4


def test_depends_on_ids_chains_and_groups(tasks: App) -> None:
    add, mul = tasks.tasks["w.add"], tasks.tasks["w.mul"]
    a = add.delay(1)
    c = chain(add.s(1), mul.s(3)).delay()
    g = group(add.s(i) for i in range(3)).delay()
    child = add.enqueue(args=(9,), depends_on=[a.id, c, g])
    assert sorted(m.decode() for m in tasks.client.smembers(keys.wf_wait("default", child.id))) \
        == sorted(f"default|{j}" for j in [a.id, c.steps[-1].id, *(m.id for m in g.members)])
    with running(tasks):
        assert child.result(5) == 9
    with pytest.raises(ValueError, match="no job"):
        add.enqueue(args=(1,), depends_on=["f" * 32])
    with pytest.raises(TypeError, match="depends_on takes jobs"):
        add.enqueue(args=(1,), depends_on=[3])


def test_a_chain_ending_with_a_group_or_a_chord(tasks: App) -> None:
    add, mul, total = tasks.tasks["w.add"], tasks.tasks["w.mul"], tasks.tasks["w.total"]
    c = chain(add.s(1, 2), group([mul.s(2), mul.s(3)])).delay()  # mul(3, 2), mul(3, 3)
    d = (add.s(1) | group(add.s(i) for i in range(3)).then(total.s(extra=100))).delay()
    assert c.ending is not None and [m.status for m in c.ending.members] == ["deferred"] * 2
    assert d.ending is not None and d.ending.callback is not None
    assert d.ending.callback.status == "deferred"
    with running(tasks):
        assert c.result(5) == [6, 9]
        assert d.result(5) == (1 + 0) + (1 + 1) + (1 + 2) + 100
    assert c.status == d.status == "succeeded"
    assert chain(add.s(1), group([mul.s(2)])).to_dict()["chain"][-1] == {
        "group": [{"task": "w.mul", "args": [2], "queue": "default"}]}


def test_a_chain_stopped_before_its_group_cancels_members_and_callback(tasks: App) -> None:
    boom, add, echo = tasks.tasks["w.boom"], tasks.tasks["w.add"], tasks.tasks["w.echo"]
    c = chain(boom.s(1), group([add.s(1), add.s(2)]).then(echo.s())).delay()
    with running(tasks), pytest.raises(JobFailed, match="boom 1"):
        c.result(5)
    assert c.ending is not None and c.ending.callback is not None
    for job in (*c.ending.members, c.ending.callback):
        assert job.info()["error_type"] == "ChainStopped"


def test_a_chain_ending_group_is_created_once_when_its_step_runs_again(tasks: App) -> None:
    """The worker that finished the step before the group was lost after creating part of it:
    the step runs again and its calls complete the group without doubling anything."""
    spec = {"group": [{"task": "w.add", "args": [1], "queue": "default"}] * 3,
            "then": {"task": "w.echo", "queue": "other"}}
    calls = workflows.chain_group_calls("c9-1", 10, spec, tasks.serializer.dumps)
    tasks.records.scripts.run_many(calls[:2])  # the state and one member, then the loss
    workflows.run_end_calls(tasks.records.scripts, calls)  # the step's re-run
    assert tasks.client.llen(keys.pending("default")) == 3
    with running(tasks, queues=["default", "other"]):
        assert tasks.job("c9-1-callback", "other").result(5) == [11, 11, 11]
    with pytest.raises(ValueError, match="can only end a chain"):
        chain(tasks.tasks["w.add"].s(1), group([tasks.tasks["w.add"].s()]), add_sig(tasks))


def add_sig(tasks: App) -> Signature:
    return tasks.tasks["w.add"].s(1)


def test_a_deferred_member_cancelled_counts_for_its_group(tasks: App) -> None:
    add, echo = tasks.tasks["w.add"], tasks.tasks["w.echo"]
    c = chain(add.s(1), group([add.s(1), add.s(2)]).then(echo.s(), on_failure="skip")).delay()
    assert c.ending is not None and c.ending.members[0].cancel()
    with running(tasks):
        assert c.result(5) == [3]


def test_an_eager_app_refuses_workflows_clearly() -> None:
    from redisq import ConfigError

    app = App("redis://127.0.0.1:1/0", eager=True)
    add = app.task(name="w.add")(lambda x: x)
    for wf in (chain(add.s(1), add.s()), group([add.s(1)])):
        with pytest.raises(ConfigError, match="eager"):
            wf.delay()
    with pytest.raises(ConfigError, match="eager"):
        add.enqueue(args=(1,), depends_on=[add.delay(1)])


def test_producer_middleware_sees_group_members_and_chain_heads(tasks: App) -> None:
    from dataclasses import replace as dc_replace

    from redisq import Envelope

    class Tag:
        def before_enqueue(self, env: Envelope) -> Envelope:
            return dc_replace(env, headers={**env.headers, "tenant": "t1"})

    tasks.add_middleware(Tag())
    add = tasks.tasks["w.add"]
    g = group([add.s(1), add.s(2)]).delay()
    c = chain(add.s(3), add.s(4)).delay()
    raw = [json.loads(m) for m in tasks.client.lrange(keys.pending("default"), 0, -1)]
    assert len(raw) == 3 and all(m["headers"] == {"tenant": "t1"} and m["workflow"] for m in raw)
    assert {m["id"] for m in raw} == {g.members[0].id, g.members[1].id, c.steps[0].id}
