"""A real browser (Debian's headless Chromium through chromedriver) opens the dashboard of a
live server and worker, enqueues a job from the page, and sees it reach "succeeded" without a
reload; running jobs show their progress bar and dead letters their error. The screenshot is
kept in artifacts/dashboard.png as a test artifact."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from redisq import App, current_job
from tests.support.inproc import running
from webapp import create_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-extensions",
                  "--window-size=1280,1000")


def demo_app(url: str) -> App:
    rq = App(url)

    @rq.task(name="demo.add")
    def add(a: int, b: int) -> int:
        return a + b

    @rq.task(name="demo.fail", retries=0)
    def fail(reason: str) -> None:
        raise RuntimeError(reason)

    @rq.task(name="demo.slow_count")
    def slow_count(n: int) -> int:
        current_job().progress(0.4, f"step 4 of {n}")
        deadline = time.monotonic() + 5
        while not rq.client.exists("gate") and time.monotonic() < deadline:
            time.sleep(0.01)  # the test opens the gate once it has seen the progress bar
        return n

    return rq


@pytest.fixture
def live(redis_url: str) -> Iterator[tuple[str, App]]:
    rq = demo_app(redis_url)
    server = make_server("127.0.0.1", 0, create_app({"REDISQ_APP": rq}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with running(rq):
        yield f"http://127.0.0.1:{server.server_port}", rq
        rq.client.set("gate", 1)
    server.shutdown()
    thread.join(5)
    rq.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "chromium and chromium-driver must be installed (scripts/system-deps.sh)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    profile = tempfile.mkdtemp(prefix="redisq-chromium-")  # a new, empty profile every time
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_enqueue_from_dashboard_reaches_succeeded_live(live: tuple[str, App], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, rq = live
    browser.get(base + "/")
    wait = WebDriverWait(browser, 5, poll_frequency=0.05)
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    navigations = browser.execute_script("return performance.getEntriesByType('navigation').length")
    Select(browser.find_element(By.ID, "task")).select_by_visible_text("demo.add")
    browser.find_element(By.ID, "args").clear()
    browser.find_element(By.ID, "args").send_keys("[40, 2]")
    browser.find_element(By.ID, "enqueue-btn").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#jobs tbody tr .status"),
                                                "succeeded"))
    assert "42" in browser.find_element(By.CSS_SELECTOR, "#jobs tbody tr").text
    # A failure and a job that is half way show up by themselves (snapshots over SSE).
    rq.enqueue("demo.fail", ["disk full"])
    rq.enqueue("demo.slow_count", [10])
    wait.until(ec.text_to_be_present_in_element((By.ID, "failures"), "RuntimeError: disk full"))
    wait.until(ec.text_to_be_present_in_element((By.ID, "running"), "step 4 of 10"))
    bar = browser.find_element(By.CSS_SELECTOR, "#running .bar")
    assert bar.get_attribute("aria-valuenow") == "40"
    assert browser.execute_script("return arguments[0].firstElementChild.style.width", bar) == "40%"
    wait.until(ec.text_to_be_present_in_element((By.ID, "workers"), "prodcons"))
    # Still the same document: every update came over SSE/fetch, not a reload.
    assert browser.execute_script(
        "return performance.getEntriesByType('navigation').length") == navigations
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))


def test_prodcons_and_pubsub_demo_pages(live: tuple[str, App], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, rq = live
    wait = WebDriverWait(browser, 5, poll_frequency=0.05)
    browser.get(base + "/prodcons")
    browser.find_element(By.ID, "add-btn").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "job-result"), "5"))
    assert browser.find_element(By.ID, "job-status").text == "succeeded"
    browser.get(base + "/pubsub")
    # The page follows its channel over /events/<channel>; wait until that bridge subscribed.
    wait.until(lambda _: rq.client.pubsub_numsub("events")[0][1] == 1)
    browser.find_element(By.ID, "pub-btn").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "messages"), '{"kind":"hello"}'))
    assert browser.find_element(By.ID, "receivers").text == "1"
