"""Every Redis key redisq uses, built in one place.

All keys of one queue share the hash tag ``{<queue>}`` so that each Lua step touches a single
Cluster slot; keys that are not tied to one queue carry no tag.

=====================================  ========  ==============================================
key                                    type      meaning
=====================================  ========  ==============================================
``redisq:{q}:pending``                 list      messages waiting; producers LPUSH, consumers
                                                 take from the right (FIFO)
``redisq:{q}:processing:<consumer>``   list      messages reserved by one consumer, not yet acked
``redisq:{q}:inbox:<consumer>``        list      where a worker's blocking wait moves a message,
                                                 for the claim pipelined behind it (empty but
                                                 for a moment; recovered like processing)
``redisq:{q}:lease:<consumer>``        string    the consumer's lease; TTL = ``lease_s``
``redisq:{q}:consumers``               set       consumer ids that may own a processing list
``redisq:{q}:epochs``                  hash      consumer id → its epoch token; recovery ends it
``redisq:{q}:delayed``                 zset      messages due later; score = due time (ms, Redis clock)
``redisq:{q}:dead``                    list      dead-lettered messages (JSON: reason + message)
``redisq:{q}:stats``                   hash      counters: enqueued, acked, requeued, dead, recovered
``redisq:{q}:job:<id>``                hash      job record (status, times, result or error) while
                                                 the job waits or runs, and once it failed, died
                                                 or is kept whole (see ``done``)
``redisq:{q}:done``                    zset      live done buckets: member and score = the
                                                 bucket's end (unix ms); TTL = the last end
``redisq:{q}:done:<end ms>``           hash      finished records (succeeded, cancelled by a
                                                 worker): job id → packed record, and the
                                                 task/worker names they use (fields starting
                                                 with \\x01; see :mod:`redisq.backend.finished`);
                                                 expires whole at its end
``redisq:{q}:unique:<key>``            string    id of the queued/running job holding a unique key
``redisq:{q}:idx:<status>``            zset      job ids that reached ``status`` (succeeded, failed,
                                                 dead, retrying, cancelled...), score = when (unix
                                                 ms); capped at ``index_max``, no id older
                                                 than the record TTL (see ``jobindex``)
``redisq:{q}:series:<minute>``         string    per-second counters of one minute (unix s / 60),
                                                 u32 slots (BITFIELD): processed, failed, depth,
                                                 enqueue→start latency histogram (``jobindex``);
                                                 expires after ``SERIES_TTL_S``
``redisq:{q}:abort:<id>``              string    ``job.abort()`` asked a running job to stop; the
                                                 worker running it sees it at its heartbeat
``redisq:{q}:rate:<task>``             string    GCRA theoretical arrival time (ms) of a task's
                                                 ``rate_limit`` on this queue, its last start, its interval
``redisq:{q}:rate:<task>:slots``       hash      throttled job id → its reserved start slot (ms)
``redisq:{q}:running:<task>``          zset      ``concurrency_limit`` holders: job id, score =
                                                 lease expiry (ms, Redis clock)
``redisq:{q}:waiting:<task>``          zset      messages throttled by ``concurrency_limit``
                                                 (also in ``delayed``): woken one per release
``redisq:paused``                      set       paused queues (workers take nothing from them)
``redisq:queues``                      set       names of the known queues (see :mod:`redisq.index`)
``redisq:queues:seen``                 zset      queue → last producer or worker activity (unix s);
                                                 idle, empty queues drop out of the index
``redisq:workers``                     zset      worker ids, score = last heartbeat (unix s)
``redisq:worker:<id>``                 hash      worker registry entry; TTL = ``lease_s``
``redisq:stream:{<channel>}``          stream    durable pub/sub log (capped)
``redisq:lock:{<name>}``               string    distributed lock token; TTL = lease
``redisq:scheduler:leader``            string    scheduler leader token; TTL = lease
``redisq:{q}:periodic:<name>``         string    last fired tick of a periodic job (unix s); only
                                                 moves forward (its job: ``job:periodic:<name>:<tick>``)
``redisq:periodic``                    hash      periodic job name → JSON (schedule, next/last run)
``redisq:{q}:wf:group:<id>``           hash      a group's state (total, failure policy, callback
                                                 message template, fired flag); under the tag of
                                                 the queue its callback goes to
``redisq:{q}:wf:group:<id>:results``   hash      a group's member outcomes: index → s<json> | f<json>
``redisq:{q}:wf:active``               zset      groups not complete yet → creation time (unix s)
``redisq:{q}:wf:sent:<job id>``        string    a workflow step's job was enqueued (once only)
``redisq:{q}:wf:held:<job id>``        string    a deferred job's message, held until its
                                                 dependencies are over
``redisq:{q}:wf:wait:<job id>``        set       parent "queue|id" a deferred job still waits on
``redisq:{q}:wf:deps:<job id>``        set       "queue|id" of the jobs waiting on this one
``redisq:{q}:wf:parents``              zset      jobs of this queue with dependents → since
``redisq:channel:{<ch>}:dead``         list      dead letters of a pub/sub channel
``redisq:events``                      channel   job and worker events for dashboards
=====================================  ========  ==============================================
"""

from __future__ import annotations

from ..model import MAX_NAME_BYTES as MAX_NAME_BYTES
from ..model import check_name as check_name
from ..model import valid_name as valid_name

