"""Integration tests against a REAL Label Studio server (``make test`` installs it; see tests/ls_server.py).

The tests run in file order and share one workspace: init -> push -> annotate (through the API, as an
annotator would) -> pull -> re-push -> the ML backend called by Label Studio itself -> faults (task deleted,
response lost, conflicting answers across rounds and a deleted annotation, server down mid-push, wrong token,
project deleted).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from ls_catalog import add_round, build_round_catalog
from ls_server import label_studio  # noqa: F401  (session fixture)
from sqlalchemy import func, select

from radloop.core.boxes import box_to_ls_percent
from radloop.core.records import Box
from radloop.core.schema import Annotation, QuarantinedAnnotation, Selection
from radloop.labeling.ls_client import (
    AuthenticationError, LabelStudioClient, LabelStudioError, ProjectNotFoundError, ServerUnavailableError,
)
from radloop.labeling.ls_project import init_project, load_binding
from radloop.labeling.ls_sync import CONSENSUS_SOURCE, PushIncompleteError, pull_round, push_round
from radloop.ssl.predict import ImagePrediction

pytestmark = pytest.mark.labelstudio


class CentreModel:
    """Deterministic stand-in image model: fracture probability from brightness, one centred box (original px)."""

    def __init__(self, model_version: str) -> None:
        self.model_version = model_version

    def predict(self, images, *, original_sizes):
        from PIL import Image as PILImage

        outputs = []
        for image, (width, height) in zip(images, original_sizes, strict=True):
            pixels = np.asarray(PILImage.open(image).convert("L")) if isinstance(image, str) else image
            probability = round(float(pixels.mean()) / 255.0 + 0.4, 4)
            box = Box("fracture", width / 4, height / 4, width / 2, height / 2, score=0.77)
            outputs.append(ImagePrediction({"fracture": probability, "normal": 1 - probability}, [box], self.model_version))
        return outputs


@pytest.fixture(scope="module")
def env(label_studio, test_catalog_url):  # noqa: F811
    """Workspace (inside the server's local-files document root), catalog with one round, client, project."""
    root = (label_studio.document_root / "ws").resolve()
    catalog, round_id, image_ids = build_round_catalog(root, database_url=test_catalog_url(root))
    client = LabelStudioClient(label_studio.url, label_studio.token, retries=2, backoff=0.2)
    yield {"server": label_studio, "catalog": catalog, "round_id": round_id, "image_ids": image_ids,
           "client": client}
    catalog.dispose()


def _round_tasks(env, round_id=None):
    binding = load_binding(env["catalog"].workspace)
    return env["client"].iter_tasks(binding.project_id, round_id=round_id or env["round_id"])


def _cli_env(env, **variables) -> dict[str, str]:
    """Environment for a CLI call on the shared workspace: its catalog URL (SQLite or the PostgreSQL pass's)."""
    return {"RADLOOP_DATABASE_URL": env["catalog"].workspace.database_url, **variables}


def _count(catalog, model, *conditions):
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*conditions))


def test_init_is_idempotent(env):
    catalog, client, server = env["catalog"], env["client"], env["server"]
    first = init_project(client, catalog.workspace, title="radloop it", document_root=str(server.document_root))
    again = init_project(client, catalog.workspace, title="radloop it", document_root=str(server.document_root))
    assert first["created"] and not again["created"] and not again["config_updated"]
    assert again["project_id"] == first["project_id"]
    project = client.get_project(first["project_id"])
    assert "RectangleLabels" in project["label_config"] and "foreign_body" in project["label_config"]
    # a changed config on the server is put back
    client.update_project(first["project_id"], label_config=project["label_config"].replace(
        '<Choice value="normal" hint="normal"/>', ""))
    assert init_project(client, catalog.workspace, title="radloop it",
                        document_root=str(server.document_root))["config_updated"]
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    cli = CliRunner().invoke(build_app(), [
        "ls", "init", "--url", server.url, "--project", "radloop it", "--document-root", str(server.document_root),
        "--workspace", str(catalog.workspace.root), "--json"], env=_cli_env(env, LABEL_STUDIO_API_KEY=server.token))
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["project_id"] == first["project_id"] and not json.loads(cli.stdout)["created"]
    assert server.token not in cli.output
    binding_text = (catalog.workspace.root / "labelstudio" / "project.json").read_text()
    assert server.token not in binding_text


