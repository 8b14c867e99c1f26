"""Walkthrough 21h of the Streamlit app: what a radiologist set on a page survives a visit to another page.

Streamlit drops the value of every widget a run does not draw, so going from the case search to the models page
and back reset the body region, the number of neighbours and the finding filter (and the report picked, the
queue's round, the models' task); ``ui.keep_widget_state`` keeps them.
"""

from __future__ import annotations


import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app_workspace import point_app_at, real_app_workspace  # noqa: E402
from test_app_pages import MAIN  # noqa: E402


@pytest.fixture(scope="module")
def app_workspace(tmp_path_factory, test_catalog_url):
    return real_app_workspace(tmp_path_factory, test_catalog_url, "walk21h")


@pytest.fixture
def app(app_workspace, monkeypatch):
    point_app_at(monkeypatch, app_workspace)
    app = AppTest.from_file(MAIN, default_timeout=60)
    app.run()
    return app


def _go(app: AppTest, page: str) -> AppTest:
    app.switch_page(page).run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def test_search_filters_survive_a_visit_to_another_page(app):
    _go(app, "page_search.py")
    app.selectbox(key="search_region").select("elbow").run()
    app.slider(key="search_k").set_value(12).run()
    app.checkbox(key="search_same_region").check().run()
    app.selectbox(key="search_finding").select("fracture").run()
    _go(app, "page_models.py")
    _go(app, "page_overview.py")
    _go(app, "page_search.py")
    assert app.selectbox(key="search_region").value == "elbow"
    assert app.slider(key="search_k").value == 12
    assert app.checkbox(key="search_same_region").value is True
    assert app.selectbox(key="search_finding").value == "fracture"
    # ...and the browser is told, also on the rerun it makes after a page change: its widgets start from their
    # defaults on every page change, so without `set_value` the box showed "all" while the search ran on "elbow"
    # (tests/test_walk21h_app_browser.py checks the box itself)
    for _ in range(2):
        for widget in (app.selectbox(key="search_region"), app.slider(key="search_k"),
                       app.checkbox(key="search_same_region"), app.selectbox(key="search_finding")):
            assert widget.proto.set_value, widget.key
        assert list(app.slider(key="search_k").proto.value) == [12]
        app.run()
    app.slider(key="search_k").set_value(10).run()  # a change on the page itself still wins
    assert app.slider(key="search_k").value == 10 and app.selectbox(key="search_region").value == "elbow"


def test_report_queue_and_models_picks_survive_navigation(app):
    _go(app, "page_reports.py")
    second = app.selectbox(key="reports_id").options[1].split(" · ")[0]  # options read "CXR2 · cardiomegaly"
    app.selectbox(key="reports_id").set_value(second).run()
    app.radio(key="reports_source").set_value("stored weak labels").run()
    _go(app, "page_queue.py")
    picked_round = 1  # the latest round (2) comes first
    app.selectbox(key="queue_round").set_value(picked_round).run()
    _go(app, "page_models.py")
    app.selectbox(key="models_task").select("findings").run()
    _go(app, "page_reports.py")
    assert app.selectbox(key="reports_id").value == second
    assert app.radio(key="reports_source").value == "stored weak labels"
    _go(app, "page_queue.py")
    assert app.selectbox(key="queue_round").value == picked_round
    _go(app, "page_models.py")
    assert app.selectbox(key="models_task").value == "findings"


def test_the_upload_is_not_resaved(app):
    """Session State may not set a file uploader's value: re-saving it would take every page down."""
    from radloop.app import ui

    assert "search_upload" in ui.UNSETTABLE_KEYS
    _go(app, "page_search.py")
    _go(app, "page_models.py")
    _go(app, "page_search.py")
    assert app.title[0].value == "Case search"
