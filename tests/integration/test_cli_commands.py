"""The producer and operator commands (enqueue, publish, info, job, requeue, purge, health)
in-process through click's runner against a real server; exit codes 0 ok, 1 failure, 2 usage
or configuration. The worker command itself runs as a subprocess in test_worker_cli.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from redisq import App
from redisq.backend import keys
from redisq.backend.registry import Registry
from redisq.ops.cli import main
from tests import worker_app
from tests.support.inproc import running
from tests.support.wait import wait_until


def cli(url: str, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env={"REDIS_URL": url, **(env or {})},
                              input=stdin, catch_exceptions=False)


def test_enqueue_then_job_shows_the_record(redis_url: str, app: App) -> None:
    done = cli(redis_url, "enqueue", "t.any", "--args", '[1, "é"]', "--kwargs", '{"k": true}',
               "--queue", "cli")
    assert done.exit_code == 0
    job_id = done.stdout.strip()
    assert len(job_id) == 32
    message = json.loads(app.client.lindex(keys.pending("cli"), 0))
    assert (message["id"], message["args"], message["kwargs"]) == (job_id, [1, "é"], {"k": True})
    shown = cli(redis_url, "job", job_id)
    record = json.loads(shown.stdout)
    assert shown.exit_code == 0 and record["status"] == "queued" and record["queue"] == "cli"
    assert "message" not in record  # the message is the worker's business
    later = cli(redis_url, "enqueue", "t.any", "--delay-s", "60")
    assert later.exit_code == 0 and app.client.zcard(keys.delayed("default")) == 1


@pytest.fixture
def module_app(redis_url: str) -> Iterator[App]:
    """tests.worker_app:app, which ``--app`` loads in this process, with a fresh client. Other
    tests (test_worker_cli.py) used it on this server before it was flushed, and its producer
    remembers registering its queues in the queue index (for index.REFRESH_S): a job it then
    queued would be missing from the index, and ``app.job(id)`` would not find it. A new
    process, as a real ``redisq enqueue`` is, starts with nothing remembered."""
    worker_app.app.use_url(redis_url)
    worker_app.app.close()
    yield worker_app.app
    worker_app.app.close()


@pytest.mark.usefixtures("module_app")
def test_enqueue_checks_the_call_against_the_app(redis_url: str, app: App) -> None:
    wrong = cli(redis_url, "enqueue", "t.record", "--args", "[1, 2]", "--app",
                "tests.worker_app:app")
    assert wrong.exit_code == 2  # bad usage: the call does not fit the task, named here
    assert "bad arguments for task 't.record': too many positional arguments" in wrong.stderr
    ok = cli(redis_url, "enqueue", "t.record", "--args", "[1]", "--app", "tests.worker_app:app")
    assert ok.exit_code == 0
    assert app.job(ok.stdout.strip()).info()["task"] == "t.record"
    missing = cli(redis_url, "enqueue", "t.record", "--app", "tests.no_such_module:app")
    assert missing.exit_code == 2 and "cannot import" in missing.stderr
    not_app = cli(redis_url, "enqueue", "t.record", "--app", "tests.worker_app:record")
    assert not_app.exit_code == 2 and "not a redisq App" in not_app.stderr


def test_enqueue_with_an_app_refuses_unknown_tasks(redis_url: str, app: App) -> None:
    """As the web API does: a name the App does not register would only be dead-lettered by
    its workers; without --app any name goes (a producer need not import the tasks)."""
    typo = cli(redis_url, "enqueue", "t.recrd", "--args", "[1]", "--app", "tests.worker_app:app")
    assert typo.exit_code == 2
    assert ("unknown task 't.recrd': not registered in tests.worker_app:app; did you mean "
            "t.record?") in typo.stderr
    other = cli(redis_url, "enqueue", "zzz", "--app", "tests.worker_app:app")
    assert other.exit_code == 2 and "unknown task 'zzz'" in other.stderr
    assert "t.block, t.flaky" in other.stderr  # what it does have
    by_env = cli(redis_url, "enqueue", "zzz", env={"REDISQ_APP": "tests.worker_app:app"})
    assert by_env.exit_code == 2 and "unknown task 'zzz'" in by_env.stderr
    assert app.client.llen(keys.pending("default")) == 0  # nothing was sent
    assert cli(redis_url, "enqueue", "zzz").exit_code == 0  # no App: by name, unchecked
    big = cli(redis_url, "enqueue", "zzz", "--args", json.dumps(["x" * 2048]),
              env={"REDISQ_MAX_MESSAGE_BYTES": "1024"})
    assert big.exit_code == 1 and "MessageTooLarge: task 'zzz': " in big.stderr


@pytest.mark.parametrize("args", [
    ["enqueue", "t.x", "--args", "[1"],  # not JSON
    ["enqueue", "t.x", "--args", '{"a": 1}'],  # not a list
    ["enqueue", "t.x", "--kwargs", "[1]"],  # not an object
    ["enqueue", "t.x", "--delay-s", "soon"],
    ["publish", "ch", "{nope"],
    ["health", "--max-age-s", "x"],
    ["purge"],  # --queue is required
    ["nope"],  # no such command
])
def test_usage_errors_exit_2(redis_url: str, app: App, args: list[str]) -> None:
    result = cli(redis_url, *args)
    assert result.exit_code == 2, result.output
    assert app.client.llen(keys.pending("default")) == 0  # nothing was sent


@pytest.mark.parametrize("args", [["enqueue", "t.x"], ["info"], ["job", "x"], ["health"],
                                  ["publish", "ch", "1"], ["requeue"]])
def test_unknown_setting_in_the_environment_exits_2(redis_url: str, args: list[str]) -> None:
    result = cli(redis_url, *args, env={"REDISQ_FOO": "1"})
    assert result.exit_code == 2 and "REDISQ_FOO" in result.stderr


def test_publish_counts_receivers_and_keeps_durable_messages(redis_url: str, app: App) -> None:
    pubsub = app.client.pubsub()
    pubsub.subscribe("news")
    wait_until(lambda: app.client.pubsub_numsub("news")[0][1] == 1, what="the subscription")
    assert cli(redis_url, "publish", "news", '{"a": 1}').stdout.strip() == "1"
    assert cli(redis_url, "publish", "empty", "2").stdout.strip() == "0"
    assert cli(redis_url, "publish", "kept", '"x"', "--durable").exit_code == 0
    assert app.client.xlen(keys.stream("kept")) == 1
    pubsub.close()


def test_info_text_and_json(redis_url: str, app: App) -> None:
    app.enqueue("t.x", queue="alpha")
    app.enqueue("t.x", queue="alpha")
    Registry(app.client).beat("w-1", {"mode": "prodcons", "queues": ["alpha"], "processed": 5,
                                      "failed": 1, "current": [], "loop_at": time.time()}, 30)
    text = cli(redis_url, "info")
    assert text.exit_code == 0
    row = next(line for line in text.stdout.splitlines() if line.startswith("alpha"))
    assert row.split()[1] == "2"  # depth
    assert "1 worker(s)" in text.stdout and "processed=5" in text.stdout
    snap = json.loads(cli(redis_url, "info", "--json").stdout)
    assert snap["queues"]["alpha"]["depth"] == 2 and snap["workers"][0]["id"] == "w-1"


def test_job_unknown_exits_1(redis_url: str) -> None:
    result = cli(redis_url, "job", "0" * 32)
    assert result.exit_code == 1 and "no job" in result.stderr


def test_requeue_brings_dead_jobs_back(redis_url: str, app: App) -> None:
    @app.task(name="t.fail", retries=0)
    def fail(n: int) -> None:
        if not app.client.exists("fixed"):
            raise RuntimeError("not yet")

    jobs = fail.map(range(3))
    with running(app, burst=True) as worker:
        wait_until(worker.stopping.is_set, 8, what="the burst to end")
    assert [j.status for j in jobs] == ["dead"] * 3
    one = cli(redis_url, "requeue", "--job", jobs[0].id)
    assert one.exit_code == 0 and one.stdout.strip() == "1"
    assert jobs[0].status == "queued" and jobs[1].status == "dead"
    assert cli(redis_url, "requeue", "--queue", "default", "--limit", "1").stdout.strip() == "1"
    assert cli(redis_url, "requeue").stdout.strip() == "1"
    assert cli(redis_url, "requeue").stdout.strip() == "0"
    app.client.set("fixed", 1)
    with running(app):
        assert [j.result(5) for j in jobs] == [None] * 3


def test_purge_pending_and_dead_letters(redis_url: str, app: App) -> None:
    for _ in range(3):
        app.enqueue("t.x", queue="junk")
    app.client.lpush(keys.dead("junk"), b"{}", b"{}")
    refused = cli(redis_url, "purge", "--queue", "junk", stdin="n\n")
    assert refused.exit_code == 1 and app.client.llen(keys.pending("junk")) == 3
    asked = cli(redis_url, "purge", "--queue", "junk", stdin="y\n")
    assert asked.exit_code == 0 and asked.stdout.strip().endswith("3")
    assert app.client.llen(keys.pending("junk")) == 0
    dead = cli(redis_url, "purge", "--queue", "junk", "--dead", "--yes")
    assert dead.stdout.strip() == "2" and app.client.llen(keys.dead("junk")) == 0


def test_health_exit_codes(redis_url: str, app: App) -> None:
    registry = Registry(app.client)
    assert cli(redis_url, "health").exit_code == 0  # Redis answers, no worker to check
    registry.beat("fresh", {"loop_at": time.time()}, 30)
    ok = cli(redis_url, "health", "--max-age-s", "5")
    assert ok.exit_code == 0 and "1 worker(s)" in ok.stdout
    registry.beat("stuck", {"loop_at": time.time() - 120}, 30)
    stale = cli(redis_url, "health", "--max-age-s", "60")
    assert stale.exit_code == 1 and "stuck" in stale.stdout and "fresh" not in stale.stdout
    assert cli(redis_url, "health", "--worker-id", "fresh").exit_code == 0
    assert cli(redis_url, "health", "--worker-id", "stuck").exit_code == 1
    gone = cli(redis_url, "health", "--worker-id", "gone")
    assert gone.exit_code == 1 and "not registered" in gone.stdout
    registry.beat("no-loop-field", {"mode": "prodcons"}, 30)
    assert "no-loop-field" in cli(redis_url, "health").stdout


def test_redis_down_exits_1_with_one_line(unused_url: str) -> None:
    for args in (["info"], ["health"], ["enqueue", "t.x"], ["job", "x"]):
        result = cli(unused_url, *args)
        assert result.exit_code == 1 and result.stderr.startswith("error: ")
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture
def unused_url() -> str:
    from redisq.backend.embedded import free_port

    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
