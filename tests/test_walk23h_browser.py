"""Walk 23h in headless Chromium: tabs left open while the workspace changes elsewhere (another session,
`radloop round`, a nightly job).  A Round control tab's "Finish round 2" button, clicked after round 2 was finished
and round 3 started, was silently ignored (the page just showed round 3); now the page says that nothing was done,
and round 3 is untouched.  A case picked on the case search and then removed was silently replaced by another one;
now the page says so, and the picker shows the case searched."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, update

from test_app_browser import _wait_for, browser, server  # noqa: F401 - the fixtures: a real server and Chromium
from test_walk21h_app_browser import _boxes, _open_search, _select_box, _settle, _to_models_and_back

pytestmark = pytest.mark.browser


def test_a_stale_finish_click_says_nothing_was_done(server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    from radloop.core.catalog import Catalog
    from radloop.core.schema import Round
    from radloop.core.workspace import resolve_workspace

    base_url, root = server
    browser.get(f"{base_url}/rounds")
    _wait_for(browser, '[data-testid="stAlert"]', 1)
    _settle(browser, 1.0)
    button = next(item for item in browser.find_elements(By.TAG_NAME, "button") if item.text == "Finish round 2")
    catalog = Catalog.open(resolve_workspace(root / "ws"), create=False)
    try:
        with catalog.session() as session:  # another process, while the tab still shows round 2 open
            session.execute(update(Round).where(Round.number == 2).values(state="finished"))
            session.add(Round(number=3, state="selected", strategy="random", budget=2, task="fracture"))
        button.click()
        _settle(browser)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Round 2 was finished and round 3 started meanwhile" in body, body
        assert "Traceback" not in body and "Finish round 3" in body
        with catalog.session() as session:
            assert session.scalar(select(Round.state).where(Round.number == 3)) == "selected"
    finally:
        catalog.dispose()


def test_a_picked_case_removed_meanwhile_is_said_and_the_box_shows_the_case_searched(server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    from radloop.core.catalog import Catalog
    from radloop.core.schema import Annotation, Image, Selection
    from radloop.core.workspace import resolve_workspace

    base_url, root = server
    _open_search(browser, base_url)
    _select_box(browser, "…or pick a case").click()
    options = _wait_for(browser, '[role="option"]', 2)
    label = options[-1].text.strip()
    options[-1].click()
    _settle(browser)
    assert _boxes(browser)["…or pick a case"] == label
    picked = label.split(" · ")[0]
    catalog = Catalog.open(resolve_workspace(root / "ws"), create=False)
    try:
        with catalog.session() as session:  # another process removes the case while the tab shows it
            session.execute(delete(Selection).where(Selection.image_id == picked))
            session.execute(delete(Annotation).where(Annotation.image_id == picked))
            session.execute(delete(Image).where(Image.id == picked))
    finally:
        catalog.dispose()
    _to_models_and_back(browser)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert f"Case {picked} is no longer listed" in body and "Traceback" not in body, body
    shown = _boxes(browser)["…or pick a case"]
    assert shown != label and shown.split(" · ")[0] in body.split("Nearest cases")[0], shown
