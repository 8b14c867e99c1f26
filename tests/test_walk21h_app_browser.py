"""Walkthrough 21h in headless Chromium: a filter set on the case search is still shown (and used) after a visit
to another page through the sidebar.  Streamlit kept nothing (the box said "all" again); a first fix kept the
value on the server only, so the box said "all" while the search ran on "elbow"."""

from __future__ import annotations

import time

import pytest

from test_app_browser import _wait_for, browser, server  # noqa: F401 - the fixtures: a real server and Chromium

pytestmark = pytest.mark.browser

#: The shown value of every select box on the page, by its label.
_SELECT_VALUES = """return Object.fromEntries(Array.from(document.querySelectorAll('[data-testid=stSelectbox]'))
    .map(function (box) { return [box.querySelector('label').textContent,
                                  box.querySelector('input[role=combobox]').value]; }));"""


def _boxes(driver) -> dict[str, str]:
    return driver.execute_script(_SELECT_VALUES)


def _sidebar_link(driver, title: str):
    from selenium.webdriver.common.by import By

    links = {link.text.strip().splitlines()[-1]: link
             for link in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a')}
    return links[title]


def _settle(driver, seconds: float = 3.0) -> None:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 20
    time.sleep(0.5)
    while driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]') and time.monotonic() < deadline:
        time.sleep(0.25)
    time.sleep(seconds)


def _open_search(driver, base_url: str) -> None:
    """The case search page, its images drawn."""
    driver.get(f"{base_url}/search")
    _wait_for(driver, '[data-testid="stImage"] img', 1)
    _settle(driver, 1.0)


def _select_box(driver, label: str):
    """The select box whose label starts with ``label``."""
    from selenium.webdriver.common.by import By

    return next(box for box in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSelectbox"]')
                if box.text.startswith(label))


def _to_models_and_back(driver) -> None:
    """Through the sidebar to the Models page and back to the case search."""
    _sidebar_link(driver, "Models").click()
    _wait_for(driver, '[data-testid="stDataFrame"]', 1)
    _settle(driver, 1.0)
    _sidebar_link(driver, "Case search").click()
    _wait_for(driver, '[data-testid="stImage"] img', 1)
    _settle(driver)


def test_search_region_is_still_shown_after_another_page(server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    base_url, _ = server
    _open_search(browser, base_url)
    _select_box(browser, "Body region").click()
    next(option for option in _wait_for(browser, '[role="option"]', 2) if option.text.strip() == "elbow").click()
    _settle(browser)
    assert _boxes(browser)["Body region"] == "elbow"
    picked = _boxes(browser)["…or pick a case"]
    assert picked.endswith("· elbow")
    _to_models_and_back(browser)
    shown = _boxes(browser)
    assert shown["Body region"] == "elbow", shown
    assert shown["…or pick a case"] == picked  # and the search still runs on it
    body = browser.find_element(By.TAG_NAME, "body").text
    assert picked.split(" · ")[0] in body and "Traceback" not in body
