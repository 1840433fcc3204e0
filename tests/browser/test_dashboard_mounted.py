"""The dashboard mounted by ``webapp.Redisq`` under /queue in a host Flask app, in a real
browser: its script, styles, event stream, login and API calls all resolve under the prefix
(the page goes live over SSE, and a job enqueued from it reaches "succeeded")."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from redisq import App
from tests.browser.test_dashboard import browser, demo_app  # noqa: F401  (fixture)
from tests.support.inproc import running
from webapp import Redisq, state


@pytest.fixture
def mounted(redis_url: str) -> Iterator[tuple[str, App]]:
    rq = demo_app(redis_url)
    site = Flask("host_site")

    @site.get("/")
    def home() -> str:
        return "host home"

    Redisq(site, rq, url_prefix="/queue")
    server = make_server("127.0.0.1", 0, site, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with running(rq):
        yield f"http://127.0.0.1:{server.server_port}", rq
    server.shutdown()
    thread.join(5)
    state(site).hub.close()
    rq.close()


def test_mounted_dashboard_goes_live_and_enqueues(mounted: tuple[str, App],
                                                  browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, _ = mounted
    browser.get(base + "/queue/")
    wait = WebDriverWait(browser, 5, poll_frequency=0.05)
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))  # /queue/events
    Select(browser.find_element(By.ID, "task")).select_by_visible_text("demo.add")
    browser.find_element(By.ID, "args").clear()
    browser.find_element(By.ID, "args").send_keys("[40, 2]")
    browser.find_element(By.ID, "enqueue-btn").click()  # POST /queue/prodcons, then its job
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#jobs tbody tr .status"),
                                                "succeeded"))
    assert "42" in browser.find_element(By.CSS_SELECTOR, "#jobs tbody tr").text
    browser.find_element(By.LINK_TEXT, "prodcons").click()
    browser.find_element(By.ID, "add-btn").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "job-result"), "5"))
    assert browser.current_url == base + "/queue/prodcons"