def test_push_imports_deidentified_tasks_with_predictions(env):
    import httpx
    from PIL import Image as PILImage

    catalog, client, server = env["catalog"], env["client"], env["server"]
    summary = push_round(catalog, client, env["round_id"], predictor=CentreModel("centre-v1"))
    assert summary["imported"] == 4 and summary["predictions"] == 8 and summary["model_version"] == "centre-v1"
    tasks = _round_tasks(env)
    assert len(tasks) == 4
    with catalog.session() as session:
        from radloop.core.schema import Image

        images = {image.id: image for image in session.scalars(select(Image))}
        selections = session.scalars(select(Selection)).all()
        assert all(s.ls_task_id for s in selections)
        assert {s.ls_task_id for s in selections} == {t["id"] for t in tasks}
    for task in tasks:
        data = task["data"]
        image = images[data["case_id"]]
        text = json.dumps(data)
        assert image.external_id not in text and ".jpg" not in text and "/work/" not in text
        assert data["image"] == f"/data/local-files/?d=ws/labelstudio/media/{image.id}.png"
        assert set(data) == {"image", "report", "case_id", "study_id", "body_region", "strategy", "selection_score",
                             "round", "round_id", "radloop_key"}
        served = httpx.get(server.url + data["image"], headers={"Authorization": f"Token {server.token}"})
        assert served.status_code == 200
        rendered = catalog.workspace.absolute(image.render_path).read_bytes()
        assert served.content == rendered
        versions = {p["model_version"]: p for p in task["predictions"]}
        assert set(versions) == {"report-rules:test-rules-1", "centre-v1"}
        model = versions["centre-v1"]
        rect = [r for r in model["result"] if r["type"] == "rectanglelabels"][0]
        assert rect["score"] == 0.77 and rect["value"]["rotation"] == 0
        assert rect["original_width"] == image.render_width
        # the model box (original px; case 0 is a 2x original) is a quarter in on the displayed render too
        assert rect["value"]["x"] == pytest.approx(25.0) and rect["value"]["width"] == pytest.approx(50.0)
    with PILImage.open(catalog.workspace.root / "labelstudio" / "media" / f"{env['image_ids'][0]}.png") as staged:
        assert not (set(staged.info) - {"dpi", "gamma"})
    # re-running never duplicates
    import os

    from radloop.labeling.ls_sync import client_from_env, ensure_project

    os.environ["RADLOOP_LS_TOKEN"] = server.token
    try:
        by_title = client_from_env(server.url)
    finally:
        del os.environ["RADLOOP_LS_TOKEN"]
    title = ensure_project(by_title, "radloop it")
    again = push_round(catalog, by_title, env["round_id"], project=title, with_model=False)
    assert again.imported == 0 and again["already_in_label_studio"] == 4
    assert len(_round_tasks(env)) == 4


def _choices(*names):
    return {"from_name": "findings", "to_name": "image", "type": "choices", "value": {"choices": list(names)}}


