"""The Redis side of workflows (chains, groups, chords): the Lua calls that
create them, the calls a worker makes when a workflow job ends, and reading their progress.

Where the state lives, and why each step is one atomic Lua step in one Cluster slot:

* A **group** keeps its state under the tag of the queue its callback goes to (a group without
  a callback: its first member's queue). A member's end is one ``wf_member`` step there: it
  records the member's outcome (first one stands) and, with the last one, sets the "fired" flag
  *and* queues the callback in the same step, so the callback is queued exactly once. The
  worker runs that step *before* it settles (acks) the member: a worker lost in between only
  makes the member run again, and the re-run's step counts nothing.
* A **chain** step carries the signatures of the steps after it (``Envelope.workflow``). When
  it succeeds, the worker queues the next step with ``wf_next`` (a deterministic job id and a
  "sent" marker, so at most once) under the next step's queue tag, again before the settle.
* **depends_on**: see :mod:`redisq.backend.dependencies`.

The workflow field of a message (:func:`redisq.model.check_workflow` validates it):

* group member: ``{"kind": "member", "id": <group id>, "index": i, "queue": <state queue>,
  "callback": <callback job id>}`` (``callback`` only with one);
* chain step: ``{"kind": "chain", "id": <chain id>, "step": k, "next": [<signature>, ...]}``;
  step ``k``'s job id is ``<chain id>-<k>``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from ..model import (
    CANCELLED,
    DEAD,
    FAILED,
    SUCCEEDED,
    Envelope,
    Outcome,
    as_text,
)
from . import keys
from .scripts import Scripts

log = logging.getLogger("redisq.workflows")

Call = tuple[str, list[str], list[Any]]
POLICIES = ("fail", "skip", "run")
#: Outcomes after which a job never runs again: a workflow moves on.
FINAL = frozenset({SUCCEEDED, FAILED, DEAD, CANCELLED, "expired", "aborted"})
#: Where the results list goes in a chord callback's message template.
RESULTS_TOKEN = "\x00redisq:results\x00"
#: How long a group may take (and its results stay readable), a chain's later steps wait, and a
#: "sent" marker lives: a week, like a failed job's record.
STATE_TTL_S = 7 * 86_400.0


def step_id(chain_id: str, step: int) -> str:
    return f"{chain_id}-{step}"


# -- what a worker runs when a workflow job ends (before its settle) ---------------------------
def end_calls(env: Envelope, outcome: Outcome, dumps: Callable[[Any], bytes]) -> list[Call]:
    """The Lua calls that move ``env``'s workflow on after ``outcome`` (none unless final).
    Every one is idempotent: the worker runs them before the settle, and again if it was lost
    in between."""
    wf = env.workflow
    if wf is None or outcome.status not in FINAL:
        return []
    now = f"{time.time():.3f}"
    if wf.get("kind") == "member":
        return [member_call(wf, outcome, now)]
    if wf.get("kind") == "chain":
        return chain_calls(env, wf, outcome, dumps, now)
    return []


def outcome_value(outcome: Outcome) -> str:
    """A member's outcome as the group stores it: ``s<result JSON>`` or ``f<error JSON>``."""
    if outcome.status == SUCCEEDED:
        return "s" + outcome.result_json
    return "f" + json.dumps({"status": outcome.status, "error_type": outcome.error_type,
                             "error_message": outcome.error_message[:500]},
                            separators=(",", ":"))


def member_call(wf: dict[str, Any], outcome: Outcome, now: str) -> Call:
    q, gid = wf["queue"], wf["id"]
    ks = [keys.wf_state(q, gid), keys.wf_results(q, gid), keys.wf_active(q)]
    if wf.get("callback"):
        ks += [keys.pending(q), keys.job(q, wf["callback"]), keys.stats(q)]
    return "wf_member", ks, [gid, wf["index"], outcome_value(outcome), now,
                             int(STATE_TTL_S * 1000)]


