"""Walk 21d: rounds against a REAL Label Studio server when the operator's day goes wrong.

- A finished round whose Label Studio project was deleted: its unanswered tasks pointed at a project that is
  gone, so they stayed "pending" for ever (their images out of every new pool, each start trying to pull
  them).  The pull now releases them (counted as deleted, a round note says so) and the next round may
  select their images again; the answer already pulled is kept.
- A refused token in `radloop round finish` / `round start`: the hint says the token comes from the
  environment (these commands have no --token option), not just "rerun".
- An answer corrected in Label Studio after its round finished reaches the next round.

Workspaces hold 24 images: a study's split comes from a per-workspace key, so a handful of images may have
too few in the pool's "train" split.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from ls_live_rounds import delete_projects
from ls_server import label_studio  # noqa: F401  (session fixture)
from rounds_workspace import build_rounds_catalog
from sqlalchemy import select
from typer.testing import CliRunner

from radloop.labeling.ls_client import LabelStudioClient
from radloop.labeling.ls_project import init_project

pytestmark = pytest.mark.labelstudio


def _choices(control: str, *values: str) -> dict:
    return {"from_name": control, "to_name": "image", "type": "choices", "value": {"choices": list(values)}}


def _selected(catalog, round_id) -> list[str]:
    from radloop.core.schema import Selection

    with catalog.session() as session:
        return list(session.scalars(select(Selection.image_id).where(Selection.round_id == round_id)
                                    .order_by(Selection.rank)))


@contextmanager
def _live_workspace(server, test_catalog_url, monkeypatch, name: str):
    """A 24-image rounds workspace bound to a new project ``walk21d <name>`` on ``server``; yields
    ``(catalog, client, projects)``: append a project made later to ``projects``, every one is deleted after."""
    root = (server.document_root / f"ws-walk21d-{name}").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 24)
    client = LabelStudioClient(server.url, server.token, retries=2, backoff=0.2)
    projects = [new_project(server, client, catalog, name)]
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    try:
        yield catalog, client, projects
    finally:
        delete_projects(client, projects)
        catalog.dispose()


def _start_and_answer_one(catalog, client, project_id: int, budget: int, choice: str):
    """Start a random round of ``budget`` and answer its first selected image with ``choice`` in Label Studio;
    returns ``(round, answered image, unanswered images)``."""
    from radloop.app.rounds import start_round

    started = start_round(catalog, strategy="random", budget=budget, dataset="fracture")
    tasks = {task["data"]["case_id"]: task["id"] for task in client.iter_tasks(project_id, round_id=started.round_id)}
    answered, *unanswered = _selected(catalog, started.round_id)
    client.create_annotation(tasks[answered], [_choices("findings", choice)])
    return started, answered, unanswered


def new_project(server, client, catalog, name: str) -> int:
    """A new project ``walk21d <name>`` the workspace binds to (``radloop ls init``)."""
    return init_project(client, catalog.workspace, title=f"walk21d {name}",
                        document_root=str(server.document_root))["project_id"]


def test_finished_round_of_a_deleted_project_releases_its_unanswered_tasks(label_studio, test_catalog_url,  # noqa: F811
                                                                          monkeypatch):
    from radloop.app.cli import build_app
    from radloop.app.round_labels import pending_images
    from radloop.app.rounds import finish_round, round_status, start_round
    from radloop.core.schema import Annotation

    server = label_studio
    with _live_workspace(server, test_catalog_url, monkeypatch, "released") as (catalog, client, projects):
        first, answered, unanswered = _start_and_answer_one(catalog, client, projects[0], 4, "fracture")
        assert finish_round(catalog).pending == 3
        assert set(pending_images(catalog)) == set(unanswered)
        # the project is deleted in Label Studio; `radloop ls init` makes a new one
        client.delete_project(projects[0])
        projects.append(new_project(server, client, catalog, "released"))

        root_arg, env = str(catalog.workspace.root), {"RADLOOP_DATABASE_URL": catalog.workspace.database_url,
                                                      "LABEL_STUDIO_API_KEY": server.token}
        pulled = CliRunner().invoke(build_app(), ["round", "pull", "--round", "1", "--workspace", root_arg], env=env)
        assert pulled.exit_code == 2, pulled.output
        assert "3 unanswered task(s) of round 1 were released" in " ".join(pulled.output.split()), pulled.output
        assert pending_images(catalog) == {}
        [report] = [r for r in round_status(catalog) if r.round_id == first.round_id]
        assert (report.answered, report.pending, report.deleted, report.labels_spent) == (1, 0, 3, 1)
        assert any("released" in note and f"project {projects[0]}" in note for note in report.notes), report.notes
        with catalog.session() as session:  # the answer pulled before the project went is kept
            kept = session.scalars(select(Annotation).where(Annotation.image_id == answered,
                                                            Annotation.source == "labelstudio")).all()
        assert kept and {row.kind for row in kept} == {"choice"}
        assert {row.label for row in kept if (row.meta or {}).get("value") == 1} == {"fracture"}
        # a second pull releases nothing more and adds no second note
        again = CliRunner().invoke(build_app(), ["round", "pull", "--round", "1", "--workspace", root_arg], env=env)
        assert "released" not in again.output
        [report] = [r for r in round_status(catalog) if r.round_id == first.round_id]
        assert sum("released" in note for note in report.notes) == 1

        second = start_round(catalog, strategy="random", budget=1000, dataset="fracture")
        picked = set(_selected(catalog, second.round_id))
        assert set(unanswered) <= picked and answered not in picked
        assert not any("late answers not pulled" in note for note in second.notes), second.notes


def test_late_pull_before_a_start_releases_and_notes(label_studio, test_catalog_url, monkeypatch):  # noqa: F811
    from radloop.app.rounds import finish_round, start_round

    server = label_studio
    with _live_workspace(server, test_catalog_url, monkeypatch, "late") as (catalog, client, projects):
        _first, _answered, unanswered = _start_and_answer_one(catalog, client, projects[0], 3, "normal")
        finish_round(catalog)
        client.delete_project(projects[0])
        projects.append(new_project(server, client, catalog, "late"))
        second = start_round(catalog, strategy="random", budget=1000, dataset="fracture")
        assert any(note.startswith(f"round 1's Label Studio project {projects[0]}") and "2 unanswered task(s) "
                   "were released" in note for note in second.notes), second.notes
        assert not any("late answers not pulled" in note for note in second.notes), second.notes
        assert set(unanswered) <= set(_selected(catalog, second.round_id))


def test_wrong_token_hint_names_the_variables_not_a_missing_option(label_studio, test_catalog_url,  # noqa: F811
                                                                   monkeypatch):
    from radloop.app.cli import build_app
    from radloop.app.rounds import start_round

    server = label_studio
    with _live_workspace(server, test_catalog_url, monkeypatch, "token") as (catalog, client, projects):
        project_id = projects[0]
        start_round(catalog, strategy="random", budget=2, dataset="fracture")
        env = {"RADLOOP_DATABASE_URL": catalog.workspace.database_url, "LABEL_STUDIO_API_KEY": "0" * 40}
        args = ["--workspace", str(catalog.workspace.root)]
        finished = CliRunner().invoke(build_app(), ["round", "finish", *args], env=env)
        text = " ".join(finished.output.split())
        assert finished.exit_code == 2 and "rejected the API token" in text, finished.output
        assert ("set LABEL_STUDIO_API_KEY (or RADLOOP_LS_TOKEN) to a valid token of that server (this command has "
                "no --token option), then rerun `radloop round finish`") in text, finished.output
        status = CliRunner().invoke(build_app(), ["round", "status", "--json", *args], env=env)
        assert json.loads(status.stdout)["rounds"][0]["pending"] == 2  # nothing lost
        # the next round's push is refused: `round start` has no --token either
        task_id = next(iter(client.iter_tasks(project_id)))["id"]
        client.create_annotation(task_id, [_choices("findings", "normal")])
        good = {**env, "LABEL_STUDIO_API_KEY": server.token}
        assert CliRunner().invoke(build_app(), ["round", "finish", *args], env=good).exit_code == 0
        started = CliRunner().invoke(build_app(), ["round", "start", "--strategy", "random", "--budget", "2",
                                                   "--set", "dataset=fracture", *args], env=env)
        text = " ".join(started.output.split())
        assert started.exit_code == 2 and "rejected the API token" in text, started.output
        assert "(this command has no --token option), then rerun `radloop round start` to push it" in text, \
            started.output


def test_an_answer_edited_after_the_finish_reaches_the_next_round(label_studio, test_catalog_url,  # noqa: F811
                                                                  monkeypatch):
    """Every task of round 1 answered, round 1 finished, then an expert corrects an answer in Label Studio: the
    next `round start` must pull the correction (it pulled only rounds with unanswered tasks), so that the new
    round's pool and probe do not train on the answer the expert took back."""
    from radloop.app.round_labels import labelled_image_ids
    from radloop.app.rounds import finish_round, start_round
    from radloop.core.schema import Annotation

    server = label_studio
    with _live_workspace(server, test_catalog_url, monkeypatch, "edited") as (catalog, client, projects):
        project_id = projects[0]
        first = start_round(catalog, strategy="random", budget=2, dataset="fracture")
        tasks = {task["data"]["case_id"]: task["id"] for task in client.iter_tasks(project_id, round_id=first.round_id)}
        corrected, other = _selected(catalog, first.round_id)
        annotation = client.create_annotation(tasks[corrected], [_choices("findings", "fracture")])
        client.create_annotation(tasks[other], [_choices("findings", "normal")])
        assert finish_round(catalog).pending == 0
        assert labelled_image_ids(catalog, "fracture", simulate=False)[corrected] == 1
        client.update_annotation(annotation, [_choices("findings", "normal")])  # "no fracture after all"

        second = start_round(catalog, strategy="random", budget=2, dataset="fracture")
        assert labelled_image_ids(catalog, "fracture", simulate=False)[corrected] == 0
        assert second.notes[0] == "pulled 1 late answer(s) from Label Studio before selecting (round 1: 1)", \
            second.notes
        with catalog.session() as session:
            versions = sorted(row.version for row in session.scalars(select(Annotation).where(
                Annotation.image_id == corrected, Annotation.source == "labelstudio",
                Annotation.label == "fracture")))
        assert versions == [1, 2]  # append-only: the first answer is kept as version 1

        # every task answered, then the project deleted: nothing more can come from it, and no start says it
        # failed to pull it (nor skips the other rounds of that server)
        for case_id in _selected(catalog, second.round_id):
            task = next(task for task in client.iter_tasks(project_id, round_id=second.round_id)
                        if task["data"]["case_id"] == case_id)
            client.create_annotation(task["id"], [_choices("findings", "normal")])
        finish_round(catalog)
        client.delete_project(project_id)
        projects.append(new_project(server, client, catalog, "edited"))
        third = start_round(catalog, strategy="random", budget=2, dataset="fracture")
        assert not any("not pulled" in note for note in third.notes), third.notes
