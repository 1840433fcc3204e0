"""Key layout: one Cluster slot per queue, distinct keys per role, names that cannot break
the hash tag."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from redisq.backend import keys


def queue_keys(q: str, consumer: str = "c1") -> list[str]:
    return [keys.pending(q), keys.processing(q, consumer), keys.lease(q, consumer),
            keys.consumers(q), keys.delayed(q), keys.dead(q), keys.stats(q), keys.job(q, "j1"),
            keys.unique(q, "u"), keys.periodic_last(q, "tick"), keys.done(q),
            keys.done_bucket(q, 1_764_765_600_000), keys.wf_state(q, "g1"),
            keys.wf_results(q, "g1"), keys.wf_active(q), keys.wf_sent(q, "j1"),
            keys.wf_held(q, "j1"), keys.wf_wait(q, "j1"), keys.wf_deps(q, "j1"),
            keys.wf_parents(q)]


@pytest.mark.parametrize("q", ["default", "high", "emails.v2", "a:b", "ünïcode"])
def test_every_key_of_a_queue_is_in_one_cluster_slot(q: str) -> None:
    """A Lua step touches several keys of one queue; in a Cluster they must share a slot."""
    slots = {key_slot(k.encode()) for k in queue_keys(q)}
    assert len(slots) == 1
    assert all(f"{{{q}}}" in k for k in queue_keys(q))


def test_keys_of_one_queue_are_distinct_and_prefixed() -> None:
    """No two roles share a key, and every key lives under the redisq prefix."""
    ks = queue_keys("q")
    assert len(set(ks)) == len(ks)
    assert all(k.startswith(f"{keys.PREFIX}:") for k in ks)


def test_keys_of_different_consumers_and_queues_differ() -> None:
    assert keys.processing("q", "a") != keys.processing("q", "b")
    assert keys.lease("q", "a") != keys.lease("q", "b")
    assert keys.pending("q1") != keys.pending("q2")


def test_job_prefix_builds_the_job_key() -> None:
    """reserve.lua derives a record key as prefix .. id: it must equal keys.job()."""
    assert keys.job_prefix("q") + "abc" == keys.job("q", "abc")


def test_the_scripts_build_a_done_bucket_from_the_index_key() -> None:
    """settle.lua, record.lua (and reserve/start) build a bucket's key as index .. ':' .. end."""
    assert keys.done("q") + ":42" == keys.done_bucket("q", 42)
    assert not keys.done_bucket("q", 42).startswith(keys.job_prefix("q"))


def test_channel_keys_carry_the_channel_tag() -> None:
    for k in (keys.stream("news"), keys.channel_dead("news")):
        assert "{news}" in k
    assert key_slot(keys.stream("news").encode()) == key_slot(keys.channel_dead("news").encode())
    assert "{name}" in keys.lock("name")


@pytest.mark.parametrize("bad", ["", "a b", "x{y}", "x}", "{x", "a\n", "a\r", "a\tb",
                                 "x" * 129, "é" * 65, "\x1b[31mred", "a\x00", "a\u2028b",
                                 "a\u00a0b", "\x7f"])
def test_unusable_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        keys.check_name(bad)


@pytest.mark.parametrize("bad", [None, 3, b"bytes"])
def test_non_string_names_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        keys.check_name(bad)  # type: ignore[arg-type]


def test_good_names_pass_through_and_errors_say_what() -> None:
    assert keys.check_name("x" * 128) == "x" * 128
    assert keys.check_name("é" * 64) == "é" * 64  # 128 bytes
    assert keys.check_name("orders.created", "channel") == "orders.created"
    with pytest.raises(ValueError, match="channel name"):
        keys.check_name("a b", "channel")
