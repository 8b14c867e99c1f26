"""Walk 22d in headless Chromium (``streamlit run``): the radiographs carry alt text a screen reader reads."""

from __future__ import annotations

import time

import pytest

from test_app_browser import _wait_for, browser, server  # noqa: F401 - the module's fixtures

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("page, count", [("search", 1), ("queue", 3)])
def test_radiographs_have_alt_text_in_the_browser(server, browser, page, count):  # noqa: F811
    base_url, _ = server
    started = time.monotonic()
    browser.get(f"{base_url}/{page}")
    images = _wait_for(browser, '[data-testid="stImage"] img', count)
    print(f"{page}: first radiographs after {time.monotonic() - started:.1f} s")
    alts = [image.get_attribute("alt") for image in images]
    assert all(alt and alt.startswith("Radiograph I-") and " region, " in alt for alt in alts), alts


def test_model_metric_bars_do_not_overlap(server, browser):  # noqa: F811
    """The Metric chart's total height included the axis, so two versions' bars and names overlapped."""
    from selenium.webdriver.common.by import By

    from radloop.app.page_models import BAR_STEP

    base_url, _ = server
    browser.get(f"{base_url}/models")
    # the server's first page run also imports torch (before the background labeller build): allow for a busy machine
    chart = _wait_for(browser, '[data-testid="stVegaLiteChart"] svg', 1, timeout=60.0)[0]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        names = [text for text in chart.find_elements(By.TAG_NAME, "text") if text.text.startswith("findings-probe-")]
        if len(names) == 2:
            break
        time.sleep(0.25)
    tops = sorted(name.location["y"] for name in names)
    assert len(tops) == 2 and tops[1] - tops[0] >= BAR_STEP - 2, tops