def test_annotate_then_pull_incrementally_append_only(env):
    catalog, client, server = env["catalog"], env["client"], env["server"]
    tasks = {task["data"]["case_id"]: task for task in _round_tasks(env)}
    ids = env["image_ids"]
    with catalog.session() as session:
        from radloop.core.schema import Image

        first = session.get(Image, ids[0])
        original, render = (first.width, first.height), (first.render_width, first.render_height)
    pixel_box = Box("fracture", 100.5, 200.25, 300.0, 150.75)
    value = {**box_to_ls_percent(pixel_box, *original), "rectanglelabels": ["fracture"]}
    rect = {"from_name": "boxes", "to_name": "image", "type": "rectanglelabels", "original_width": render[0],
            "original_height": render[1], "image_rotation": 0, "value": value}
    annotation_a = client.create_annotation(tasks[ids[0]]["id"], [_choices("fracture"), rect])
    client.create_annotation(tasks[ids[1]]["id"], [], was_cancelled=True)
    second_user = client.sdk.users.create(username="reader2", email="reader2@example.com",
                                          password="reader2-password")
    client.create_annotation(tasks[ids[2]]["id"], [_choices("fracture", "device")])
    client.sdk.annotations.create(id=tasks[ids[2]]["id"], result=[_choices("device")], completed_by=second_user.id)
    rotated = {**rect, "value": {**value, "rotation": 15.0}}
    client.create_annotation(tasks[ids[3]]["id"], [_choices("fracture"), rotated,
                                                   {**_choices("alien_finding")}])

    summary = pull_round(catalog, client, env["round_id"])
    assert summary["tasks_read"] == 4 and summary["new_versions"] == 5 and summary["skipped"] == 1
    assert summary["boxes"] == 1 and summary["quarantined"] == 2 and summary["disagreements"] == 1
    assert summary.annotations_added == 4  # attribute access for the round state machine
    with catalog.session() as session:
        box = session.scalars(select(Annotation).where(Annotation.kind == "box")).one()
        assert (box.x, box.y, box.w, box.h) == (100.5, 200.25, 300.0, 150.75)  # original pixels, exactly
        assert box.image_id == ids[0] and box.source == "labelstudio" and box.version == 1
        assert box.annotator == server.username and box.meta["ls_annotation_id"] == annotation_a
        skip = session.scalars(select(Annotation).where(Annotation.kind == "skip")).one()
        assert skip.image_id == ids[1]
        consensus = {row.label: row for row in session.scalars(
            select(Annotation).where(Annotation.source == CONSENSUS_SOURCE))}
        assert consensus["fracture"].meta["status"] == "uncertain" and consensus["fracture"].meta["value"] is None
        assert consensus["device"].meta == {**consensus["device"].meta, "value": 1, "status": "agreed"}
        reasons = sorted(q.reason for q in session.scalars(select(QuarantinedAnnotation)))
        assert any("rotated" in reason for reason in reasons) and any("alien_finding" in r for r in reasons)
        chosen = {(a.label, a.meta["value"]) for a in session.scalars(
            select(Annotation).where(Annotation.image_id == ids[3], Annotation.kind == "choice"))}
        assert chosen == {("fracture", 1)}  # broken Choices: unticked findings are not read as absent
        selection = session.scalars(select(Selection).where(Selection.image_id == ids[1])).one()
        assert selection.meta["ls"]["status"] == "skipped"

    again = pull_round(catalog, client, env["round_id"])
    assert again["incremental"] and again["new_versions"] == 0 and again["quarantined"] == 0
    rows_before = _count(catalog, Annotation)
    client.update_annotation(annotation_a, [_choices("fracture", "device"), rect])
    third = pull_round(catalog, client, env["round_id"])
    assert third["new_versions"] == 1
    with catalog.session() as session:
        device = session.scalars(select(Annotation).where(
            Annotation.image_id == ids[0], Annotation.label == "device").order_by(Annotation.version)).all()
        assert [(a.version, a.meta["value"]) for a in device] == [(1, 0), (2, 1)]  # history kept
    assert _count(catalog, Annotation) > rows_before


def test_label_studio_calls_the_ml_backend(env):
    from radloop.app.backend import BackendAuth, BackendSettings, create_app
    from radloop.app.backend_bench import serve_in_thread
    from radloop.app.backend_runtime import CasePredictor

    catalog, client = env["catalog"], env["client"]
    binding = load_binding(catalog.workspace)
    model = CentreModel("backend-v7")
    runs = []
    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, model),
                     train_function=lambda batch: runs.append(sorted({r.reason for r in batch})) or {"n": len(batch)},
                     settings=BackendSettings(debounce_s=0.3, auth=BackendAuth(username="ls", password="pw-1")))
    with serve_in_thread(app) as url:
        with pytest.raises(LabelStudioError):
            client.ensure_ml_backend(binding.project_id, url, basic_auth=("ls", "wrong"))
        backend_id = client.ensure_ml_backend(binding.project_id, url, basic_auth=("ls", "pw-1"))
        assert app.state.projects._configs, "Label Studio did not call /setup"
        # a task that is not a catalog case: the backend fetches its image from Label Studio itself
        media = f"/data/local-files/?d=ws/labelstudio/media/{env['image_ids'][0]}.png"
        [outside] = client.import_tasks(binding.project_id, [{"data": {"image": media, "report": "-"}}])
        client.retrieve_predictions(binding.project_id)
        fetched = [p for p in client.get_task(outside)["predictions"] if p["model_version"] == "backend-v7"]
        assert len(fetched) == 1 and {r["type"] for r in fetched[0]["result"]} >= {"rectanglelabels"}
        client.delete_task(outside)
        tasks = _round_tasks(env)
        for task in tasks:
            backend_predictions = [p for p in task["predictions"] if p["model_version"] == "backend-v7"]
            assert len(backend_predictions) == 1, task["predictions"]
            kinds = {r["type"] for r in backend_predictions[0]["result"]}
            assert kinds == {"choices", "rectanglelabels"}
        client.create_annotation(tasks[3]["id"], [_choices("normal")])
        client.train(backend_id)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("START_TRAINING" in run for run in runs):
            time.sleep(0.2)
        app.state.scheduler.wait_idle(10)
        reasons = {reason for run in runs for reason in run}
        assert {"ANNOTATION_CREATED", "START_TRAINING"} <= reasons, runs
        client.sdk.ml.delete(id=backend_id)