PREFIX = "redisq"
EVENTS_CHANNEL = f"{PREFIX}:events"
QUEUES = f"{PREFIX}:queues"
QUEUES_SEEN = f"{PREFIX}:queues:seen"
WORKERS = f"{PREFIX}:workers"
SCHEDULER_LEADER = f"{PREFIX}:scheduler:leader"
PERIODIC_INDEX = f"{PREFIX}:periodic"
PAUSED = f"{PREFIX}:paused"




def _q(queue: str) -> str:
    return f"{PREFIX}:{{{queue}}}"


def pending(queue: str) -> str:
    return f"{_q(queue)}:pending"


def processing(queue: str, consumer: str) -> str:
    return f"{_q(queue)}:processing:{consumer}"


def inbox(queue: str, consumer: str) -> str:
    """Where a worker's blocking move puts a message, for the step pipelined behind it to
    claim (mark started, into the processing list) at once: see ``lua/reserve.lua``."""
    return f"{_q(queue)}:inbox:{consumer}"


def lease(queue: str, consumer: str) -> str:
    return f"{_q(queue)}:lease:{consumer}"


def consumers(queue: str) -> str:
    return f"{_q(queue)}:consumers"


def epochs(queue: str) -> str:
    """Each consumer's epoch token: what its job steps must show (see ``lua/renew.lua``)."""
    return f"{_q(queue)}:epochs"


def delayed(queue: str) -> str:
    return f"{_q(queue)}:delayed"


def dead(queue: str) -> str:
    return f"{_q(queue)}:dead"


def stats(queue: str) -> str:
    return f"{_q(queue)}:stats"


def job(queue: str, job_id: str) -> str:
    return f"{_q(queue)}:job:{job_id}"


def job_prefix(queue: str) -> str:
    """What :func:`job` puts before the id (for the scripts that derive record keys from ids
    they find: reserve, enqueue and fire_periodic)."""
    return f"{_q(queue)}:job:"


def done(queue: str) -> str:
    """The index of a queue's done buckets (``lua/settle.lua`` writes them, ``lua/record.lua``
    reads them); a bucket's key is this key, ``:`` and the bucket's end (:func:`done_bucket`),
    which the scripts build from the index key (same hash tag, same Cluster slot)."""
    return f"{_q(queue)}:done"


def done_bucket(queue: str, end_ms: int) -> str:
    """One done bucket: the finished records that expire at ``end_ms`` (unix ms)."""
    return f"{done(queue)}:{end_ms}"


def unique(queue: str, unique_key: str) -> str:
    return f"{_q(queue)}:unique:{unique_key}"


def status_index(queue: str, status: str) -> str:
    """Job ids of ``queue`` that reached ``status``, newest highest (see ``backend/jobindex``)."""
    return f"{_q(queue)}:idx:{status}"


#: How long a minute of per-second counters is kept: the graphs show the last hour.
SERIES_TTL_S = 3_900


def series(queue: str, minute: int) -> str:
    """The per-second counters of ``queue`` during ``minute`` (unix seconds // 60)."""
    return f"{_q(queue)}:series:{minute}"


def worker(worker_id: str) -> str:
    return f"{PREFIX}:worker:{worker_id}"


def stream(channel: str) -> str:
    return f"{PREFIX}:stream:{{{channel}}}"


def lock(name: str) -> str:
    return f"{PREFIX}:lock:{{{name}}}"


def periodic_last(queue: str, name: str) -> str:
    """Last fired tick of a periodic job; under its queue's tag, beside the jobs it fires."""
    return f"{_q(queue)}:periodic:{name}"


def channel_dead(channel: str) -> str:
    """Dead letters of a pub/sub channel (messages its handler could not take)."""
    return f"{PREFIX}:channel:{{{channel}}}:dead"


# -- workflows (redisq/backend/workflows.py) -------------------------------------------------
def wf_state(queue: str, wf_id: str) -> str:
    """A group's state, under the tag of the queue its callback goes to."""
    return f"{_q(queue)}:wf:group:{wf_id}"


def wf_results(queue: str, wf_id: str) -> str:
    return f"{_q(queue)}:wf:group:{wf_id}:results"


def wf_active(queue: str) -> str:
    return f"{_q(queue)}:wf:active"


def wf_sent(queue: str, job_id: str) -> str:
    return f"{_q(queue)}:wf:sent:{job_id}"


def wf_held(queue: str, job_id: str) -> str:
    return f"{_q(queue)}:wf:held:{job_id}"


def wf_wait(queue: str, job_id: str) -> str:
    return f"{_q(queue)}:wf:wait:{job_id}"


def wf_deps(queue: str, job_id: str) -> str:
    return f"{_q(queue)}:wf:deps:{job_id}"


def wf_parents(queue: str) -> str:
    return f"{_q(queue)}:wf:parents"


def abort(queue: str, job_id: str) -> str:
    """The flag ``job.abort()`` sets for a running job (under the queue's tag)."""
    return f"{_q(queue)}:abort:{job_id}"


def rate(queue: str, task: str) -> str:
    """A task's ``rate_limit`` state on ``queue`` (limits count per queue: one slot per step)."""
    return f"{_q(queue)}:rate:{task}"


def rate_slots(queue: str, task: str) -> str:
    return f"{_q(queue)}:rate:{task}:slots"


def running(queue: str, task: str) -> str:
    """A task's ``concurrency_limit`` holders on ``queue``."""
    return f"{_q(queue)}:running:{task}"


def waiting(queue: str, task: str) -> str:
    return f"{_q(queue)}:waiting:{task}"
