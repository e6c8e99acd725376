"""The dashboard URL that `up` prints serves Dask's Bokeh status page, loaded in a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from distributed import Client

from homecluster import connect

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


def load_while_busy(inv: Path, url: str, shot: Path) -> tuple[str, int]:
    """Keep the cluster busy while the page loads in Chromium; its title and figure count."""
    stop = threading.Event()
    with connect(str(inv)) as client:
        worker = threading.Thread(target=busy, args=(client, stop), daemon=True)
        worker.start()
        try:
            ARTIFACTS.mkdir(exist_ok=True)
            return screenshot(url, shot)
        finally:
            stop.set()
            worker.join(timeout=30)


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")
def test_private_dashboard_opens_through_the_ssh_tunnel(household, tmp_path, cleanup):
    """The default: the dashboard listens on the scheduler host's loopback only (nobody on the LAN sees it);
    `homecluster dashboard` tunnels to it over SSH and the page works in a real browser."""
    inv = household_inventory(household, tmp_path / "inventory.yaml", "dash",
                              cluster_extra={"scheduler_port": 8780, "dashboard_port": 8781})
    cleanup(inv)
    up = hc("up", inv=inv)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "dashboard: private to desktop (open it with: homecluster dashboard)" in up.stdout
    assert not reachable(household.host("desktop").address, 8781)
    tunnel = subprocess.Popen([sys.executable, "-m", "homecluster", "dashboard", "-i", str(inv), "--no-browser"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = tunnel.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/status", url), url + tunnel.stderr.read()
        shot = ARTIFACTS / "dashboard.png"
        title, figures = load_while_busy(inv, url, shot)
    finally:
        tunnel.terminate()
        code = tunnel.wait(15)
    assert code == 0, tunnel.stderr.read()
    assert title == "Dask: Status"
    assert figures >= 3
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    if os.environ.get("UPDATE_SCREENSHOT"):
        shutil.copy(shot, Path(__file__).parent.parent / "docs" / "dashboard.png")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")
def test_lan_dashboard_url_serves_bokeh_status_page(household, tmp_path, cleanup):
    """dashboard: lan: the URL `up` prints is on the scheduler's address, for every device on the network."""
    inv = household_inventory(household, tmp_path / "inventory.yaml", "dashlan",
                              cluster_extra={"scheduler_port": 8782, "dashboard_port": 8783, "dashboard": "lan"})
    cleanup(inv)
    up = hc("up", inv=inv)
    assert up.returncode == 0, up.stdout + up.stderr
    url = re.search(r"^dashboard: (\S+)$", up.stdout, re.M).group(1)
    assert url == f"http://{household.host('desktop').address}:8783/status"
    title, figures = load_while_busy(inv, url, tmp_path / "lan.png")
    assert title == "Dask: Status" and figures >= 3
