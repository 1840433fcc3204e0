"""The chord's exactly-once guarantee at the Lua level, on a real server: the member steps two
workers run at the same instant, and a member's step repeated (its worker died after recording
it, before the ack, so the member ran again), never count twice nor fire twice."""

from __future__ import annotations

import json
import threading

from redisq import App, group
from redisq.backend import keys, workflows
from redisq.backend.scripts import Scripts
from redisq.model import Envelope, Outcome

GROUPS = 40


def end_call(app: App, group_id: str, index: int, value: int) -> workflows.Call:
    env = Envelope(id=f"{group_id}-{index}", task="r.add", args=[], kwargs={}, queue="default",
                   workflow={"kind": "member", "id": group_id, "index": index, "queue": "default",
                             "callback": f"{group_id}-callback"})
    outcome = Outcome("succeeded", value, result_json=json.dumps(value))
    (call,) = workflows.end_calls(env, outcome, app.serializer.dumps)
    return call


def test_two_members_ending_at_once_fire_the_callback_once(app: App) -> None:
    app.task(name="r.add")(lambda x: x)
    app.task(name="r.sum")(lambda xs: sum(xs))
    add, total = app.tasks["r.add"], app.tasks["r.sum"]
    jobs = [group([add.s(1), add.s(2)]).then(total.s()).delay() for _ in range(GROUPS)]
    app.client.delete(keys.pending("default"))  # no worker here: the members never run
    barrier = threading.Barrier(2)

    def worker(index: int) -> None:
        scripts = Scripts(app.connect("race"))  # its own connection, as another host's
        for g in jobs:
            call = end_call(app, g.id, index, index + 1)
            barrier.wait(5)
            workflows.run_end_calls(scripts, [call])
            workflows.run_end_calls(scripts, [call])  # again: a re-run after a lost ack

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(8)
    callbacks = [json.loads(m) for m in app.client.lrange(keys.pending("default"), 0, -1)]
    assert sorted(m["id"] for m in callbacks) == sorted(f"{g.id}-callback" for g in jobs)
    assert all(m["args"] == [[1, 2]] and m["task"] == "r.sum" for m in callbacks)
    assert all(g.callback is not None and g.callback.status == "queued" for g in jobs)
    assert app.client.hget(keys.stats("default"), "enqueued") == str(3 * GROUPS).encode()
    assert all(g.progress()["done"] == 2 and g.progress()["fired"] for g in jobs)


def test_a_re_run_keeps_the_first_outcome_and_forged_or_expired_ones_count_nothing(app: App) -> None:
    app.task(name="r.add")(lambda x: x)
    add = app.tasks["r.add"]
    g = group([add.s(1), add.s(2)]).delay()
    scripts = app.records.scripts
    workflows.run_end_calls(scripts, [end_call(app, g.id, 0, 10)])
    name, ks, argv = end_call(app, g.id, 0, 99)  # the member ran again, another result
    assert scripts.run(name, ks, argv) == 0
    name, ks, argv = end_call(app, g.id, 2, 30)  # a forged member: no such index
    assert scripts.run(name, ks, argv) == -2
    workflows.run_end_calls(scripts, [end_call(app, g.id, 1, 20)])
    assert g.results(1) == [10, 20]
    app.client.delete(keys.wf_state(g.queue, g.id))
    name, ks, argv = end_call(app, g.id, 1, 20)
    assert scripts.run(name, ks, argv) == -1


def test_an_expired_group_leaves_the_progress_list(app: App) -> None:
    app.task(name="r.add")(lambda x: x)
    g = group([app.tasks["r.add"].s(1)]).delay()
    assert workflows.active_groups(app.client, "default")[0] == 1
    app.client.delete(keys.wf_state("default", g.id))
    assert workflows.active_groups(app.client, "default") == (0, [])
    assert app.client.zcard(keys.wf_active("default")) == 0
