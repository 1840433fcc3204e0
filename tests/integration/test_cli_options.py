"""``redisq enqueue --options``: per-call options from the command line (a producer that does
not import the task), and clear usage errors for bad ones."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result

from redisq import App
from redisq.backend import keys
from redisq.ops.cli import main


def cli(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"REDIS_URL": url}, catch_exceptions=False)


def test_enqueue_with_options(redis_url: str, app: App) -> None:
    done = cli(redis_url, "enqueue", "billing.charge", "--args", "[7]", "--options",
               '{"job_id": "cli-7", "retries": 0, "headers": {"request_id": "r-9"}}')
    assert done.exit_code == 0 and done.stdout.strip() == "cli-7"
    message = json.loads(app.client.lindex(keys.pending("default"), 0))
    assert message["options"] == {"retries": 0} and message["headers"] == {"request_id": "r-9"}
    job = app.job("cli-7")
    assert job is not None and job.headers == {"request_id": "r-9"}


def test_bad_options_are_usage_errors(redis_url: str, app: App) -> None:
    for options, why in (('{"retry": 0}', "unknown job option 'retry'"),
                         ('{"retries": -1}', "'retries' must be >= 0"),
                         ("[1]", "--options")):
        res = cli(redis_url, "enqueue", "billing.charge", "--options", options)
        assert res.exit_code == 2 and why in res.stderr, res.stderr
    assert app.queue("default").depth() == 0
