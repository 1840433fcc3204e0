"""A real browser (Debian's headless Chromium through chromedriver) opens the dashboard of a
live server and worker, enqueues a job from the page, and sees it reach "succeeded" without a
reload. The screenshot is kept in artifacts/ as a test artifact."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from redisq import App, config
from redisq.worker import Worker
from webapp import create_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture
def live_url(redis_url: str) -> Iterator[str]:
    rq = App(redis_url)

    @rq.task(name="demo.add")
    def add(a: int, b: int) -> int:
        return a + b

    worker = Worker(rq, config.load({"block_timeout_s": 0.3, "lease_s": 1.5}, {}))
    threading.Thread(target=worker.run, daemon=True).start()
    server = make_server("127.0.0.1", 0, create_app({"RQ_APP": rq}), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    worker.stop()


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "chromium and chromium-driver must be installed (scripts/system-deps.sh)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    profile = tempfile.mkdtemp(prefix="redisq-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                 f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_enqueue_from_dashboard_reaches_succeeded_live(live_url: str, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live_url + "/")
    wait = WebDriverWait(browser, 6)
    wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    page = browser.execute_script("return performance.getEntriesByType('navigation').length")
    browser.find_element(By.ID, "args").clear()
    browser.find_element(By.ID, "args").send_keys("[40, 2]")
    browser.find_element(By.ID, "enqueue-btn").click()
    status = (By.CSS_SELECTOR, "#jobs tbody tr .status")
    wait.until(ec.text_to_be_present_in_element(status, "succeeded"))
    assert "42" in browser.find_element(By.CSS_SELECTOR, "#jobs tbody tr").text
    # Still the same document: the update came over SSE/fetch, not a reload.
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == page
    wait.until(lambda d: "default" in d.find_element(By.ID, "queues").text)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