def test_task_deleted_in_label_studio(env):
    catalog, client = env["catalog"], env["client"]
    ids = env["image_ids"]
    with catalog.session() as session:
        victim = session.scalars(select(Selection).where(Selection.image_id == ids[1])).one()
        task_id = victim.ls_task_id
    pull_round(catalog, client, env["round_id"])  # the annotation made in the backend test
    annotations_before = _count(catalog, Annotation)
    client.delete_task(task_id)
    from radloop.labeling.ls_client import TaskNotFoundError

    with pytest.raises(TaskNotFoundError, match=f"task {task_id} was not found"):
        client.get_task(task_id)
    summary = pull_round(catalog, client, env["round_id"])
    assert summary["deleted_tasks"] == [task_id]
    assert _count(catalog, Annotation) == annotations_before  # what was pulled stays
    with catalog.session() as session:
        assert session.get(Selection, victim.id).meta["ls"]["status"] == "deleted_in_label_studio"
    pushed = push_round(catalog, client, env["round_id"], with_model=False)
    assert pushed["deleted_in_label_studio"] == 1 and pushed["imported"] == 0
    recreated = push_round(catalog, client, env["round_id"], with_model=False, recreate_deleted=True)
    assert recreated["imported"] == 1 and len(_round_tasks(env)) == 4


class _LosesFirstImportResponse:
    """A client whose first import succeeds on the server but whose response is lost."""

    def __init__(self, client):
        self._client, self.lost = client, False

    def __getattr__(self, name):
        return getattr(self._client, name)

    def import_tasks(self, project_id, tasks):
        ids = self._client.import_tasks(project_id, tasks)
        if not self.lost:
            self.lost = True
            raise ServerUnavailableError("connection reset while reading the response (simulated)")
        return ids


def test_lost_response_then_rerun_has_no_duplicates(env):
    catalog, client = env["catalog"], env["client"]
    round_id = add_round(catalog, env["image_ids"], number=2)
    with pytest.raises(PushIncompleteError, match=r"Re-run `radloop round push --round 2`"):
        push_round(catalog, _LosesFirstImportResponse(client), round_id, chunk_size=2, with_model=False)
    with catalog.session() as session:  # the lost chunk was found by its keys and recorded
        assert len([s for s in session.scalars(select(Selection).where(Selection.round_id == round_id))
                    if s.ls_task_id]) == 2
    summary = push_round(catalog, client, round_id, chunk_size=2, with_model=False)
    assert summary["already_in_label_studio"] == 2 and summary["imported"] == 2
    assert len(_round_tasks(env, round_id)) == 4


