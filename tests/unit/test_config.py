"""Settings: flag > REDISQ_* environment > default, and a clear ConfigError for anything else."""

from __future__ import annotations

import dataclasses

import pytest

from redisq import config
from redisq.config import Settings
from redisq.errors import ConfigError


def test_defaults_with_an_empty_environment() -> None:
    assert config.load({}, {}) == Settings()
    assert Settings().queues == ("default",) and Settings().concurrency == 8


def test_flag_beats_env_beats_default() -> None:
    env = {"REDISQ_CONCURRENCY": "4", "REDISQ_GRACE_S": "2.5", "REDISQ_QUEUES": "high, default,"}
    s = config.load({"concurrency": 2, "burst": None, "queues": None}, env)
    assert s.concurrency == 2  # flag
    assert s.grace_s == 2.5 and s.queues == ("high", "default")  # env (None flags: not given)
    assert s.lease_s == Settings().lease_s  # default


def test_url_precedence() -> None:
    assert config.load({}, {"REDIS_URL": "redis://a"}).url == "redis://a"
    assert config.load({}, {"REDIS_URL": "redis://a", "REDISQ_URL": "redis://b"}).url == "redis://b"
    assert config.load({"url": "redis://c"}, {"REDISQ_URL": "redis://b"}).url == "redis://c"


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("TRUE", True), ("yes", True),
                                            ("on", True), ("0", False), ("off", False),
                                            ("", False), (" no ", False)])
def test_booleans_from_the_environment(raw: str, value: bool) -> None:
    assert config.load({}, {"REDISQ_BURST": raw}).burst is value


def test_choices_are_checked_and_log_level_is_case_insensitive() -> None:
    assert config.load({}, {"REDISQ_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert config.load({"mode": "pubsub"}, {}).mode == "pubsub"


def test_unknown_environment_variable_is_an_error_that_names_it() -> None:
    with pytest.raises(ConfigError, match="REDISQ_FOO") as info:
        config.load({}, {"REDISQ_FOO": "1"})
    assert "REDISQ_CONCURRENCY" in str(info.value)  # and lists what is known
    assert config.load({}, {"REDIS_FOO": "1", "OTHER_QUEUES": "x"}) == Settings()


def test_unknown_keyword_is_an_error() -> None:
    with pytest.raises(ConfigError, match="concurency"):
        config.load({"concurency": 4}, {})


@pytest.mark.parametrize(("name", "raw"), [
    ("concurrency", "many"), ("concurrency", "2.5"), ("grace_s", "soon"), ("burst", "maybe"),
    ("mode", "fanout"), ("log_format", "xml"), ("log_level", "LOUD"), ("lease_s", "-1"),
    ("grace_s", "nan"), ("lease_s", "inf"), ("block_timeout_s", "-inf"), ("concurrency", "0"),
    ("queues", ""), ("queues", " , "), ("queues", "has space"), ("queues", "a,{b}"),
    ("channels", "bad name"), ("web_port", "-80"), ("dead_max", "1e3"),
])
def test_bad_values_from_the_environment(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        config.load({}, {f"REDISQ_{name.upper()}": raw})


@pytest.mark.parametrize("flags", [{"concurrency": 0}, {"lease_s": 5, "block_timeout_s": 5},
                                   {"lease_s": 5, "block_timeout_s": 10},
                                   {"block_timeout_s": 0}, {"grace_s": -1},
                                   {"result_ttl_s": float("nan")}, {"queues": ()}])
def test_bad_values_from_flags(flags: dict) -> None:
    with pytest.raises(ConfigError):
        config.load(flags, {})


def test_settings_are_frozen_and_replace_returns_a_copy() -> None:
    s = config.load({}, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.concurrency = 3  # type: ignore[misc]
    assert s.replace(concurrency=3).concurrency == 3 and s.concurrency == 8


def test_describe_covers_every_setting() -> None:
    rows = config.describe()
    assert len(rows) == len(dataclasses.fields(Settings))
    assert all(env.startswith("REDISQ_") and doc for env, _, _, doc in rows)
