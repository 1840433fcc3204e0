"""The workflow field of a message and signatures: validated like the rest of a message (a bad
one is dead-lettered by the worker, never acted on), and what a worker runs when one ends."""

from __future__ import annotations

import json

import pytest

from redisq.backend import workflows
from redisq.canvas import Signature, chain, group
from redisq.model import BadMessage, Envelope, Outcome

MEMBER = {"kind": "member", "id": "g1", "index": 0, "queue": "default"}
STEP = {"kind": "chain", "id": "c1", "step": 0, "next": [{"task": "t.b", "args": [1]}]}


def test_a_group_may_end_a_chain() -> None:
    wf = {**STEP, "next": [{"task": "t.b"}, {"group": [{"task": "t.c"}], "then": {"task": "t.d"},
                                             "on_failure": "skip"}]}
    assert Envelope.from_dict({"id": "j1", "task": "t.a", "workflow": wf}).workflow == wf


def test_workflow_round_trips_and_is_omitted_when_none() -> None:
    env = Envelope("j1", "t.a", [1], {}, "default", workflow=MEMBER)
    assert Envelope.from_dict(json.loads(json.dumps(env.to_dict()))) == env
    assert "workflow" not in Envelope("j1", "t.a", [], {}, "default").to_dict()


@pytest.mark.parametrize("bad", [
    [], "x", {"kind": "member"}, {**MEMBER, "index": -1}, {**MEMBER, "index": True},
    {**MEMBER, "queue": "a b"}, {**MEMBER, "callback": 3}, {**STEP, "next": {}},
    {**STEP, "next": [{"task": ""}]}, {**STEP, "next": [{"task": "t", "args": {}}]},
    {**STEP, "step": "1"}, {**MEMBER, "kind": "dag"},
    {**STEP, "next": [{"group": []}]}, {**STEP, "next": [{"group": [{"task": "t"}], "x": 1}]},
    {**STEP, "next": [{"group": [{"task": "t"}], "on_failure": "maybe"}]},
    {**STEP, "next": [{"group": [{"task": "t"}]}, {"task": "t"}]},  # a group only at the end
])
def test_malformed_workflow_fields_are_bad_messages(bad: object) -> None:
    with pytest.raises(BadMessage):
        Envelope.from_dict({"id": "j1", "task": "t.a", "workflow": bad})


def test_a_chain_step_queues_the_next_with_its_result_first() -> None:
    env = Envelope("c1-0", "t.a", [], {}, "default", workflow=STEP)
    ok = Outcome("succeeded", 5, result_json="5")
    ((name, ks, argv),) = workflows.end_calls(env, ok, lambda d: json.dumps(d).encode())
    nxt = json.loads(argv[0])
    assert name == "wf_next" and nxt["id"] == "c1-1" and nxt["args"] == [5, 1]
    assert nxt["workflow"] == {"kind": "chain", "id": "c1", "step": 1, "next": []}
    assert all(k.startswith("redisq:{default}:") for k in ks)
    assert workflows.end_calls(env, Outcome("retrying"), json.dumps) == []  # not final
    ((name, ks, argv),) = workflows.end_calls(env, Outcome("dead", error_type="E"), json.dumps)
    assert name == "wf_cancel" and ks == ["redisq:{default}:job:c1-1"]


def test_member_outcomes_as_stored() -> None:
    assert workflows.outcome_value(Outcome("succeeded", [1], result_json="[1]")) == "s[1]"
    failed = workflows.outcome_value(Outcome("failed", error_type="E", error_message="m"))
    assert failed[0] == "f" and json.loads(failed[1:])["error_type"] == "E"


def test_results_template_splits_once() -> None:
    token = json.dumps(workflows.RESULTS_TOKEN).encode()
    msg = b'{"args":[' + token + b',1]}'
    assert workflows.split_template(msg, token) == (b'{"args":[', b',1]}')
    with pytest.raises(ValueError):
        workflows.split_template(b"{}", token)


def test_signatures_compose() -> None:
    a, b = Signature("t.a", (1,)), Signature("t.b")
    assert a.set(queue="high") == Signature("t.a", (1,), queue="high")
    with pytest.raises(ValueError):
        a.set(queue="no spaces")
    assert (a | b | chain(a)).steps == (a, b, a)
    assert chain(a, b).to_dict() == {"chain": [{"task": "t.a", "args": [1]}, {"task": "t.b"}]}
    assert group([a]).then(b, on_failure="skip").to_dict() == {
        "group": [{"task": "t.a", "args": [1]}], "then": {"task": "t.b"}, "on_failure": "skip"}
    with pytest.raises(TypeError):
        chain(a, "t.b")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no App"):
        chain(a).delay()
