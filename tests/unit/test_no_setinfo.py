"""redisq's clients send no CLIENT SETINFO (Redis 7.0 does not know it, 7.2+ and Valkey do: with
it, no single ACL would fit them all; docs/security.md). The ACL test shows it on a server that
has the command (REDISQ_TEST_SERVER=embedded); this shows it for every kind of URL."""

from __future__ import annotations

import pytest

from redisq.aio import async_client
from redisq.backend.connection import NO_SETINFO, ConnectionOptions, connect


def no_setinfo(kwargs: dict[str, object]) -> bool:
    return all(k in kwargs and kwargs[k] is None for k in NO_SETINFO)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "unix:///tmp/nowhere.sock",
                                 "rediss://127.0.0.1:1/0?ssl_cert_reqs=none"])
def test_sync_and_asyncio_clients_turn_it_off(url: str) -> None:
    assert NO_SETINFO and set(NO_SETINFO) <= {"driver_info", "lib_name", "lib_version"}
    assert no_setinfo(connect(url, "t").connection_pool.connection_kwargs)
    assert no_setinfo(async_client(url, ConnectionOptions(), 2).connection_pool.connection_kwargs)
