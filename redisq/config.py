"""One frozen settings object for every redisq process.

Precedence: command-line flag > ``REDISQ_<NAME>`` environment variable > default. An unknown
``REDISQ_*`` variable or an unknown keyword is an error (a misspelt setting that is silently
ignored is worse than a crash at start). ``REDIS_URL`` is honoured for ``url`` as the de-facto
standard variable, below ``REDISQ_URL``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError
from .limits import DEFAULT_MAX_MESSAGE_BYTES
from .model import check_name

ENV_PREFIX = "REDISQ_"

log = logging.getLogger("redisq.config")


@dataclass(frozen=True)
class Settings:
    """Every setting, its type and default; ``docs/configuration.md`` is generated from this."""

    url: str | None = None
    """Redis URL (redis://, rediss://, unix://, redis+sentinel://...), or ``embedded``; none: redis://127.0.0.1:6379/0."""
    app: str | None = None
    """Where the App lives, as ``package.module:attribute``."""
    mode: str = "prodcons"
    """Worker mode: ``prodcons`` (queues) or ``pubsub`` (channels)."""
    queues: tuple[str, ...] = ("default",)
    """Queues to consume, highest priority first; ``high:5,default:1``: weighted, none starves."""
    abort_grace_s: float = 5.0
    """How long an aborted running job may take to stop by itself before it is forced."""
    channels: tuple[str, ...] = ()
    """Channels to subscribe to in pubsub mode (default: every ``@app.subscriber``)."""
    concurrency: int = 8
    """Jobs run at once by one worker process (threads)."""
    processes: int = 1
    """Worker processes (prodcons) a supervisor forks, each with ``concurrency`` threads."""
    max_jobs_per_child: int = 0
    """A worker process is replaced (gracefully) after this many jobs (0: never)."""
    max_memory_per_child_mb: float = 0.0
    """A worker process is replaced (gracefully) once its RSS exceeds this (0: never)."""
    burst: bool = False
    """Drain the queues (nothing queued, due for retry or running), then exit."""
    grace_s: float = 30.0
    """On SIGTERM/SIGINT, how long running jobs may finish before they are requeued."""
    block_timeout_s: float = 5.0
    """Longest a blocking Redis call waits; the socket deadline is this plus a margin."""
    lease_s: float = 30.0
    """A consumer's lease: its messages are recovered this long after it stops renewing."""
    result_ttl_s: float = 86_400.0
    """How long a succeeded job's record and result are kept."""
    failure_ttl_s: float = 604_800.0
    """How long a failed or dead job's record is kept."""
    dead_max: int = 10_000
    """Most entries a queue's dead-letter list keeps."""
    index_max: int = 10_000
    """Most job ids each per-queue status index (succeeded, failed, dead...) keeps (0: none)."""
    queue_idle_ttl_s: float = 691_200.0
    """A queue with nothing queued, delayed, running or dead and no producer or worker activity
    for this long (at least the record TTLs) drops out of the queue index."""
    args_summary_bytes: int = 48
    """Bytes of its arguments a succeeded, cancelled or dead job's record keeps (0 none, -1 all)."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest message (bytes) producers send and workers parse; larger ones are refused or dead-lettered."""
    worker_id: str | None = None
    """This worker's id (default: host-pid-random)."""
    with_scheduler: bool = False
    """Run the periodic-job scheduler inside this worker."""
    health_max_age_s: float = 60.0
    """``redisq health`` fails when a worker loop has not completed an iteration for this long."""
    log_level: str = "INFO"
    """Logging level of the daemon."""
    log_format: str = "text"
    """``text`` (key=value) or ``json`` log lines."""
    data_dir: str = ".redisq"
    """Data directory of the embedded server."""
    eager: bool = False
    """Tests only: ``delay()`` runs the task inline in the caller's thread, no Redis (docs/testing.md)."""
    web_token: str | None = None
    """Write token (16+ chars): every POST needs ``Authorization: Bearer <token>``; reads too."""
    web_read_token: str | None = None
    """Read token (16+ chars; needs web_token): the reads without the writes (unset: web_token)."""
    web_trusted_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    """Host headers the web app answers (any port; ``.example.com``: and subdomains; ``*``: any)."""
    web_allow_insecure: bool = False
    """Let the web app listen beyond loopback, or trust other hosts, without a token (logged)."""
    web_channels: tuple[str, ...] = ()
    """Channels ``/pubsub`` and ``/events/<ch>`` may use (empty: any but ``redisq:*``, ``__*``)."""
    web_queues: tuple[str, ...] = ()
    """Queues ``POST /prodcons`` may name (empty: the queues the App's tasks declare)."""
    web_max_streams: int = 16
    """Most Server-Sent Events streams open at once per web process (503 beyond)."""
    web_stream_max_s: float = 300.0
    """A Server-Sent Events stream ends after this long (the browser reconnects)."""
    web_max_body_bytes: int = 65_536
    """Largest request body the web app accepts (413 beyond)."""
    web_host: str = "127.0.0.1"
    """Address ``redisq web`` listens on."""
    web_port: int = 8000
    """Port ``redisq web`` listens on."""

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in fields(Settings)}
_CHOICES = {"mode": ("prodcons", "pubsub"), "log_format": ("text", "json"),
            "log_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}


def _convert(name: str, raw: Any) -> Any:
    """Turn a flag or environment value into the field's type, or raise ConfigError."""
    kind = str(_FIELDS[name].type)
    try:
        if raw is None:
            value: Any = None
        elif "tuple" in kind:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            value = tuple(i.strip() for i in items if i.strip())
        elif kind.startswith("bool"):
            value = raw if isinstance(raw, bool) else _parse_bool(str(raw))
        elif kind.startswith("int"):
            value = int(raw)
        elif kind.startswith("float"):
            value = float(raw)
        else:
            value = str(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name}: {raw!r} is not a valid {kind}") from exc
    if isinstance(value, float) and not math.isfinite(value):  # nan slips past every comparison
        raise ConfigError(f"setting {name}: {raw!r} must be a finite number")
    if isinstance(value, tuple) and name != "web_trusted_hosts":  # host names are not names
        for item in value:
            try:
                check_name(item, name.rstrip("s"))
            except ValueError as exc:
                raise ConfigError(f"setting {name}: {exc}") from None
    if name in _CHOICES and value is not None:
        value = value.upper() if name == "log_level" else value
        if value not in _CHOICES[name]:
            raise ConfigError(f"setting {name}: {value!r} is not one of {_CHOICES[name]}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"setting {name}: {value!r} must not be negative")
    return value


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


def load(overrides: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``overrides`` (flags; None values mean "not given") over the environment
    over the defaults. Raises :class:`ConfigError` for unknown names or bad values."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        name = var[len(ENV_PREFIX):].lower()
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {var} (known: "
                              f"{', '.join(ENV_PREFIX + n.upper() for n in _FIELDS)})")
        values[name] = _convert(name, raw)
    if "url" not in values and env.get("REDIS_URL"):
        values["url"] = env["REDIS_URL"]
    for name, raw in (overrides or {}).items():
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        if raw is not None:
            values[name] = _convert(name, raw)
    settings = Settings(**values)
    queue_weights(settings.queues)  # raises ConfigError for a bad weight
    if not settings.queues:
        raise ConfigError("setting queues must name at least one queue")
    if settings.concurrency < 1:
        raise ConfigError("setting concurrency must be >= 1")
    if settings.processes < 1:
        raise ConfigError("setting processes must be >= 1")
    if settings.max_message_bytes < 1:
        raise ConfigError("setting max_message_bytes must be >= 1")
    if settings.block_timeout_s <= 0 or settings.lease_s <= settings.block_timeout_s:
        raise ConfigError("settings need 0 < block_timeout_s < lease_s")
    return settings


def queue_weights(queues: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...] | None]:
    """Split ``("high:5", "default:1")`` into names and weights; ``(names, None)`` when no
    item carries a weight (strict priority order). A weight is the digits after the last
    colon (a queue whose name ends in ``:<digits>`` is written with an explicit weight)."""
    names: list[str] = []
    weights: list[int] = []
    for item in queues:
        name, sep, weight = item.rpartition(":")
        if sep and weight.isdigit() and name:
            names.append(name)
            weights.append(int(weight))
        else:
            names.append(item)
            weights.append(0)
    if not any(weights):
        return tuple(names), None
    if len(set(names)) != len(names):
        raise ConfigError(f"setting queues names a queue twice: {','.join(queues)}")
    if not all(weights):
        raise ConfigError("setting queues: give every queue a weight (high:5,default:1) or none")
    return tuple(names), tuple(weights)


def eager_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """``REDISQ_EAGER`` as a bool (an App given no ``eager=`` reads it; a bad value is a
    :class:`ConfigError`, as for every setting)."""
    raw = (os.environ if environ is None else environ).get(ENV_PREFIX + "EAGER")
    return bool(_convert("eager", raw)) if raw is not None else False


MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, IPv6 with or without brackets) is this machine."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_web(settings: Settings, bind_host: str | None = None) -> None:
    """Refuse web settings that leave the web app open: a token shorter than
    :data:`MIN_TOKEN_CHARS`, a read token without a write token, and, without a token, a
    non-loopback ``bind_host`` or trusted host (unless ``web_allow_insecure``: then a WARNING)."""
    for name in ("web_token", "web_read_token"):
        token = getattr(settings, name)
        if token is not None and len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"setting {name} must be at least {MIN_TOKEN_CHARS} characters"
                              f" (an empty or short token protects nothing)")
    if not settings.web_trusted_hosts:
        raise ConfigError("setting web_trusted_hosts is empty: the web app would answer no"
                          " request (* trusts any Host)")
    if settings.web_read_token and not settings.web_token:
        raise ConfigError("setting web_read_token needs web_token too (the writes would be open)")
    if settings.web_token:
        return
    exposed = [h for h in settings.web_trusted_hosts if not is_loopback(h)]
    if bind_host is not None and not is_loopback(bind_host):
        exposed.insert(0, f"listening on {bind_host}")
    if not exposed:
        return
    what = ", ".join(exposed)
    if not settings.web_allow_insecure:
        raise ConfigError(f"the web app would be reachable beyond this machine ({what}) without"
                          f" a token: set {ENV_PREFIX}WEB_TOKEN (16+ characters), or"
                          f" {ENV_PREFIX}WEB_ALLOW_INSECURE=true to run it open anyway")
    log.warning("web app without a token reachable beyond this machine (%s): anyone who reaches"
                " it may enqueue, publish, cancel and purge (web_allow_insecure)", what)


def describe() -> list[tuple[str, str, str, str]]:
    """(env var, type, default, description) for each setting, for generated docs."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    tree = ast.parse(inspect.getsource(Settings))
    body = tree.body[0].body  # type: ignore[attr-defined]
    for prev, node in itertools.pairwise(body):
        if (isinstance(prev, ast.AnnAssign) and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)):
            docs[prev.target.id] = str(node.value.value)  # type: ignore[union-attr]
    out = []
    for f in fields(Settings):
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        out.append((ENV_PREFIX + f.name.upper(), str(f.type), repr(shown), docs.get(f.name, "")))
    return out
