"""The dashboard behind a token, in a real browser: before the token is typed the page loads
(CSP-clean, no inline code) and says a token is required; once it is typed, the page logs in
(POST /login sets an HttpOnly session cookie), its event stream (an EventSource, which cannot
send headers) carries the cookie and goes live, and an enqueue from the page (a bearer token in
a same-origin JSON POST) reaches "succeeded". A forged job row never reaches the page."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from redisq import App
from redisq.backend import keys
from tests.browser.test_dashboard import browser, demo_app  # noqa: F401 (the fixture)
from tests.support.inproc import running
from webapp import create_app

WRITE = "browser-write-token-0123"


@pytest.fixture
def guarded(redis_url: str) -> Iterator[tuple[str, App]]:
    rq = demo_app(redis_url)
    server = make_server("127.0.0.1", 0, create_app({"REDISQ_APP": rq, "web_token": WRITE}),
                         threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with running(rq):
        yield f"http://127.0.0.1:{server.server_port}", rq
        rq.client.set("gate", 1)
    server.shutdown()
    thread.join(5)
    rq.close()


def test_dashboard_logs_in_with_the_token(guarded: tuple[str, App], browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, rq = guarded
    browser.get(base + "/")
    wait = WebDriverWait(browser, 6, poll_frequency=0.05)
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "token required"))
    token = browser.find_element(By.ID, "token")
    token.send_keys(WRITE)
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", token)
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    # The session cookie is HttpOnly: the page's script cannot read it.
    assert "redisq_session" not in browser.execute_script("return document.cookie")
    assert any(c["name"] == "redisq_session" and c["httpOnly"] for c in browser.get_cookies())
    Select(browser.find_element(By.ID, "task")).select_by_visible_text("demo.add")
    browser.find_element(By.ID, "args").clear()
    browser.find_element(By.ID, "args").send_keys("[40, 2]")
    browser.find_element(By.ID, "enqueue-btn").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#jobs tbody tr .status"),
                                                "succeeded"))
    assert "42" in browser.find_element(By.CSS_SELECTOR, "#jobs tbody tr").text
    # A forged snapshot published straight to Redis never reaches the page.
    rq.client.publish(keys.EVENTS_CHANNEL, json.dumps(
        {"type": "snapshot", "queues": {"FORGED": {"depth": "<b id=forged>x</b>"}},
         "workers": [], "failures": [], "running": [], "scheduled": []}))
    wait.until(ec.text_to_be_present_in_element((By.ID, "workers"), "prodcons"))
    assert "FORGED" not in browser.find_element(By.ID, "queues").text
    assert not browser.find_elements(By.ID, "forged")
    # Reloaded, the page logs in again from the session's stored token.
    browser.refresh()
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
