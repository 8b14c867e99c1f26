"""Walk 21d, offline: a finished round's unanswered tasks are released only when Label Studio itself says their
project is gone (the live tests in test_walk21d_rounds_live.py show the release through the real server).

A 404 from something that is not that Label Studio (a proxy, another web server on a port reused since, a
server that no longer accepts the token) must leave the tasks waiting: their answers may still come.
"""

from __future__ import annotations

import pytest
from ls_fake import bind_fake, use_fake

from test_round_handout_notes import unbound  # noqa: F401 - the fixture


def test_release_needs_the_server_to_say_the_project_is_gone(unbound, monkeypatch):  # noqa: F811
    from radloop.app.rounds import finish_round, round_status, start_round
    from radloop.labeling import ls_sync
    from radloop.labeling.ls_client import LabelStudioError, ProjectNotFoundError

    catalog, fake = unbound
    bind_fake(catalog)
    use_fake(monkeypatch, fake)
    started = start_round(catalog, strategy="random", budget=3, dataset="fracture")
    fake.annotate(min(fake.tasks), ["fracture"])
    assert finish_round(catalog).pending == 2

    def gone(project_id):
        raise ProjectNotFoundError(f"Label Studio project {project_id} was not found (deleted?)")

    def not_label_studio():
        raise LabelStudioError("Label Studio refused to check the API token (HTTP 404): <html>Not Found</html>")

    monkeypatch.setattr(fake, "get_project", gone)
    monkeypatch.setattr(fake, "whoami", not_label_studio)
    with pytest.raises(ProjectNotFoundError) as refused:
        ls_sync.pull_round(catalog, fake, started.round_id, binding=ls_sync.pushed_binding(catalog, started.round_id))
    assert "released" not in str(refused.value) and refused.value.released == 0
    [report] = round_status(catalog)
    assert (report.answered, report.pending, report.deleted) == (1, 2, 0)

    monkeypatch.setattr(fake, "whoami", lambda: {"id": 1})  # the same server, token accepted: the project is gone
    with pytest.raises(ProjectNotFoundError, match=r"2 unanswered task\(s\) of round 1 were released") as released:
        ls_sync.pull_round(catalog, fake, started.round_id, binding=ls_sync.pushed_binding(catalog, started.round_id))
    assert released.value.released == 2
    [report] = round_status(catalog)
    assert (report.answered, report.pending, report.deleted, report.labels_spent) == (1, 0, 2, 1)
    assert [note for note in report.notes if "released" in note] == [(
        "2 unanswered task(s) of round 1 were released: their Label Studio project 7 at "
        "http://fake-label-studio:8080 was deleted, so new rounds may select their images again (answers already "
        "pulled stay in the catalog)")]


def test_an_open_rounds_tasks_are_never_released(unbound, monkeypatch):  # noqa: F811
    """An open round is handed to the new project with `radloop round push` instead: nothing is released."""
    from radloop.app.rounds import round_status, start_round
    from radloop.labeling import ls_sync
    from radloop.labeling.ls_client import ProjectNotFoundError

    catalog, fake = unbound
    bind_fake(catalog)
    use_fake(monkeypatch, fake)
    started = start_round(catalog, strategy="random", budget=3, dataset="fracture")

    def gone(project_id):
        raise ProjectNotFoundError(f"Label Studio project {project_id} was not found (deleted?)")

    monkeypatch.setattr(fake, "get_project", gone)
    with pytest.raises(ProjectNotFoundError) as refused:
        ls_sync.pull_round(catalog, fake, started.round_id)
    assert refused.value.released == 0
    [report] = round_status(catalog)
    assert (report.pending, report.deleted) == (3, 0)
