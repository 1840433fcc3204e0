"""Redis URLs, parsed in one place for the sync and the asyncio clients: which URL to use, how
to show it, its TLS options and the hosts a Sentinel or Cluster URL names.

* **Which URL.** An explicit URL, else ``$REDISQ_URL``, else ``$REDIS_URL``, else
  :data:`DEFAULT_URL` (``redis://127.0.0.1:6379/0``, as every other Redis client does). The
  embedded server is started only when asked for by name (:data:`EMBEDDED`, ``url="embedded"``
  or ``REDISQ_URL=embedded``) or by ``redisq up`` / ``redisq server``: a process that silently
  started a private server would queue jobs that no worker ever sees.
* **Showing a URL.** :func:`redact` hides the password; use it wherever a URL reaches a log
  line, an error message or a banner.
* **TLS.** :func:`tls_kwargs` reads the TLS options of a ``rediss://`` URL (also
  ``rediss+sentinel://`` and ``rediss+cluster://``); hostname checking is on unless the URL
  turns it off, whatever the redis-py version's own default (off before redis-py 6).
* **Several hosts.** :func:`url_hosts` and :func:`sentinel_target` read what a
  ``redis+sentinel://`` or ``redis+cluster://`` URL names.

Pure parsing (no clients, no I/O): :mod:`redisq.backend.connection`,
:mod:`redisq.backend.cluster` and :mod:`redisq.aio` all build their clients from what this
module reads, so a URL means the same thing to all of them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError

log = logging.getLogger("redisq.connection")

#: The URL used when none is configured: a local Redis on its standard port.
DEFAULT_URL = "redis://127.0.0.1:6379/0"
#: The URL that names the embedded server (started on first use, data in ``$REDISQ_DATA_DIR``).
EMBEDDED = "embedded"

#: Query options of a TLS URL that redisq reads itself (the others go to redis-py).
TLS_PARAMS = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs",
              "ssl_check_hostname")
_CERT_REQS = ("none", "optional", "required")
_warned: set[tuple[str, str]] = set()  # (message, where): say it once per process, not per client


@dataclass(frozen=True)
class ConnectionOptions:
    """How connections behave; see the module docstring for why each exists."""

    block_timeout_s: float = 5.0
    read_margin_s: float = 2.0
    connect_timeout_s: float = 5.0
    keepalive_idle_s: int = 10
    keepalive_interval_s: int = 5
    keepalive_count: int = 3
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_ca_path: str | None = None
    ssl_check_hostname: bool = True

    @property
    def socket_timeout_s(self) -> float:
        """Read deadline: longer than the longest block, so a live server always answers first."""
        return self.block_timeout_s + self.read_margin_s


def _once(level: int, msg: str, where: str) -> None:
    if (msg, where) not in _warned:
        _warned.add((msg, where))
        log.log(level, msg, where or "Redis")


def configured_url(url: str | None) -> str:
    """``url``, else ``$REDISQ_URL``, else ``$REDIS_URL``, else :data:`DEFAULT_URL`; may be
    :data:`EMBEDDED` (nothing is started here)."""
    return url or os.environ.get("REDISQ_URL") or os.environ.get("REDIS_URL") or DEFAULT_URL


def is_embedded(url: str | None) -> bool:
    """Whether ``url`` names the embedded server."""
    return url is not None and url.strip().lower() == EMBEDDED


def redact(url: str | None) -> str:
    """``url`` with its password replaced by ``***`` (user name, host and options kept), for
    logs, errors and banners. Text that does not parse as a URL is shown as ``***`` whole
    rather than risk showing a secret."""
    if url is None:
        return "None"
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "***"
    if not password:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def split_tls_query(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its TLS query options, and those options (the last of each)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    tls = {k: v for k, v in pairs if k in TLS_PARAMS}
    rest = urlencode([(k, v) for k, v in pairs if k not in TLS_PARAMS])
    return urlunsplit(parts._replace(query=rest)), tls


def _bool(name: str, value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "yes", "true", "on"):
        return True
    if low in ("0", "no", "false", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def tls_kwargs(opts: ConnectionOptions, query: dict[str, list[str]] | dict[str, str],
               where: str = "") -> dict[str, Any]:
    """redis-py's TLS keyword arguments from a URL's query (``parse_qs`` or plain dict) over
    ``opts``. ``ssl_check_hostname`` is always passed explicitly (default true) so the
    behaviour does not depend on the redis-py version; ``ssl_cert_reqs=none`` (no certificate
    check at all) is logged at WARNING once per ``where`` (the redacted URL)."""
    def pick(name: str, default: Any) -> Any:
        value = query.get(name)
        if value is None:
            return default
        return value[-1] if isinstance(value, list) else value

    reqs = str(pick("ssl_cert_reqs", opts.ssl_cert_reqs)).strip().lower()
    if reqs not in _CERT_REQS:
        raise ConfigError(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}, not {reqs!r}")
    check = pick("ssl_check_hostname", opts.ssl_check_hostname)
    check = _bool("ssl_check_hostname", check) if isinstance(check, str) else bool(check)
    if reqs == "none":
        # Hostname checking needs a verified certificate; older redis-py versions raise when
        # both are asked for, newer ones ignore it.
        check = False
        _once(logging.WARNING, "TLS without certificate verification (ssl_cert_reqs=none) "
              "for %s: anyone on the path can impersonate the server", where)
    elif not check:
        _once(logging.INFO, "TLS hostname checking is off (ssl_check_hostname=false) for %s",
              where)
    out = {
        "ssl_ca_certs": pick("ssl_ca_certs", opts.ssl_ca_certs),
        "ssl_certfile": pick("ssl_certfile", opts.ssl_certfile),
        "ssl_keyfile": pick("ssl_keyfile", opts.ssl_keyfile),
        "ssl_cert_reqs": reqs,
        "ssl_check_hostname": check,
    }
    ca_path = pick("ssl_ca_path", opts.ssl_ca_path)
    if ca_path:  # only when given: redis.asyncio before redis-py 8 has no such keyword
        out["ssl_ca_path"] = ca_path
    return out


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names: the sentinels, the master's service name, the
    database and the master's credentials."""

    hosts: list[tuple[str, int]]
    service: str
    db: int
    username: str | None
    password: str | None


