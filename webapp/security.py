"""Who may do what: the checks every request passes before its view runs.

In order (docs/security.md has the threat model):

1. ``Host`` must be one of ``web_trusted_hosts`` (any port), else 400: a DNS-rebinding page
   that resolved its own name to 127.0.0.1 sends its own name.
2. Without a token (and without ``web_allow_insecure``), only loopback clients are answered
   (403): whatever the bind address, an open app never answers the network.
3. Writes (every method but GET/HEAD/OPTIONS) are refused across sites (403): an ``Origin``
   must name this host and ``Sec-Fetch-Site`` must be ``same-origin`` or ``none``, when the
   browser sends them (scripts and curl send neither). Their body must be JSON (415): a form
   or ``text/plain`` post, which a foreign page can send without asking, never gets through.
   With ``web_token`` set they need ``Authorization: Bearer <web_token>`` (401/403).
4. Reads of job data and events (:data:`READ_ENDPOINTS`) need the read token (or the write
   token) as a bearer token, or the session cookie ``POST /login`` sets: an ``EventSource``
   cannot send headers, so the dashboard logs in once and its streams carry the cookie.

``/healthz`` skips 1 and 2: load balancers probe it by address, and it tells nothing.

Mounted in a host app (``webapp.Redisq``), the checks guard redisq's own routes only: they run
as its blueprint's ``before_request``, and the host's routes never see them.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from redisq import config as rq_config

from .http import error, state, wants_html

auth = Blueprint("auth", __name__)

READ_ENDPOINTS = frozenset({"stream.events", "stream.channel_events", "stream.api_snapshot",
                            "api.job_status", "ops.metrics", "jobs.api_jobs", "jobs.api_job",
                            "jobs.api_series"})
#: Read endpoints that answer a browser with a page shell (no job data: the page reads it
#: through the endpoints above), which it may load before logging in.
SHELL_WHEN_HTML = frozenset({"api.job_status"})
OPEN_ENDPOINTS = frozenset({"ops.healthz"})
LOGIN_ENDPOINTS = frozenset({"auth.login", "auth.logout"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
COOKIE = "redisq_session"
SESSION_S = 12 * 3600.0
_SAME_SITE = frozenset({"same-origin", "none"})
_LOOPBACK_ADDRS = frozenset({"127.0.0.1", "::1"})  # the common case, without parsing


def is_json(content_type: str) -> bool:
    """``application/json`` or ``application/<something>+json`` (parameters ignored)."""
    mimetype = content_type.partition(";")[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/")
                                              and mimetype.endswith("+json"))


def host_name(host: str) -> str:
    """The name part of a Host header: ``[::1]:8000`` → ``[::1]``, ``a.b:80`` → ``a.b``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class HostRule:
    """``web_trusted_hosts``: exact names, ``.domain`` (itself and subdomains) or ``*``."""

    def __init__(self, hosts: tuple[str, ...]) -> None:
        names = {h.strip().lower() for h in hosts}
        self.any = "*" in names
        self.exact = {("[" + n.strip("[]") + "]") if ":" in n else n for n in names}
        self.suffixes = tuple(n for n in names if n.startswith("."))

    def allows(self, host: str) -> bool:
        if self.any:
            return True
        name = host_name(host).rstrip(".")
        return bool(name) and (name in self.exact or name.endswith(self.suffixes)
                               or ("." + name) in self.suffixes)


def install(target: Flask | Blueprint, settings: rq_config.Settings,
            endpoint_prefix: str = "") -> None:
    """Register the checks (and ``/login``, ``/logout``) on ``target``: the whole app
    (``create_app``), or the blueprint that mounts redisq in a host app, whose endpoints are
    named ``endpoint_prefix`` + ours (``settings`` passed :func:`redisq.config.check_web`)."""
    target.register_blueprint(auth)
    target.before_request(_Guard(settings, endpoint_prefix))