def chain_calls(env: Envelope, wf: dict[str, Any], outcome: Outcome,
                dumps: Callable[[Any], bytes], now: str) -> list[Call]:
    rest: list[dict[str, Any]] = wf["next"]
    if not rest:
        return []
    cid, step = wf["id"], wf["step"]
    if outcome.status != SUCCEEDED:  # the chain stops here: its later steps never run
        return stop_calls(cid, step, rest, f"chain step {step} (job {env.id}) ended "
                          f"{outcome.status}: {outcome.error_type}: {outcome.error_message}", now)
    sig, later = rest[0], rest[1:]
    if "group" in sig:  # the chain ends with a group (or chord) of the step's result
        return chain_group_calls(step_id(cid, step + 1), json.loads(outcome.result_json), sig,
                                 dumps)
    q = sig.get("queue", "default")
    nxt = Envelope(id=step_id(cid, step + 1), task=sig["task"],
                   args=[json.loads(outcome.result_json), *sig.get("args", [])],
                   kwargs=dict(sig.get("kwargs", {})), queue=q,
                   enqueued_at=round(time.time(), 3),
                   workflow={"kind": "chain", "id": cid, "step": step + 1, "next": later})
    ks = [keys.wf_sent(q, nxt.id), keys.pending(q), keys.job(q, nxt.id), keys.stats(q)]
    return [("wf_next", ks, [dumps(nxt.to_dict()), nxt.task, repr(nxt.enqueued_at),
                             int(STATE_TTL_S * 1000)])]


def member_ids(group_id: str, count: int) -> list[str]:
    return [f"{group_id}-{i}" for i in range(count)]


def callback_id(group_id: str) -> str:
    return f"{group_id}-callback"


def chain_group_calls(group_id: str, value: Any, spec: dict[str, Any],
                      dumps: Callable[[Any], bytes]) -> list[Call]:
    """A chain's last step succeeded with ``value`` and what follows is a group (``spec``:
    ``{"group": [signature, ...], "then"?: signature, "on_failure"?}``): create the group's
    state (``wf_group``: once, by its deterministic id), then queue each member with ``value``
    first (``wf_next``: once each). A worker lost half-way runs the step again and these
    calls again, which completes what is missing and repeats nothing."""
    members, cb = spec["group"], spec.get("then")
    now = round(time.time(), 3)
    state_q = (cb or members[0]).get("queue", "default")
    cb_env, template = None, None
    if cb is not None:
        cb_env = Envelope(callback_id(group_id), cb["task"], [RESULTS_TOKEN, *cb.get("args", [])],
                          dict(cb.get("kwargs", {})), state_q, enqueued_at=now)
        template = split_template(dumps(cb_env.to_dict()), dumps(RESULTS_TOKEN))
    calls = [group_call(state_q, group_id, len(members), spec.get("on_failure", "fail"), cb_env,
                        template)]
    wf: dict[str, Any] = {"kind": "member", "id": group_id, "queue": state_q}
    if cb_env is not None:
        wf["callback"] = cb_env.id
    for i, (jid, sig) in enumerate(zip(member_ids(group_id, len(members)), members,
                                       strict=True)):
        q = sig.get("queue", "default")
        env = Envelope(jid, sig["task"], [value, *sig.get("args", [])],
                       dict(sig.get("kwargs", {})), q, enqueued_at=now,
                       workflow={**wf, "index": i})
        calls.append(("wf_next", [keys.wf_sent(q, jid), keys.pending(q), keys.job(q, jid),
                                  keys.stats(q)],
                      [dumps(env.to_dict()), env.task, repr(now), int(STATE_TTL_S * 1000)]))
    return calls


