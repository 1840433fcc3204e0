"""Fuzz the web app (issue 12, "Done when"): 2,000 random requests (200 per test, to stay
under the per-test timeout) with random JSON bodies (random values, random field names and
types), random raw bodies, random content types and random headers, at ``/prodcons``,
``/pubsub`` and every other route. Never a 5xx, and every 202 from ``/prodcons`` is a job
really queued: its record says queued and its message is in its queue's pending list or
delayed set."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from redisq import App
from redisq.backend import keys
from webapp import create_app

EXAMPLES = 200  # x 10 tests = 2,000 requests
# No "explain" phase: it traces every line of a failing case, slower than the timeout allows.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
TOKEN = "fuzz-token-0123456789"

ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=24)
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-(10**40), 10**40)
           | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([1e308, -0.0, 5e-324])
           | st.text(max_size=16))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
deep = st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)  # raw bodies: past the parser's depth
# Raw bodies the JSON parser takes but no JSON encoder gives back (1e400 is inf).
odd = st.sampled_from([b'{"channel": "news", "message": 1e400}', b'{"channel": "news", "message": [-1e999]}',
                       b'{"task": "web.add", "args": [1e400, 1]}', b'{"task": "web.add", "delay_s": 1e400}',
                       b'{"task": "web.add", "args": [1, 2], "kwargs": {"a": 1e400}}',
                       b'{"task": "web.add", "args": [' + b"[" * 900 + b"]" * 900 + b', 1]}',
                       b'{"channel": "news", "message": ' + b"[" * 900 + b"]" * 900 + b"}"])
nested = st.integers(1, 500).map(lambda n: json.loads("[" * n + "]" * n))  # parsed: reaches the app
tasks = (st.sampled_from(["web.add", "web.once", "web.project", "web.other", "web.boom"])
         | st.text(max_size=12))
queues = st.sampled_from(["default", "other", "junk", "redisq:x", "a b", "", "x" * 300]) | values
channels = st.sampled_from(["news", "redisq:events", "__keyspace@0__:k", "a b", "", "{x}"]) | values
kwargs = st.dictionaries(st.sampled_from(["a", "b", "key", "project_id", "c"]) | st.text(max_size=6),
                         values, max_size=3)
raw_bodies = st.none() | st.none() | st.binary(max_size=64) | deep.map(str.encode) | odd
valid_prodcons = st.fixed_dictionaries(
    {"task": st.just("web.add"), "args": st.lists(st.integers(), min_size=2, max_size=2)},
    optional={"queue": st.sampled_from(["default", "other"]), "delay_s": st.floats(0, 1e6)})
prodcons_bodies = st.one_of(
    valid_prodcons,
    st.fixed_dictionaries({"task": tasks}, optional={
        "args": st.lists(values | nested, max_size=3) | values, "kwargs": kwargs | values,
        "queue": queues, "delay_s": st.floats(-10, 1e13, allow_nan=False) | values}),
    st.dictionaries(st.sampled_from(["task", "args", "kwargs", "queue", "delay_s"]) | st.text(max_size=8),
                    values, max_size=5),
    values)
pubsub_bodies = st.one_of(
    st.fixed_dictionaries({"channel": channels, "message": values | nested}),
    st.dictionaries(st.sampled_from(["channel", "message"]) | st.text(max_size=8), values, max_size=3),
    values)
content_types = st.just("application/json") | st.sampled_from([
    "application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
    "application/problem+json", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data", ""]) | ascii_text
header_names = st.sampled_from(["Origin", "Sec-Fetch-Site", "Authorization", "Host", "Cookie",
                                "Content-Length", "Transfer-Encoding", "X-Forwarded-Host"])
header_values = st.sampled_from(["http://localhost", "https://evil.example", "null", "same-origin",
                                 "cross-site", "none", f"Bearer {TOKEN}", "Bearer x", "localhost",
                                 "evil.example", "127.0.0.1:8000", "redisq_session=1.2"]) | ascii_text
headers = st.just({}) | st.dictionaries(
    header_names | ascii_text.filter(lambda s: s.isalnum()), header_values, max_size=3)


def encode(body: Any, raw: bytes | None, how: int) -> bytes:
    if raw is not None:
        return raw
    if how == 1:
        return json.dumps(body, ensure_ascii=False).encode()
    if how == 2:
        return json.dumps(body)[:-1].encode()  # truncated
    return json.dumps(body).encode()


def request(client: FlaskClient, method: str, route: str, body: bytes, ctype: str,
            extra: dict[str, str]) -> Any:
    hdrs = {k: v for k, v in extra.items() if k.lower() not in ("content-length", "transfer-encoding")}
    # Buffered: the body is read and the response closed, as a WSGI server does.
    # The path goes in as the server would pass it: the test client would read "//x" as a host.
    path, _, query = route.partition("?")
    res = client.open("/", method=method, data=body, content_type=ctype or None, headers=hdrs,
                      buffered=True, environ_overrides={"PATH_INFO": path, "QUERY_STRING": query})
    unhealthy = route == "/healthz" and res.status_code == 503  # no worker runs: by design
    assert res.status_code < 500 or unhealthy, (route, res.status_code, res.get_data()[:300])
    return res


def check_queued(rq: App, res: Any, accepted: list[tuple[str, str]]) -> None:
    if res.status_code != 202:
        return
    job_id = res.get_json()["job_id"]
    job = rq.job(job_id)
    assert job is not None and job.status == "queued", job_id
    accepted.append((job.queue, job_id))


def all_in_their_queues(rq: App, accepted: list[tuple[str, str]]) -> None:
    """Accepted and not lost: every accepted id's message is waiting (pending or delayed)."""
    waiting: set[str] = set()
    for q in {q for q, _ in accepted}:
        for raw in [*rq.client.lrange(keys.pending(q), 0, -1),
                    *rq.client.zrange(keys.delayed(q), 0, -1)]:
            waiting.add(json.loads(raw)["id"])
    missing = {j for _, j in accepted} - waiting
    assert not missing, f"{len(missing)} accepted job(s) not queued"


