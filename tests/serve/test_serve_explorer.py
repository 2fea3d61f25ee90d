"""The semantic-ID explorer (GET /) in Debian's headless chromium, driven by Selenium.

Load the page, click a code, see its items, look up an item (code path and both kinds of
neighbours), and keep a screenshot (tests/serve/explorer.png is also copied to the temp dir).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from serve_fixtures import Server

pytestmark = pytest.mark.slow  # starts real servers / trains or exports models

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Any:
    if not Path(CHROMIUM).is_file() or CHROMEDRIVER is None:
        pytest.skip(
            "Debian's chromium + chromium-driver are needed (scripts/install-chromium.sh installs both)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1300",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_explorer_browse_click_lookup_screenshot(
    full_server: Server, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(full_server.url + "/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#codes button.code")))
    assert "300 items" in browser.find_element(By.ID, "summary").text
    assert "SYNTHETIC" in browser.find_element(By.ID, "summary").text

    # click the largest level-1 code: the items table shows that cluster's items with titles
    first = browser.find_element(By.CSS_SELECTOR, "#codes button.code")
    code, size = first.get_attribute("data-code"), int(first.text.split("(")[1].rstrip(")"))
    first.click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "items-title"), f"({code}): {size}"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#items tbody tr")
    assert 0 < len(rows) <= 50
    assert all(r.find_elements(By.TAG_NAME, "td")[2].text.startswith(f"{code}-") for r in rows)
    assert "SYNTHETIC track" in rows[0].text

    # look up an item by title: its code path and neighbours in code and embedding space
    browser.find_element(By.ID, "query").send_keys("SYNTHETIC track 7 ")
    browser.find_element(By.CSS_SELECTOR, "#lookup button").click()
    wait.until(ec.presence_of_element_located((By.ID, "detail-title")))
    detail = browser.find_element(By.ID, "detail").text
    assert "syn_item_7" in detail and "joint:" in detail and "text:" in detail
    assert "Neighbours in code space" in detail and "Neighbours in embedding space" in detail
    tables = browser.find_elements(By.CSS_SELECTOR, "#detail table")
    assert len(tables) == 2 and all(
        len(t.find_elements(By.CSS_SELECTOR, "tbody tr")) == 10 for t in tables
    )

    # the cluster-size plot loaded
    assert browser.execute_script(
        "const i = document.getElementById('sizes'); return i.complete && i.naturalWidth > 0;"
    )
    shot = tmp_path / "explorer.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