def group_records(group_id: str, spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(queue, job id, task) of a chain-ending group's members and callback."""
    members, cb = spec["group"], spec.get("then")
    out = [(sig.get("queue", "default"), jid, sig["task"])
           for jid, sig in zip(member_ids(group_id, len(members)), members, strict=True)]
    if cb is not None:
        out.append((cb.get("queue", "default"), callback_id(group_id), cb["task"]))
    return out


def after_cancel(scripts: Scripts, message: bytes | str) -> None:
    """A job was cancelled before it ran: if it is a workflow's, move its workflow on as for
    any other end (a group counts it; a chain's later steps are cancelled). Not in the same
    step as the cancel (the workflow's state may be in another slot): a producer lost in
    between leaves the group one member short (see docs/workflows.md)."""
    try:
        env = Envelope.from_dict(json.loads(message))
    except Exception:  # not a JSON job message (another serializer): no workflow to move
        return
    if env.workflow is not None:
        outcome = Outcome(CANCELLED, error_type="Cancelled",
                          error_message="the job was cancelled before it ran")
        run_end_calls(scripts, end_calls(env, outcome, lambda d: json.dumps(d).encode()))


def stop_calls(chain_id: str, step: int, rest: list[dict[str, Any]], why: str,
               now: str) -> list[Call]:
    """Cancel the steps after ``step`` of a chain (``rest``: their signatures; a group that
    ends it: its members and callback), saying why."""
    targets: list[tuple[str, str]] = []
    for i, sig in enumerate(rest):
        jid = step_id(chain_id, step + i + 1)
        if "group" in sig:
            targets += [(q, member) for q, member, _ in group_records(jid, sig)]
        else:
            targets.append((sig.get("queue", "default"), jid))
    return [("wf_cancel", [keys.job(q, jid)],
             [CANCELLED, "ChainStopped", why[:1000], now, int(STATE_TTL_S * 1000)])
            for q, jid in targets]


def run_end_calls(scripts: Scripts, calls: list[Call]) -> None:
    """Run workflow end steps (one round trip); raises what Redis raised, so the caller keeps
    the outcomes and tries again (the steps are idempotent). Logs one line per transition."""
    # A group's state first, in a round trip of its own: its members may be on other nodes,
    # and one must not end before the state that counts it exists.
    first = [c for c in calls if c[0] == "wf_group"]
    if first:
        scripts.run_many(first)
        calls = [c for c in calls if c[0] != "wf_group"]
    follow: list[Call] = []
    for (name, ks, args), answer in zip(calls, scripts.run_many(calls), strict=True):
        if name == "wf_next":
            nxt = Envelope.from_dict(json.loads(args[0]))
            if answer == 1:
                log.info("job=%s task=%s queue=%s queued (chain step)", nxt.id, nxt.task,
                         nxt.queue)
            elif answer == -1 and (nxt.workflow or {}).get("kind") == "member":
                # A member cancelled while it waited: it counts as ended for its group.
                follow.append(member_call(nxt.workflow or {}, Outcome(
                    CANCELLED, error_type="Cancelled",
                    error_message="cancelled while deferred"), f"{time.time():.3f}"))
            elif answer == -1 and (nxt.workflow or {}).get("kind") == "chain":
                # That step was cancelled while it waited: the chain stops there.
                wf = nxt.workflow or {}
                follow += stop_calls(wf["id"], wf["step"], wf["next"], f"chain step "
                                     f"{wf['step']} (job {nxt.id}) was cancelled",
                                     f"{time.time():.3f}")
        elif name == "wf_member" and answer == 2:
            log.info("group=%s complete: its callback (if any) is queued, or failed by policy",
                     args[0])
        elif name == "wf_member" and answer in (-1, -2):
            log.warning("group=%s member=%s: %s; its outcome is not counted", args[0], args[1],
                        "the group's state is gone (expired?)" if answer == -1
                        else "the group has no such member")
        elif name == "wf_cancel" and answer == 1:
            log.info("%s cancelled: %s", ks[0], args[2])
    if follow:
        run_end_calls(scripts, follow)


def cancel_deferred(scripts: Scripts, queue: str, job_id: str, ttl_s: float) -> bool:
    """``Job.cancel()`` of a deferred job (a chain step, a chord's callback, a depends_on job):
    it will not be queued. A cancelled chain step stops its chain there."""
    ks = [keys.job(queue, job_id), keys.wf_held(queue, job_id), keys.wf_wait(queue, job_id)]
    return bool(scripts.run("wf_cancel", ks, [CANCELLED, "Cancelled", "cancelled while deferred",
                                              f"{time.time():.3f}", int(ttl_s * 1000)]))


# -- creating ----------------------------------------------------------------------------------
def group_call(queue: str, group_id: str, total: int, policy: str,
               callback: Envelope | None, template: tuple[bytes, bytes] | None) -> Call:
    ks = [keys.wf_state(queue, group_id), keys.wf_results(queue, group_id), keys.wf_active(queue)]
    cb_id, cb_task, pre, post = "", "", b"", b""
    if callback is not None and template is not None:
        ks.append(keys.job(queue, callback.id))
        cb_id, cb_task, (pre, post) = callback.id, callback.task, template
    return "wf_group", ks, [group_id, total, policy, f"{time.time():.3f}",
                            int(STATE_TTL_S * 1000), cb_id, cb_task, pre, post]


def split_template(message: bytes, token: bytes) -> tuple[bytes, bytes]:
    """A callback message around its results placeholder (``token``: how the serializer wrote
    :data:`RESULTS_TOKEN`)."""
    pre, sep, post = message.partition(token)
    if not sep or token in post:
        raise ValueError("the callback's message must hold its results placeholder once")
    return pre, post


def defer_records(client: redis.Redis, steps: Sequence[tuple[str, str, str]]) -> None:
    """Create the records of a chain's later steps (queue, job id, task) as "deferred"."""
    now = f"{time.time():.3f}"
    pipe = client.pipeline(transaction=False)
    for q, jid, task in steps:
        pipe.hset(keys.job(q, jid), mapping={"status": "deferred", "task": task,
                                             "enqueued_at": now})
        pipe.pexpire(keys.job(q, jid), int(STATE_TTL_S * 1000))
    pipe.execute()


# -- reading -----------------------------------------------------------------------------------
def group_state(client: redis.Redis, queue: str, group_id: str) -> dict[str, Any]:
    """A group's progress: total, done, failed (once complete), fired (time or None),
    callback id; an empty dict when it is unknown or expired."""
    pipe = client.pipeline(transaction=False)
    pipe.hmget(keys.wf_state(queue, group_id), "total", "policy", "callback", "fired", "failed",
               "created_at")
    pipe.hlen(keys.wf_results(queue, group_id))
    (total, policy, callback, fired, failed, created), done = pipe.execute()
    if total is None:
        return {}
    return {"id": group_id, "queue": queue, "total": int(total), "done": int(done),
            "policy": as_text(policy or b""), "callback": as_text(callback or b"") or None,
            "fired": float(fired) if fired else None,
            "failed": int(failed) if failed is not None else None,
            "created_at": float(created) if created else None}


def group_outcomes(client: redis.Redis, queue: str, group_id: str) -> dict[int, tuple[bool, Any]]:
    """Recorded member outcomes: index → (succeeded, result or error dict)."""
    out: dict[int, tuple[bool, Any]] = {}
    for k, v in client.hgetall(keys.wf_results(queue, group_id)).items():
        text = as_text(v)
        out[int(as_text(k))] = (text[:1] == "s", json.loads(text[1:]))
    return out


def active_groups(client: redis.Redis, queue: str, limit: int = 10) -> tuple[int, list[dict[str, Any]]]:
    """How many groups of ``queue`` are not complete, and the progress of the oldest ones."""
    count = client.zcard(keys.wf_active(queue))
    if not count:
        return 0, []
    raw: list[bytes] = client.zrange(keys.wf_active(queue), 0, limit - 1)  # type: ignore[assignment]
    ids = [as_text(g) for g in raw]
    states = [group_state(client, queue, g) for g in ids]
    gone = [g for g, st in zip(ids, states, strict=True) if not st]
    if gone:  # expired before completing (a week): no longer in progress
        client.zrem(keys.wf_active(queue), *gone)
    return int(count) - len(gone), [st for st in states if st]


def progress(client: redis.Redis, queues: Sequence[str], limit: int = 10) -> dict[str, Any]:
    """Workflow progress for ``redisq info`` and the dashboard: groups not complete yet (how
    many, and the oldest ``limit`` with done/total) and jobs that others wait on."""
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.zcard(keys.wf_active(q))
        pipe.zcard(keys.wf_parents(q))
    counts = pipe.execute()
    active = dict(zip(queues, counts[0::2], strict=True))
    groups: list[dict[str, Any]] = []
    for q, n in active.items():
        if n and len(groups) < limit:
            groups += active_groups(client, q, limit - len(groups))[1]
    return {"groups_active": sum(int(n) for n in active.values()), "groups": groups,
            "awaited_jobs": sum(int(n) for n in counts[1::2])}