def fuzz_prodcons(client: FlaskClient, rq: App) -> Callable[..., None]:
    accepted: list[tuple[str, str]] = []

    @FUZZ
    @given(body=prodcons_bodies, raw=raw_bodies,
           how=st.integers(0, 6), ctype=content_types, extra=headers)
    def run(body: Any, raw: bytes | None, how: int, ctype: str, extra: dict[str, str]) -> None:
        res = request(client, "POST", "/prodcons", encode(body, raw, how), ctype, extra)
        check_queued(rq, res, accepted)

    def go() -> None:
        run()
        all_in_their_queues(rq, accepted)
        assert accepted, "no body was ever accepted: the fuzzer tests nothing"

    return go


@pytest.mark.parametrize("part", range(4))
def test_fuzz_prodcons(client: FlaskClient, rq: App, part: int) -> None:
    fuzz_prodcons(client, rq)()


def test_fuzz_prodcons_with_a_token(rq: App) -> None:
    client = create_app({"REDISQ_APP": rq, "web_token": TOKEN, "web_max_body_bytes": 2048}).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"  # random headers may replace it
    fuzz_prodcons(client, rq)()


@pytest.mark.parametrize("part", range(3))
def test_fuzz_pubsub(client: FlaskClient, rq: App, part: int) -> None:
    @FUZZ
    @given(body=pubsub_bodies, raw=raw_bodies,
           how=st.integers(0, 6), ctype=content_types, extra=headers)
    def run(body: Any, raw: bytes | None, how: int, ctype: str, extra: dict[str, str]) -> None:
        res = request(client, "POST", "/pubsub", encode(body, raw, how), ctype, extra)
        if res.status_code == 202:
            assert isinstance(res.get_json()["receivers"], int)

    run()


ROUTES = ["/", "/prodcons", "/pubsub", "/jobs/x", "/jobs/x/cancel", "/queues/default/purge",
          "/queues/default/requeue", "/api/snapshot", "/metrics", "/healthz", "/hello", "/login",
          "/logout", "/events?max_s=0", "/events/news?max_s=0", "/events/redisq:events?max_s=0",
          "/events/news", "/static/app.js", "/nope"]


@pytest.mark.parametrize("token", [None, TOKEN])
def test_fuzz_every_route(rq: App, token: str | None) -> None:
    settings_ = {"web_token": TOKEN, "web_read_token": TOKEN + "r"} if token else {}
    # Streams end at once: a random path may name one, and a buffered request waits for its end.
    client = create_app({"REDISQ_APP": rq, "web_max_body_bytes": 2048, "web_stream_max_s": 0.1,
                         **settings_}).test_client()
    rq.enqueue("web.add", [1, 2])
    rq.client.lpush(keys.dead("default"), b"junk", b'{"failed_at": "x"}')

    @FUZZ
    @given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]),
           route=st.sampled_from(ROUTES) | ascii_text.map(lambda s: "/" + s.replace("?", "")),
           body=values | st.fixed_dictionaries({"token": values}), raw=st.none() | st.binary(max_size=32),
           how=st.integers(0, 6), ctype=content_types, extra=headers)
    def run(method: str, route: str, body: Any, raw: bytes | None, how: int, ctype: str,
            extra: dict[str, str]) -> None:
        request(client, method, route, encode(body, raw, how), ctype, extra)

    run()
