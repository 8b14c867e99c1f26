"""A round pushed again after the workspace was bound to another Label Studio project (the first one deleted,
`radloop ls init` run again) does not send the tasks the experts already answered: their answers are in the
catalog, and asking again costs expert time."""

from __future__ import annotations

from ls_fake import PROJECT_ID, URL, FakeLabelStudio, bind_fake
from test_round_handout_notes import unbound  # noqa: F401 - the fixture


def test_answered_tasks_are_not_pushed_to_a_new_project(unbound):  # noqa: F811
    from radloop.app.rounds import start_round
    from radloop.labeling import ls_sync
    from radloop.labeling.ls_project import ProjectBinding, save_binding

    catalog, first = unbound
    started = start_round(catalog, strategy="random", budget=3, dataset="fracture")
    bind_fake(catalog)
    assert ls_sync.push_round(catalog, first, started.round_id, with_model=False)["imported"] == 3
    task = next(iter(first.tasks))
    first.annotate(task, ["fracture"])
    ls_sync.pull_round(catalog, first, started.round_id)
    answered_image = first.tasks[task]["data"]["case_id"]

    second = FakeLabelStudio()  # a new, empty project on the same server
    save_binding(catalog.workspace, ProjectBinding(url=URL, project_id=PROJECT_ID + 1, title="radloop findings",
                                                   config_digest="d", media_url="https://media.test/"))
    summary = ls_sync.push_round(catalog, second, started.round_id, with_model=False)
    assert summary["imported"] == 2 and summary["answered_in_another_project"] == 1, summary
    assert answered_image not in {task["data"]["case_id"] for task in second.tasks.values()}
    again = ls_sync.push_round(catalog, second, started.round_id, with_model=False)  # rerun: nothing new
    assert again["imported"] == 0 and again["answered_in_another_project"] == 1, again
