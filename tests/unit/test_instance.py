"""redisq.ops.instance: the systemd instance name picks the worker's mode."""

from __future__ import annotations

import pytest

from redisq.errors import ConfigError
from redisq.ops.instance import instance_env, main, mode_of


@pytest.mark.parametrize(("instance", "mode"), [
    ("prodcons-1", "prodcons"), ("pubsub-2", "pubsub"), ("prodcons", "prodcons"),
    ("prodcons-mail-1", "prodcons"), ("mail-1", None), ("pubsubx-1", None), ("1", None)])
def test_mode_of(instance: str, mode: str | None) -> None:
    assert mode_of(instance) == mode


def test_name_sets_the_mode() -> None:
    assert instance_env("pubsub-1", {}) == {"REDISQ_MODE": "pubsub"}
    assert instance_env("pubsub-1", {"REDISQ_MODE": "pubsub"}) == {"REDISQ_MODE": "pubsub"}
    assert instance_env("mail-1", {"REDISQ_MODE": "pubsub"}) == {}  # the env file decides


@pytest.mark.parametrize("instance", ["", " prodcons-1"])
def test_bad_names_are_refused(instance: str) -> None:
    with pytest.raises(ConfigError, match="bad worker instance name"):
        instance_env(instance, {})


def test_contradiction_is_refused() -> None:
    with pytest.raises(ConfigError, match="names mode 'pubsub' but REDISQ_MODE=prodcons"):
        instance_env("pubsub-1", {"REDISQ_MODE": "prodcons"})


def test_main_exits_2_before_running_anything(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"REDISQ_MODE": "prodcons"}
    assert main(["pubsub-1"], env) == 2
    assert "names mode 'pubsub'" in capsys.readouterr().err
    assert main([], {}) == 2
    assert env == {"REDISQ_MODE": "prodcons"}  # left as it was


def test_main_hands_over_to_the_worker_command(capsys: pytest.CaptureFixture[str]) -> None:
    """The worker command runs with the mapped mode; here it stops at its own configuration
    check (no app), which proves the hand-over and the exit code path."""
    env: dict[str, str] = {}
    assert main(["pubsub-1", "--concurrency", "0"], env) == 2
    assert env == {"REDISQ_MODE": "pubsub"}
    assert "concurrency" in capsys.readouterr().err
