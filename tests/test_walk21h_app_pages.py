"""Walkthrough 21h of the Streamlit app pages on a small real workspace (round 2 open):

* the selection queue's table showed an image without a body region as an empty ``None`` cell while its tile
  said "unknown region": both say ``unknown`` now (as the overview's region table does);
* a typed study id of a report-only study (every Open-i report of the demo) said "No image or study", as if the
  id were mistyped: it now says the study has no images;
* the overview listed an open round without saying what it waits on: it now names the next step;
* the sidebar printed "3639 images" next to the overview's "3,639";
* a report labeller that could not be built took the whole Report explorer down;
* a failed *Finish round* named the CLI's ``--simulate`` but not the page's own *Simulate the answers* box.
"""

from __future__ import annotations


import pytest
from sqlalchemy import select, update

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app_workspace import point_app_at, real_app_workspace  # noqa: E402
from radloop.app import next_steps, views, views_rounds  # noqa: E402
from radloop.core.catalog import Catalog  # noqa: E402
from radloop.core.schema import Image, Report, Round, Selection  # noqa: E402
from test_app_pages import run_page  # noqa: E402


@pytest.fixture(scope="module")
def app_workspace(tmp_path_factory, test_catalog_url):
    return real_app_workspace(tmp_path_factory, test_catalog_url, "walk21h-pages")


@pytest.fixture
def catalog(app_workspace):
    catalog = Catalog.open(app_workspace, create=False)
    yield catalog
    catalog.dispose()


@pytest.fixture
def env(app_workspace, monkeypatch):
    point_app_at(monkeypatch, app_workspace)
    return monkeypatch


def test_queue_names_a_missing_body_region_unknown(catalog, env):
    with catalog.session() as session:
        first = session.scalar(select(Selection.image_id).order_by(Selection.rank).limit(1))
        session.execute(update(Image).where(Image.id == first).values(body_region=None))
    queue = views_rounds.selection_queue(catalog)
    assert queue.items.set_index("image_id").loc[first, "body_region"] == views.UNKNOWN_REGION
    assert queue.items["body_region"].notna().all()
    app = run_page("page_queue.py")
    table = app.dataframe[0].value
    assert table.set_index("image_id").loc[first, "body_region"] == "unknown"


def test_typed_report_only_study_says_it_has_no_images(catalog, env):
    with catalog.session() as session:
        study_id = session.scalar(select(Report.study_id).order_by(Report.id).limit(1))
        assert not session.scalar(select(Image.id).where(Image.study_id == study_id))  # a report-only study
    app = run_page("page_search.py")
    app.text_input(key="search_case_id").input(study_id).run()
    warning = app.warning[0].value
    assert warning.startswith(f"Study `{study_id}` has no images") and "No image or study" not in warning
    app.text_input(key="search_case_id").input("S-doesnotexist").run()
    assert app.warning[0].value == "No image or study `S-doesnotexist` in this catalog."


def test_overview_says_what_the_open_round_waits_on(catalog, env):
    app = run_page("page_overview.py")
    infos = [item.value for item in app.info]
    assert next_steps.open_round(2, "selected") in infos
    assert "Round control" in next_steps.open_round(2, "selected")
    with catalog.session() as session:
        session.execute(update(Round).where(Round.number == 2).values(state="pushed"))
    try:
        app = run_page("page_overview.py")
        pushed = next_steps.open_round(2, "pushed")
        assert pushed in [item.value for item in app.info] and "Selection queue" in pushed
        assert next_steps.command("round_finish") in pushed
        with catalog.session() as session:
            session.execute(update(Round).where(Round.number == 2).values(state="finished"))
        app = run_page("page_overview.py")
        assert not [item.value for item in app.info if "Round 2" in item.value]
    finally:
        with catalog.session() as session:
            session.execute(update(Round).where(Round.number == 2).values(state="selected"))


def test_sidebar_counts_have_thousands_separators(catalog, env):
    real = Catalog.counts

    def many(self):
        counts = real(self)
        return {**counts, "images": 3639, "reports": 2945, "annotations": 2208}

    env.setattr(Catalog, "counts", many)
    app = run_page("page_overview.py")
    sidebar = [item.value for item in app.sidebar.caption]
    assert "3,639 images · 2,945 reports · 2,208 annotations · 2 rounds" in sidebar
    assert {metric.label: metric.value for metric in app.metric}["Images"] == "3,639"


def _html(app: AppTest) -> str:
    return "\n".join(element.proto.body for element in app.get("html"))


def test_report_stays_readable_when_the_rules_cannot_be_loaded(catalog, env):
    """A report labeller that cannot be built (a broken medspacy install, a rules file that fails to load) took
    the whole Report explorer down ("This page could not be shown"); the report and its stored weak labels are
    shown now, with a warning.  The stored labels are drawn first, so the first visit (which builds the medspacy
    pipeline, 5-10 s) shows the report at once instead of only a spinner."""
    import streamlit as st

    from radloop.app import views_reports

    def broken():
        raise OSError("rules file unreadable")

    st.cache_resource.clear()  # the page caches the labeller per server: build it again, with the broken loader
    env.setattr(views_reports, "load_labeler", broken)
    try:
        app = run_page("page_reports.py")
        assert "could not be shown" not in "\n".join(item.value for item in app.error)
        assert any("The report rules could not be loaded (OSError: rules file unreadable)" in item.value
                   for item in app.warning)
        assert "radloop-mention" in _html(app)  # the stored weak labels, highlighted
        assert any(item.value.startswith("Stored weak labels") for item in app.caption)
        assert app.dataframe  # their table
    finally:
        st.cache_resource.clear()


def test_failed_finish_says_where_simulate_is_on_the_page(catalog, env):
    """Finishing a round whose batch only went to the import file fails without Label Studio; the round scripts'
    message names the CLI's ``--simulate``, and the page only said "fix the cause above".  It now also says to
    tick *Simulate the answers* (and not when it was ticked)."""
    from radloop.app import rounds
    from radloop.app.round_record import RoundError

    calls = []

    def refused(catalog, **kwargs):
        calls.append(kwargs)
        raise RoundError("round 2: the answers could not be pulled from Label Studio; finish with --simulate")

    env.setattr(rounds, "finish_round", refused)
    app = run_page("page_rounds.py")
    next(button for button in app.button if str(button.label).startswith("Finish round")).click().run()
    assert calls and "simulate" not in calls[0]
    assert any("Finishing round: failed" in item.value for item in app.error)
    infos = [item.value for item in app.info]
    assert next_steps.ROUND_RESUMABLE in infos and next_steps.FINISH_SIMULATED in infos
    assert "*Simulate the answers*" in next_steps.FINISH_SIMULATED

    app.checkbox(key="round_finish_simulate").check()
    next(button for button in app.button if str(button.label).startswith("Finish round")).click().run()
    assert calls[-1].get("simulate") is True
    assert next_steps.FINISH_SIMULATED not in [item.value for item in app.info]
