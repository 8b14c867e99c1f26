"""Walk 22j: the Report explorer's first visit per server waited 11-22 s for the medspacy pipeline.

The app now starts building the report labeller in a background thread when the server runs ``app/main.py``
(once per process), without waiting for it; a build that fails leaves the page on the stored weak labels.
"""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app_workspace import point_app_at, real_app_workspace  # noqa: E402
from radloop.app import views_reports  # noqa: E402
from test_app_pages import MAIN, texts  # noqa: E402


@pytest.fixture(scope="module")
def app_workspace(tmp_path_factory, test_catalog_url):
    return real_app_workspace(tmp_path_factory, test_catalog_url, "walk22j")


@pytest.fixture
def env(app_workspace, monkeypatch):
    point_app_at(monkeypatch, app_workspace)
    return monkeypatch


class FakeLabeler:
    rules_version = "fake-rules-1"

    def label(self, text: str) -> list:
        return []


def test_app_start_builds_the_labeller_in_the_background_without_waiting(env):
    """Opening the app (the Overview page) starts the build in another thread and returns before it ends; the
    Report explorer then uses that build (one per server) instead of starting its own."""
    started, release, threads, calls = threading.Event(), threading.Event(), [], []

    def slow_loader():
        calls.append(1)
        threads.append(threading.current_thread().name)
        started.set()
        release.wait(60)
        return FakeLabeler()

    env.setattr(views_reports, "load_labeler", slow_loader)
    try:
        app = AppTest.from_file(MAIN, default_timeout=60)
        app.run()
        assert not app.exception, [item.value for item in app.exception]
        assert started.wait(10), "opening the app did not start building the report labeller"
        assert not release.is_set()  # the Overview page was shown while the build was still running
        assert threads == ["radloop-labeler-build"]
        app.run()  # a rerun does not start another build
    finally:
        release.set()
    app.switch_page("page_reports.py").run()
    assert not app.exception, [item.value for item in app.exception]
    assert any("Live rules `fake-rules-1`" in item.value for item in app.caption), texts(app)
    assert calls == [1]


def test_a_failed_background_build_leaves_the_stored_labels_and_says_so(env):
    def broken():
        raise OSError("medspacy model missing")

    env.setattr(views_reports, "load_labeler", broken)
    app = AppTest.from_file(MAIN, default_timeout=60)
    app.run()
    assert not app.exception, [item.value for item in app.exception]
    views_reports.labeler_build().exception(timeout=10)  # the build has failed
    app.switch_page("page_reports.py").run()
    assert not app.exception and "could not be shown" not in texts(app)
    warning = next(item.value for item in app.warning if "could not be loaded" in item.value)
    assert "OSError: medspacy model missing" in warning and "live rules are unavailable" in warning
    assert any(item.value.startswith("Stored weak labels") for item in app.caption)
    assert app.dataframe, "the stored weak labels' table"
