"""Keys, backoff, serializers, settings."""

from __future__ import annotations

import math
import random

import pytest

from redisq import config, serializers
from redisq.backend import keys
from redisq.backend.backoff import Backoff, retry_delay_s
from redisq.errors import ConfigError, SerializationError


def test_queue_keys_share_one_hash_tag() -> None:
    names = [keys.pending("q"), keys.processing("q", "c"), keys.lease("q", "c"),
             keys.delayed("q"), keys.dead("q"), keys.stats("q"), keys.job("q", "1"),
             keys.unique("q", "u"), keys.consumers("q")]
    assert all("{q}" in n for n in names)
    assert keys.job("q", "1").startswith(keys.job_prefix("q"))


@pytest.mark.parametrize("bad", ["", "a b", "x{y}", "a\n"])
def test_bad_names_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        keys.check_name(bad)


def test_backoff_is_capped_jittered_and_resets() -> None:
    b = Backoff(base_s=0.1, cap_s=1.0, rng=random.Random(1))
    delays = [b.next_delay_s() for _ in range(20)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 10  # jitter: not lock-step
    b.reset()
    assert b.failures == 0
    assert 0.5 <= retry_delay_s(1, 1.0, 60) <= 1.0
    assert retry_delay_s(30, 1.0, 60) <= 60


@pytest.mark.parametrize("value", [{1, 2}, b"raw", object(), math.nan, {"d": math.inf}])
def test_json_refuses_what_it_cannot_carry(value: object) -> None:
    with pytest.raises(SerializationError):
        serializers.get("json").dumps({"args": [value]})


def test_json_roundtrip() -> None:
    s = serializers.get("json")
    assert s.loads(s.dumps({"a": [1, "é", None, 2.5]})) == {"a": [1, "é", None, 2.5]}


def test_settings_precedence_and_errors() -> None:
    env = {"REDISQ_CONCURRENCY": "4", "REDISQ_QUEUES": "high, default", "REDIS_URL": "redis://x"}
    s = config.load({"concurrency": 2, "burst": None}, env)
    assert s.concurrency == 2 and s.queues == ("high", "default") and s.url == "redis://x"
    assert config.load({}, {**env, "REDISQ_URL": "redis://y"}).url == "redis://y"
    with pytest.raises(ConfigError, match="REDISQ_CONCURENCY"):
        config.load({}, {"REDISQ_CONCURENCY": "4"})
    with pytest.raises(ConfigError):
        config.load({"nope": 1}, {})
    with pytest.raises(ConfigError):
        config.load({}, {"REDISQ_CONCURRENCY": "many"})
    with pytest.raises(ConfigError):
        config.load({}, {"REDISQ_MODE": "fanout"})
    with pytest.raises(ConfigError):
        config.load({"block_timeout_s": 10, "lease_s": 5}, {})
    with pytest.raises(dataclasses_error()):
        s.concurrency = 3  # type: ignore[misc]


def dataclasses_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_describe_covers_every_setting() -> None:
    rows = config.describe()
    assert {r[0] for r in rows} >= {"REDISQ_URL", "REDISQ_CONCURRENCY", "REDISQ_LEASE_S"}
    assert all(r[3] for r in rows)  # every setting documented


def test_json_log_lines_carry_job_fields() -> None:
    import json
    import logging

    from redisq.ops.logs import JSONFormatter

    record = logging.LogRecord("redisq.worker", logging.INFO, __file__, 1,
                               "job=%s task=%s queue=%s succeeded duration_s=%.6f",
                               ("j1", "t.add", "default", 0.001), None)
    line = json.loads(JSONFormatter().format(record))
    assert line["job"] == "j1" and line["task"] == "t.add" and line["queue"] == "default"
    assert line["level"] == "info" and line["duration_s"] == "0.001000"
