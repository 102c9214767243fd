"""The search page in a real headless Chromium: type a query, both result grids show images,
clicking one shows its word -> region heatmap.

Needs Selenium (PyPI) and Chromium + chromedriver (Debian: ``apt-get install chromium
chromium-driver``; ``.ci/run`` installs them); skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

pytest.importorskip("fastapi", reason="tflocal serve needs fastapi (pip install 'tflocal[serve]')")
selenium = pytest.importorskip("selenium", reason="the browser test drives Chromium with selenium")

from helpers.serve_setup import build, caption, running_server  # noqa: E402

CHROMIUM = os.environ.get("TFLOCAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = os.environ.get("TFLOCAL_CHROMEDRIVER") or shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no Chromium/chromedriver installed (apt-get install chromium chromium-driver; .ci/run does)",
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
]


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    profile = tempfile.mkdtemp(prefix="tflocal-chromium-", dir=tmp_path)
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_shows_two_grids_with_images_and_a_heatmap(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tflocal.app.serve import load_engine
    from tflocal.app.serve.app import create_app

    b = build(tmp_path)
    engine = load_engine(b["cache"], ["cosine", f"TFLocal={b['ckpt']}"], k_rerank=12)
    with running_server(create_app(engine)) as base:
        browser.get(base + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#right option")) == 2)
        assert browser.find_element(By.ID, "right").get_attribute("value") == "TFLocal"
        box = browser.find_element(By.ID, "q")
        box.send_keys(caption(0))
        browser.find_element(By.ID, "go").click()

        def loaded(grid: str):
            imgs = browser.find_elements(By.CSS_SELECTOR, f"#{grid} .card img")
            done = [
                browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
                for i in imgs
            ]
            return len(imgs) == 12 and all(done)

        wait.until(lambda d: loaded("grid-0") and loaded("grid-1"))
        assert browser.find_element(By.ID, "title-0").text == "cosine"
        assert browser.find_element(By.ID, "title-1").text == "TFLocal"
        assert "candidates re-ranked" in browser.find_element(By.ID, "status").text
        widths = browser.execute_script(
            "return [...document.querySelectorAll('.card img')].map(i => i.naturalWidth)"
        )
        assert len(widths) == 24 and set(widths) == {40}
        # the grids list this scorer's ranking, as the API gives it
        api = engine.search(caption(0), 12, ["cosine", "TFLocal"])["results"]
        for i, name in enumerate(["cosine", "TFLocal"]):
            shown = [
                c.get_attribute("title") for c in browser.find_elements(By.CSS_SELECTOR, f"#grid-{i} .card")
            ]
            assert shown == [h["id"] for h in api[name]]
        # click an image of the TFLocal column: its heatmap appears
        browser.find_elements(By.CSS_SELECTOR, "#grid-1 .card")[0].click()
        wait.until(
            lambda d: d.execute_script(
                "const h = document.getElementById('heat'); return h.complete && h.naturalWidth > 100"
            )
        )
        assert "TFLocal" in browser.find_element(By.ID, "modal-title").text
        # an empty query is refused on the page with a message, no request made
        browser.find_element(By.ID, "modal").click()
        box.clear()
        browser.find_element(By.ID, "go").click()
        wait.until(lambda d: "type a caption" in d.find_element(By.ID, "status").text)