def test_conflict_across_rounds_is_flagged_and_a_deleted_annotation_withdrawn(env):
    """Round 2 selected the same cases: a second task answering differently makes the label uncertain (not the
    last pull's); deleting that annotation in Label Studio withdraws it on a full pull."""
    from radloop.core.targets import image_targets

    catalog, client = env["catalog"], env["client"]
    first = env["image_ids"][0]  # round 1 answered: fracture present
    with catalog.session() as session:
        round_two = session.scalars(select(Selection.round_id).where(Selection.round_id != env["round_id"])
                                    .order_by(Selection.round_id)).first()
    [task] = [t for t in _round_tasks(env, round_two) if t["data"]["case_id"] == first]
    answer = client.create_annotation(task["id"], [_choices("normal")])

    def fracture():
        return image_targets(catalog, image_ids=[first])[0].labels.get("fracture")

    assert fracture() == 1
    summary = pull_round(catalog, client, round_two)
    assert summary["disagreements"] >= 1 and summary["answered"] == 1 and fracture() is None
    client.sdk.annotations.delete(id=answer)
    full = pull_round(catalog, client, round_two, full=True)
    assert full["withdrawn"] == 1 and full["answered"] == 0 and full["pending"] == 4
    assert fracture() == 1
    with catalog.session() as session:
        rows = session.scalars(select(Annotation).where(Annotation.external_id.like(f"%:{answer}"))).all()
        assert rows and {row.kind for row in rows} == {"withdrawn"}


def test_server_down_mid_push_then_rerun_completes(env):
    catalog, client, server = env["catalog"], env["client"], env["server"]
    round_id = add_round(catalog, env["image_ids"], number=3)
    impatient = LabelStudioClient(server.url, server.token, retries=1, backoff=0.05)

    def stop_after_first_chunk(_count):
        server.stop()

    try:
        with pytest.raises(PushIncompleteError, match="stopped after 2 of 4") as caught:
            push_round(catalog, impatient, round_id, chunk_size=2, with_model=False, progress=stop_after_first_chunk)
        assert "unreachable" in str(caught.value)
        with pytest.raises(ServerUnavailableError, match="is the server running"):
            push_round(catalog, impatient, round_id, chunk_size=2, with_model=False)
    finally:
        server.start()
    summary = push_round(catalog, client, round_id, chunk_size=2, with_model=False)
    assert summary["already_in_label_studio"] == 2 and summary["imported"] == 2
    assert len(_round_tasks(env, round_id)) == 4
    with catalog.session() as session:
        assert all(s.ls_task_id for s in session.scalars(select(Selection).where(Selection.round_id == round_id)))


def test_wrong_token_gives_clear_error_without_the_token(env):
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    server = env["server"]
    bad = LabelStudioClient(server.url, "not-the-token-0123456789", retries=0)
    with pytest.raises(AuthenticationError, match="rejected the API token") as caught:
        push_round(env["catalog"], bad, env["round_id"], with_model=False)
    assert "not-the-token-0123456789" not in str(caught.value)
    result = CliRunner().invoke(build_app(), ["round", "pull", "--workspace", str(env["catalog"].workspace.root)],
                                env=_cli_env(env, LABEL_STUDIO_API_KEY="not-the-token-0123456789", COLUMNS="200"))
    assert result.exit_code == 2 and "rejected the API token" in result.output
    assert "not-the-token-0123456789" not in result.output
    ok = CliRunner().invoke(build_app(), ["round", "pull", "--workspace", str(env["catalog"].workspace.root),
                                          "--round", str(env["round_id"]), "--json"],
                            env=_cli_env(env, RADLOOP_LS_TOKEN=server.token))
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["new_versions"] == 0


def test_project_deleted_then_reinit(env):
    catalog, client, server = env["catalog"], env["client"], env["server"]
    binding = load_binding(catalog.workspace)
    annotations_before = _count(catalog, Annotation)
    client.delete_project(binding.project_id)
    with pytest.raises(ProjectNotFoundError, match="deleted"):
        push_round(catalog, client, env["round_id"], with_model=False)
    with pytest.raises(ProjectNotFoundError, match="radloop ls init"):
        pull_round(catalog, client, env["round_id"])
    assert _count(catalog, Annotation) == annotations_before
    created = init_project(client, catalog.workspace, title="radloop it", document_root=str(server.document_root))
    assert created["created"] and created["project_id"] != binding.project_id
    from radloop.labeling.ls_sync import selection_states

    # the tasks answered in the deleted project keep their answers in the catalog: not asked again
    answered = sum(state == "answered" for state in selection_states(catalog, [env["round_id"]]).values())
    assert answered >= 1
    summary = push_round(catalog, client, env["round_id"], with_model=False)
    assert summary["answered_in_another_project"] == answered
    assert summary["imported"] == 4 - answered and len(_round_tasks(env)) == 4 - answered
