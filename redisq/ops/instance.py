"""The systemd template unit's entry point: ``redisq-worker@<instance>`` runs
``python -m redisq.ops.instance <instance>``, which maps the instance name to worker settings and
then runs ``redisq worker`` in this same process (so it stays systemd's main PID, the one
allowed to send READY=1 and WATCHDOG=1).

The instance name is ``<mode>-<label>`` (``prodcons-1``, ``pubsub-2``, ``prodcons-mail``):
its first dash-separated word, when it is ``prodcons`` or ``pubsub``, is the worker's mode.
Everything else (queues, channels, concurrency, ...) comes from the unit's environment files,
``/etc/redisq/redisq.env`` then ``/etc/redisq/worker-<instance>.env`` (docs/deployment.md). An
instance whose name says one mode while ``REDISQ_MODE`` says another is refused (exit 2): the
name an operator reads in ``systemctl status`` must not lie.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence

from ..errors import ConfigError

MODES = ("prodcons", "pubsub")
MODE_VAR = "REDISQ_MODE"


def mode_of(instance: str) -> str | None:
    """The mode an instance name picks (its first dash-separated word), or None."""
    word = instance.split("-", 1)[0]
    return word if word in MODES else None


def instance_env(instance: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment variables to add for ``instance``; raises :class:`ConfigError` when the
    name is empty or contradicts ``REDISQ_MODE``."""
    if not instance or instance.strip() != instance:
        raise ConfigError(f"bad worker instance name {instance!r} (e.g. prodcons-1, pubsub-1)")
    mode = mode_of(instance)
    if mode is None:
        return {}  # e.g. redisq-worker@mail: the mode comes from worker-mail.env (or default)
    configured = environ.get(MODE_VAR)
    if configured and configured != mode:
        raise ConfigError(f"worker instance {instance!r} names mode {mode!r} but "
                          f"{MODE_VAR}={configured}; rename the instance or fix the env file")
    return {MODE_VAR: mode}


def main(argv: Sequence[str] | None = None,
         environ: MutableMapping[str, str] | None = None) -> int:
    """``python -m redisq.ops.instance INSTANCE [redisq worker options...]``; returns the exit code.
    ``environ`` is the mapping the instance's settings are added to: ``os.environ`` (which the
    worker command reads) unless a test passes its own."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    if not args:
        sys.stderr.write("usage: python -m redisq.ops.instance INSTANCE [worker options]\n")
        return 2
    try:
        env.update(instance_env(args[0], env))
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    from .cli import main as cli_main

    # click (usage errors: 2) and the worker command (its exit code) both end in SystemExit;
    # catching it returns the code to the caller (a test) instead of ending the process.
    try:
        cli_main.main(["worker", *args[1:]], prog_name="redisq")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