def url_hosts(parsed: Any, default_port: int) -> list[tuple[str, int]]:
    """The ``h1:p1,h2:p2`` host list of a Sentinel or Cluster URL (a urlparse result)."""
    hosts = []
    for part in parsed.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = part.partition(":")
        hosts.append((host or "localhost", int(port or default_port)))
    return hosts


def sentinel_target(parsed: Any) -> SentinelTarget:
    """Parse ``redis+sentinel://[user:pass@]h1:26379,h2:26379/mymaster/0`` (a urlparse result)."""
    hosts = url_hosts(parsed, 26379)
    path = [p for p in parsed.path.split("/") if p]
    if not path:
        raise ConfigError("a sentinel URL needs the master name: redis+sentinel://h:26379/mymaster/0")
    return SentinelTarget(hosts, path[0], int(path[1]) if len(path) > 1 else 0,
                          unquote(parsed.username) if parsed.username else None,
                          unquote(parsed.password) if parsed.password else None)


def sentinel_tls(parsed: Any, opts: ConnectionOptions) -> dict[str, Any]:
    """For ``rediss+sentinel://``: the TLS keywords of the connections to the sentinels
    themselves (the same options as the master's: a deployment that encrypts its master
    encrypts its sentinels too, or the master's address travels in clear); else ``{}``."""
    if not parsed.scheme.lower().startswith("rediss"):
        return {}
    return {"ssl": True, **tls_kwargs(opts, parse_qs(parsed.query), redact(parsed.geturl()))}


__all__ = ["DEFAULT_URL", "EMBEDDED", "TLS_PARAMS", "ConnectionOptions", "SentinelTarget",
           "configured_url", "is_embedded", "redact", "sentinel_target", "sentinel_tls",
           "split_tls_query", "tls_kwargs", "url_hosts"]