class _Guard:
    def __init__(self, settings: rq_config.Settings, endpoint_prefix: str = "") -> None:
        self.prefix = endpoint_prefix
        self.hosts = HostRule(settings.web_trusted_hosts)
        self.loopback_only = not settings.web_token and not settings.web_allow_insecure
        self.write = f"Bearer {settings.web_token}".encode() if settings.web_token else None
        read = settings.web_read_token or settings.web_token
        self.read = [f"Bearer {t}".encode() for t in {read, settings.web_token} if t]

    def __call__(self) -> Response | None:
        req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
        environ, endpoint = req.environ, req.endpoint
        if self.prefix and endpoint:
            endpoint = endpoint.removeprefix(self.prefix)
        if endpoint in OPEN_ENDPOINTS:
            return None
        if not self.hosts.allows(environ.get("HTTP_HOST", "")):
            return error(400, "untrusted Host header (web_trusted_hosts)")
        addr = environ.get("REMOTE_ADDR")  # empty on a unix socket: this machine too
        if (self.loopback_only and addr and addr not in _LOOPBACK_ADDRS
                and not rq_config.is_loopback(addr)):
            return error(403, "this web app has no token: it answers this machine only")
        if req.routing_exception is not None:
            return None  # a 404 or 405 follows: no view runs
        if environ["REQUEST_METHOD"] not in SAFE_METHODS:
            return self._check_write(environ, endpoint)
        if (endpoint in READ_ENDPOINTS and self.read and not self._reader(environ)
                and not (endpoint in SHELL_WHEN_HTML and wants_html())):
            return error(401, "this read needs a token (Authorization: Bearer <token>, or log in"
                              " on the dashboard)", headers={"WWW-Authenticate": "Bearer"})
        return None

    def _check_write(self, environ: dict[str, Any], endpoint: str | None) -> Response | None:
        site = environ.get("HTTP_SEC_FETCH_SITE")
        origin = environ.get("HTTP_ORIGIN")
        if (site is not None and site.lower() not in _SAME_SITE) or (
                origin is not None and not _same_origin(origin, environ.get("HTTP_HOST", ""))):
            return error(403, "cross-site request refused")
        if not is_json(environ.get("CONTENT_TYPE", "")):
            return error(415, "Content-Type must be application/json")
        if self.write is None or endpoint in LOGIN_ENDPOINTS:
            return None
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Bearer "):
            return error(401, "missing bearer token (Authorization: Bearer <token>)",
                         headers={"WWW-Authenticate": "Bearer"})
        # Constant-time comparison: the time taken must not tell how much of a guess was right.
        if not hmac.compare_digest(header.encode(), self.write):
            return error(403, "invalid token")
        return None

    def _reader(self, environ: dict[str, Any]) -> bool:
        header = environ.get("HTTP_AUTHORIZATION", "").encode()
        if any(hmac.compare_digest(header, t) for t in self.read):
            return True
        return _valid_session(request.cookies.get(COOKIE, ""))


def _same_origin(origin: str, host: str) -> bool:
    """Whether ``Origin`` (``scheme://host[:port]``) names the host the request was sent to.
    The scheme is not compared: behind a TLS proxy the app itself sees plain HTTP."""
    scheme, sep, netloc = origin.strip().lower().partition("://")
    return bool(sep) and scheme in ("http", "https") and netloc == host.strip().lower()


# -- the dashboard's session ----------------------------------------------------------------
def _tokens() -> list[str]:
    settings = state().settings
    return [t for t in (settings.web_read_token, settings.web_token) if t]


def _mac(token: str, expires: int) -> str:
    return hmac.new(token.encode(), f"redisq-session:{expires}".encode(),
                    hashlib.sha256).hexdigest()


def _valid_session(cookie: str) -> bool:
    """A cookie ``<expiry>.<HMAC of it under a token>``: it grants reads, never writes, ends by
    itself, and dies with the token (change the token and every session is gone)."""
    expires, _, mac = cookie.partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    given = mac.encode()
    return any(hmac.compare_digest(given, _mac(t, int(expires)).encode()) for t in _tokens())


@auth.post("/login")
def login() -> Response:
    """``{"token": "..."}`` → 200 ``{read, write}`` (what the token grants) and a session cookie
    for the reads (the dashboard's event streams), or 403."""
    body = request.get_json(silent=True)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        return error(400, "body must be {\"token\": \"...\"}")
    settings = state().settings
    if not settings.web_token:
        return current_app.json.response({"read": True, "write": True})  # nothing to log in to
    write = hmac.compare_digest(token.encode(), settings.web_token.encode())
    if not write and not any(hmac.compare_digest(token.encode(), t.encode()) for t in _tokens()):
        return error(403, "invalid token")
    expires = int(time.time() + SESSION_S)
    response = current_app.json.response({"read": True, "write": write})
    response.set_cookie(COOKIE, f"{expires}.{_mac(token, expires)}", max_age=int(SESSION_S),
                        httponly=True, samesite="Strict", secure=request.is_secure,
                        path=_cookie_path())
    return response


@auth.post("/logout")
def logout() -> Response:
    """Drop the session cookie."""
    response = current_app.json.response({"read": False})
    response.delete_cookie(COOKIE, path=_cookie_path(), httponly=True, samesite="Strict")
    return response


def _cookie_path() -> str:
    """The session cookie goes to redisq's own routes only (a host app's never see it)."""
    return f"{request.script_root}{state().url_prefix}/"
