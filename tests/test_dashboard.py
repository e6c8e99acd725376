"""The dashboard URL that `up` prints serves Dask's Bokeh status page, loaded in a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from distributed import Client

from conftest import ARTIFACTS, hc, household_inventory

pytestmark = pytest.mark.household
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As the probe of this machine found: without these, Chromium keeps trying to reach Google and is refused.
FLAGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def screenshot(url: str, path: Path) -> tuple[str, int]:
    """Load `url` in headless Chromium (driven by Playwright), wait until Bokeh has drawn the plots;
    return the page title and the number of Bokeh canvases, and save a screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, chromium_sandbox=False)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url, timeout=30_000)
            page.wait_for_function("document.querySelectorAll('.bk-Figure, .bk-figure').length >= 3",
                                   timeout=30_000)
            page.wait_for_timeout(2_000)  # let the streaming plots fill in before the picture is taken
            page.screenshot(path=str(path))
            figures = page.evaluate("document.querySelectorAll('.bk-Figure, .bk-figure').length")
            return page.title(), figures
        finally:
            browser.close()


def busy(client: Client, stop: threading.Event) -> None:
    """Keep the workers busy so the task stream has something to show."""
    while not stop.is_set():
        client.gather(client.map(time.sleep, [0.05] * 40, pure=False))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")
def test_dashboard_url_serves_bokeh_status_page(household, tmp_path, cleanup):
    inv = household_inventory(household, tmp_path / "inventory.yaml", "dash",
                              cluster_extra={"scheduler_port": 8780, "dashboard_port": 8781})
    cleanup(inv)
    up = hc("up", inv=inv)
    assert up.returncode == 0, up.stdout + up.stderr
    url = re.search(r"^dashboard: (\S+)$", up.stdout, re.M).group(1)
    assert url == f"http://{household.host('desktop').address}:8781/status"
    stop = threading.Event()
    with Client(f"tcp://{household.host('desktop').address}:8780", timeout=10) as client:
        worker = threading.Thread(target=busy, args=(client, stop), daemon=True)
        worker.start()
        try:
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "dashboard.png"
            title, figures = screenshot(url, shot)
        finally:
            stop.set()
            worker.join(timeout=30)
    assert title == "Dask: Status"
    assert figures >= 3
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    if os.environ.get("UPDATE_SCREENSHOT"):
        shutil.copy(shot, Path(__file__).parent.parent / "docs" / "dashboard.png")
