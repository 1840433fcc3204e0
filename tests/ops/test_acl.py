"""The ACL user of docs/security.md is enough for everything redisq does, and not more than
it needs: its command list covers every redis.call() of the Lua scripts and every command the
exercise (tests/ops/acl_exercise.py) sends, and each command it allows is used by one or the
other."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from redisq.backend.embedded import RedisServer
from tests.ops.acl_exercise import exercise

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
LUA = ROOT / "redisq" / "backend" / "lua"
# Allowed but not sent by the exercise, and why: SELECT only for a URL with a database other
# than 0; AUTH by clients that authenticate without HELLO (RESP2 before redis-py 8, redis-cli).
NOT_EXERCISED = {"select", "auth"}
# Commands the test's own admin connection sends, not the ACL user.
ADMIN = {"config|resetstat", "info", "acl|setuser", "acl|log"}


def documented_acl() -> list[str]:
    """The arguments of the documented `redis-cli ACL SETUSER ...` command, as a shell sees them."""
    block = re.search(r"```sh\n(redis-cli ACL SETUSER .*?)```", DOC.read_text(), re.S)
    assert block, "security.md lost its ACL SETUSER block"
    words = shlex.split(block.group(1).replace("\\\n", " "))
    return words[3:]  # after redis-cli ACL SETUSER


def allowed_commands() -> set[str]:
    return {w[1:].lower() for w in documented_acl() if w.startswith("+")}


def lua_commands() -> set[str]:
    found = set()
    for script in LUA.glob("*.lua"):
        found |= {m.lower() for m in re.findall(r"redis\.p?call\(\s*['\"](\w+)['\"]",
                                                script.read_text())}
    return found


def test_acl_covers_every_lua_command() -> None:
    assert lua_commands(), "no redis.call() found: the pattern is stale"
    assert lua_commands() <= allowed_commands(), lua_commands() - allowed_commands()


def test_acl_is_safe() -> None:
    """No categories (a category such as @connection also grants CLIENT KILL and PAUSE), only
    redisq's keys, and nothing dangerous."""
    words = documented_acl()
    assert "-@all" in words and not [w for w in words if w.startswith("+@")]
    assert [w for w in words if w.startswith("~")] == ["~redisq:*"]
    dangerous = {"flushall", "flushdb", "keys", "config", "eval", "script|flush", "debug",
                 "client|kill", "shutdown", "acl"}
    assert not allowed_commands() & dangerous


def test_documented_acl_suffices_and_is_used(server: RedisServer) -> None:
    """The same ACL on every server: Redis 7.0 (no CLIENT SETINFO), 7.2+ and Valkey 8 (which
    have it, and redisq does not send it: backend.connection.NO_SETINFO). Run the suite with
    REDISQ_TEST_SERVER=embedded for Valkey."""
    admin = server.client()
    admin.execute_command("ACL", "SETUSER", *documented_acl())
    admin.config_resetstat()
    exercise(f"redis://redisq:change-me@127.0.0.1:{server.port}/0")
    denied = admin.execute_command("ACL", "LOG")
    assert not denied, denied  # nothing was refused, not even an error redisq swallowed
    stats = admin.info("commandstats")
    used = {name.removeprefix("cmdstat_") for name, s in stats.items() if s["calls"]} - ADMIN
    assert used <= allowed_commands(), used - allowed_commands()
    # INFO: the admin connection sends it too, so commandstats cannot tell; that the user
    # needs it shows in ACL LOG (above) without it.
    unused = allowed_commands() - used - lua_commands() - NOT_EXERCISED - {"info"}
    assert not unused, f"allowed but never needed: {sorted(unused)}"
