"""Walk 23h: the app's pages while the workspace changes under an open browser tab (a nightly ingest, a relabel, a
round started or finished in another session or by the CLI).  Each change is made through a second catalog handle,
as another process makes it; the page (its session state kept) is then used again.

Before: a picked case, report, task or round that was gone was silently replaced by the first one listed; a click
on a round button drawn before the rounds changed was silently lost.
"""

from __future__ import annotations


import pytest
from sqlalchemy import delete, select, update

pytest.importorskip("streamlit")

from app_workspace import real_app_workspace  # noqa: E402
from radloop.core.catalog import Catalog  # noqa: E402
from radloop.core.schema import Annotation, Image, Model, Round, Selection, WeakLabel  # noqa: E402
from test_app_pages import open_page, texts  # noqa: E402

ENCODER = "enc-simclr-resnet18-0a1b2c3d"


@pytest.fixture
def workspace(tmp_path_factory, test_catalog_url):
    """A fresh app fixture per test (the tests change it): round 2 open, the registry rows, no embeddings."""
    return real_app_workspace(tmp_path_factory, test_catalog_url, "walk23h")



def other_process(workspace, *statements) -> None:
    """Run ``statements`` (callables taking a session) through a catalog handle of their own, then close it."""
    catalog = Catalog.open(workspace, create=False)
    try:
        with catalog.session() as session:
            for statement in statements:
                statement(session)
    finally:
        catalog.dispose()


def warnings_of(app) -> list[str]:
    return [str(item.value) for item in app.warning]


def test_a_picked_case_removed_meanwhile_is_said_not_swapped_silently(workspace, env):
    app = open_page(workspace, "page_search.py", env)
    cases = [option.split(" · ")[0] for option in app.selectbox(key="search_case").options]
    picked = cases[1]
    app.selectbox(key="search_case").set_value(picked).run()
    assert not app.warning

    def purge(session):
        session.execute(delete(Selection).where(Selection.image_id == picked))
        session.execute(delete(Annotation).where(Annotation.image_id == picked))
        session.execute(delete(Image).where(Image.id == picked))

    other_process(workspace, purge)
    app.run()
    assert not app.exception
    said = [text for text in warnings_of(app) if f"Case `{picked}` is no longer listed" in text]
    assert said and f"showing case `{cases[0]}` instead" in said[0], warnings_of(app)
    app.run()  # said once: the page goes on with the case it shows
    assert not [text for text in warnings_of(app) if "no longer listed" in text]
    # the user's own filter taking the pick out of the list is no news
    app.selectbox(key="search_region").set_value("elbow").run()
    assert not [text for text in warnings_of(app) if "no longer listed" in text]


def test_a_report_relabelled_out_of_the_filter_is_said(workspace, env):
    app = open_page(workspace, "page_reports.py", env)
    app.selectbox(key="reports_finding").set_value("effusion").run()
    reports = [option.split(" · ")[0] for option in app.selectbox(key="reports_id").options]
    picked = reports[-1]
    app.selectbox(key="reports_id").set_value(picked).run()

    def relabel(session):  # new rules no longer find an effusion in it
        session.execute(delete(WeakLabel).where(WeakLabel.report_id == picked))
        session.add(WeakLabel(report_id=picked, finding="edema", status="negative", evidence="edema", start=0, end=5,
                              section="FINDINGS", rules_version="rules-walk23h"))

    other_process(workspace, relabel)
    app.run()
    assert not app.exception
    assert any(f"Report `{picked}` is no longer listed" in text for text in warnings_of(app)), warnings_of(app)
    assert app.selectbox(key="reports_id").value == reports[0]


def test_models_task_gone_from_the_registry_is_said(workspace, env):
    app = open_page(workspace, "page_models.py", env)
    app.selectbox(key="models_task").set_value("findings").run()
    other_process(workspace, lambda session: session.execute(
        update(Model).where(Model.task == "findings").values(task="fracture")))
    app.run()
    assert not app.exception
    assert any("Task `findings` is no longer listed" in text for text in warnings_of(app)), warnings_of(app)
    assert "findings-probe-r2" in texts(app) or not app.dataframe[0].value.empty


def _start_round_three(session) -> None:
    session.execute(update(Round).where(Round.number == 2).values(state="finished"))
    session.add(Round(number=3, state="selected", strategy="random", budget=2, task="fracture", model_version=ENCODER,
                      meta={"simulate": False}))


def _round_ids(workspace) -> dict[int, int]:
    catalog = Catalog.open(workspace, create=False)
    with catalog.session() as session:
        ids = dict(session.execute(select(Round.number, Round.id)).all())
    catalog.dispose()
    return ids


def test_the_queue_left_on_the_newest_round_follows_a_round_started_since(workspace, env):
    app = open_page(workspace, "page_queue.py", env)
    other = open_page(workspace, "page_queue.py", env)  # a second browser session, where round 1 was picked
    ids = _round_ids(workspace)
    other.selectbox(key="queue_round").set_value(ids[1]).run()
    assert app.selectbox(key="queue_round").value == ids[2]
    other_process(workspace, _start_round_three)
    app.run()
    other.run()
    assert not app.exception and not other.exception
    assert app.selectbox(key="queue_round").value == _round_ids(workspace)[3]
    assert any("A newer round was started" in str(item.value) and "round 3" in str(item.value) for item in app.info)
    assert other.selectbox(key="queue_round").value == ids[1]  # a deliberate pick stays
    assert not any("A newer round" in str(item.value) for item in other.info)


def _finish_button(app):
    return next(button for button in app.button if button.label.startswith("Finish round"))


def test_a_stale_finish_click_is_refused_and_said(workspace, env):
    """Two sessions on Round control; round 2 is finished and round 3 started from elsewhere; the first session
    then clicks the "Finish round 2" (with *Simulate*) it still shows: nothing happens to round 3, and it says so."""
    first = open_page(workspace, "page_rounds.py", env)
    second = open_page(workspace, "page_rounds.py", env)
    assert _finish_button(first).label == "Finish round 2"
    other_process(workspace, _start_round_three)
    second.run()  # the other session shows the rounds as they are now, without a word about a click
    assert _finish_button(second).label == "Finish round 3"
    assert not [text for text in warnings_of(second) if "meanwhile" in text]
    first.checkbox(key="round_finish_simulate").check()
    _finish_button(first).click().run()
    assert not first.exception
    said = [text for text in warnings_of(first) if "Round 2 was finished and round 3 started meanwhile" in text]
    assert said and "nothing was finished" in said[0], warnings_of(first)
    catalog = Catalog.open(workspace, create=False)
    with catalog.session() as session:
        assert session.scalar(select(Round.state).where(Round.number == 3)) == "selected"
    catalog.dispose()
    first.run()  # said once
    assert not [text for text in warnings_of(first) if "meanwhile" in text]


def test_a_stale_start_click_is_refused_and_said(workspace, env):
    other_process(workspace, lambda session: session.execute(update(Round).where(Round.number == 2)
                                                             .values(state="finished")))
    app = open_page(workspace, "page_rounds.py", env)
    start = next(button for button in app.button if button.label == "Start round")
    other_process(workspace, lambda session: session.add(Round(number=3, state="selected", strategy="random",
                                                               budget=2, task="fracture", model_version=ENCODER)))
    start.click().run()
    assert not app.exception
    assert any("Round 3 was started meanwhile" in text and "no new round was started" in text
               for text in warnings_of(app)), warnings_of(app)
    catalog = Catalog.open(workspace, create=False)
    with catalog.session() as session:
        assert session.scalar(select(Round.number).order_by(Round.number.desc()).limit(1)) == 3
    catalog.dispose()


def test_finish_round_refuses_a_round_other_than_the_one_named(workspace):
    from radloop.app.round_finish import finish_round
    from radloop.app.round_record import RoundError

    catalog = Catalog.open(workspace, create=False)
    try:
        with pytest.raises(RoundError, match="round 1 is not open any more \\(round 2 is\\): nothing was done"):
            finish_round(catalog, number=1, simulate=True)
        with catalog.session() as session:
            assert session.scalar(select(Round.state).where(Round.number == 2)) == "selected"
    finally:
        catalog.dispose()


@pytest.mark.parametrize(("click", "open_number", "said"), [
    (("resume", 2), None, "Round 2 was finished meanwhile (in another session or by a `radloop round` command): "
                          "nothing was resumed"),
    (("resume", 2), 3, "Round 2 was finished and round 3 started meanwhile"),
    (("finish", 2), None, "nothing was finished"),
    (("start", None), 4, "Round 4 was started meanwhile"),
    (("start", None), None, None),
    (("finish", 2), 2, None),
])
def test_stale_click_messages(click, open_number, said):
    from radloop.app.page_rounds import stale_click_message

    message = stale_click_message(*click, open_number)
    assert (message is None) if said is None else (said in message), message
