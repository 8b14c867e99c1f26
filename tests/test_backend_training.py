"""Background training of the ML backend: Label Studio's new annotations are pulled into the catalog first,
an unchanged labelled set is an outcome (not a failure), and a failed run shows in /health and /training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from radloop.app.backend import BackendSettings, create_app
from radloop.app.backend_runtime import CasePredictor
from radloop.core.schema import Annotation
from radloop.labeling.ls_client import AuthenticationError
from radloop.labeling.ls_config import build_label_config

PROJECT_ID = 7


class _Model:
    model_version = "training-test-1"

    def predict(self, images, *, original_sizes=None):
        raise AssertionError("not called in these tests")


class FakeLabelStudio:
    """The part of :class:`LabelStudioClient` that ``pull_round`` uses, serving one annotated task."""

    def __init__(self, tasks: list[dict], *, error: Exception | None = None) -> None:
        self.tasks, self.error, self.calls = tasks, error, []

    def get_project(self, project_id):
        if self.error is not None:
            raise self.error
        return {"id": project_id, "title": "t", "label_config": build_label_config()}

    def iter_tasks(self, project_id, *, round_id=None, updated_after=None, with_annotations=True, page_size=100):
        self.calls.append((project_id, round_id, updated_after))
        return [task for task in self.tasks if task["data"]["round_id"] == round_id]

    def user_emails(self):
        return {1: "rad@example.com"}


@pytest.fixture
def pushed(catalog):
    """Two catalog cases in round 1, pushed to Label Studio project 7 (tasks 101, 102), workspace bound to it."""
    from PIL import Image as PILImage

    from radloop.core.schema import Image, Round, Selection, Study
    from radloop.labeling.ls_project import ProjectBinding, save_binding

    ids = []
    with catalog.session() as session:
        session.add(Round(id=1, number=1, state="labelling", strategy="random", budget=2, task="fracture"))
        for index in range(2):
            image_id = f"I-{index:016x}"
            path = catalog.workspace.renders_dir / f"{image_id}.png"
            PILImage.fromarray(np.full((32, 48), 100, dtype=np.uint8)).save(path)
            session.add(Study(id=f"S-{index:016x}", body_region="wrist"))
            session.flush()
            session.add(Image(id=image_id, study_id=f"S-{index:016x}", content_hash=f"{index:064x}", source_path="x",
                              source_format="png", render_path=catalog.workspace.relative(path), thumb_path="t",
                              width=48, height=32, render_width=48, render_height=32))
            session.flush()
            session.add(Selection(round_id=1, image_id=image_id, rank=index + 1, strategy="random",
                                  ls_task_id=101 + index, meta={"ls": {"project_id": PROJECT_ID,
                                                                       "task_id": 101 + index}}))
            ids.append(image_id)
    save_binding(catalog.workspace, ProjectBinding(url="http://ls.example:8080", project_id=PROJECT_ID, title="t",
                                                   config_digest="x"))
    task = {"id": 101, "data": {"case_id": ids[0], "round_id": 1, "radloop_key": f"{ids[0]}:1"},
            "updated_at": "2026-01-01T09:00:00.000000Z",
            "annotations": [{"id": 55, "completed_by": 1, "was_cancelled": False, "lead_time": 4.0,
                             "created_at": "2026-01-01T09:00:00.000000Z", "updated_at": "2026-01-01T09:00:00.000000Z",
                             "result": [{"from_name": "findings", "to_name": "image", "type": "choices",
                                         "value": {"choices": ["fracture"]}}]}]}
    return ids, FakeLabelStudio([task])


def _run(client, app, **body) -> dict:
    assert client.post("/train", json={"project": body.pop("project", f"{PROJECT_ID}.1700000000")}).status_code == 200
    assert app.state.scheduler.wait_idle(30)
    return client.get("/training").json()["runs"][-1]


def test_training_pulls_new_annotations_with_the_setup_token_first(catalog, pushed):
    ids, label_studio = pushed
    connected = []

    def connect(url, token):
        connected.append((url, token))
        return label_studio

    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, _Model()), connect_label_studio=connect,
                     settings=BackendSettings(debounce_s=0.01, label_studio_url="http://ls.internal:8080"))
    client = TestClient(app)

    # no /setup yet and no deployment token: said so, trained (here: recorded) on the catalog's labels only
    first = _run(client, app)
    assert first["ok"] and first["status"] == "recorded" and not connected
    assert first["result"]["pull"]["pulled"] is False
    assert "no Label Studio API token" in first["result"]["pull"]["reason"]

    client.post("/setup", json={"project": f"{PROJECT_ID}.1700000000", "schema": build_label_config(),
                                "hostname": "http://localhost:8080", "access_token": "tok-7"})
    webhook = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": PROJECT_ID}})
    assert webhook.json()["status"] == "scheduled" and app.state.scheduler.wait_idle(30)
    second = client.get("/training").json()["runs"][-1]
    assert second["ok"], second
    assert second["result"]["pull"] == {"pulled": True, "full": False, "project_id": PROJECT_ID, "rounds": [1],
                                        "annotations_added": 1, "quarantined": 0}
    assert connected == [("http://ls.internal:8080", "tok-7")]  # the backend's Label Studio URL, /setup's token
    with catalog.session() as session:
        pulled = session.scalars(select(Annotation).where(Annotation.source == "labelstudio")).all()
        choices = {(row.image_id, row.label): row.meta["value"] for row in pulled if row.kind == "choice"}
        assert choices[(ids[0], "fracture")] == 1 and choices[(ids[0], "normal")] == 0  # unticked: absent
        assert {image_id for image_id, _label in choices} == {ids[0]}

    # events for another project are not pulled into this workspace's catalog
    other = _run(client, app, project="8.1700000000")
    assert other["result"]["pull"]["pulled"] is False and "bound to project 7" in other["result"]["pull"]["reason"]


def test_the_deployment_token_is_preferred_to_the_setup_token(catalog, pushed):
    """An operator's token (e.g. a personal access token where legacy tokens are off) wins over the legacy
    token Label Studio sends to /setup; with no Label Studio URL setting the binding's URL is used."""
    _ids, label_studio = pushed
    connected = []
    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, _Model()),
                     connect_label_studio=lambda url, token: connected.append((url, token)) or label_studio,
                     settings=BackendSettings(debounce_s=0.01, label_studio_token="env-token"))
    assert "env-token" not in repr(BackendSettings(label_studio_token="env-token"))
    client = TestClient(app)
    client.post("/setup", json={"project": f"{PROJECT_ID}.1700000000", "hostname": "http://localhost:8080",
                                "access_token": "legacy-token"})
    run = _run(client, app)
    assert run["result"]["pull"]["annotations_added"] == 1
    assert connected == [("http://ls.example:8080", "env-token")]


def test_a_failed_pull_fails_the_run_visibly(catalog, pushed):
    _ids, _label_studio = pushed
    refused = FakeLabelStudio([], error=AuthenticationError("Label Studio rejected the API token (HTTP 401)"))
    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, _Model()),
                     connect_label_studio=lambda url, token: refused,
                     settings=BackendSettings(debounce_s=0.01, label_studio_token="stale"))
    client = TestClient(app)
    run = _run(client, app)
    assert run["ok"] is False and run["status"] == "failed"
    assert "pulling new annotations from Label Studio failed" in run["error"] and "HTTP 401" in run["error"]
    health = client.get("/health").json()
    assert health["status"] == "UP"
    assert health["last_training"]["status"] == "failed" and "HTTP 401" in health["last_training"]["error"]


@pytest.fixture
def filled(catalog, tmp_path):
    """24 real radiographs (train/test by study, all labelled) and a registered current encoder."""
    from finetune_workspace import fill_fracture_catalog, register_random_encoder

    fill_fracture_catalog(catalog, 24, seed=2, render_size=160)
    register_random_encoder(catalog, tmp_path / "encoder")
    return catalog


def test_unchanged_labels_are_an_outcome_not_a_failure(filled, tmp_path, monkeypatch):
    """The version is a hash of config + encoder + labelled images: a second run on the same labels would
    register the same version.  It is recognised before training and recorded as "no new labels"."""
    import radloop.ssl.finetune_jobs as jobs

    config = tmp_path / "probe.yaml"
    config.write_text("name: probe-test\nhead: probe\ntrainer: {num_threads: 1}\n")
    app = create_app(filled, settings=BackendSettings(debounce_s=0.01, train_config=str(config)))
    client = TestClient(app)
    first = _run(client, app)
    assert first["ok"] and first["status"] == "trained", first
    version = first["result"]["version"]
    assert first["model_version"] == version and client.get("/health").json()["model_version"] == version

    def train_head(*args, **kwargs):
        raise AssertionError("an unchanged labelled set must not be trained again")

    monkeypatch.setattr(jobs, "train_head", train_head)
    models_before = sorted(path.name for path in (filled.workspace.models_dir / version).iterdir())
    second = _run(client, app)
    assert second["ok"] and second["status"] == "unchanged", second
    assert second["result"]["outcome"] == f"no new labels; model {version} unchanged"
    health = client.get("/health").json()
    assert health["last_training"]["status"] == "unchanged" and health["model_version"] == version
    assert health["last_training"]["outcome"] == f"no new labels; model {version} unchanged"
    assert sorted(path.name for path in (filled.workspace.models_dir / version).iterdir()) == models_before
    assert Path(filled.workspace.logs_dir / "training-requests.jsonl").read_text().count("\n") == 2


def test_a_deletion_webhook_pulls_every_task_and_withdraws_the_labels(catalog, pushed):
    """Label Studio leaves a task's updated_at alone when an annotation is deleted: an incremental pull would
    never see it, so ANNOTATIONS_DELETED makes the pull before training a full one."""
    ids, label_studio = pushed
    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, _Model()),
                     connect_label_studio=lambda url, token: label_studio,
                     settings=BackendSettings(debounce_s=0.01, label_studio_token="tok"))
    client = TestClient(app)
    client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": PROJECT_ID}})
    assert app.state.scheduler.wait_idle(30)
    client.post("/webhook", json={"action": "ANNOTATION_UPDATED", "project": {"id": PROJECT_ID}})
    assert app.state.scheduler.wait_idle(30)
    assert label_studio.calls[-2][2] is not None  # an ordinary event: tasks updated since the round's cursor
    label_studio.tasks[0]["annotations"] = []  # the radiologist deleted the annotation
    client.post("/webhook", json={"action": "ANNOTATIONS_DELETED", "project": {"id": PROJECT_ID}})
    assert app.state.scheduler.wait_idle(30)
    run = client.get("/training").json()["runs"][-1]
    assert run["ok"] and run["result"]["pull"]["full"] is True
    assert label_studio.calls[-2][2] is None  # every task read, not only the recently updated ones
    with catalog.session() as session:
        kinds = {row.kind for row in session.scalars(select(Annotation).where(
            Annotation.source == "labelstudio", Annotation.image_id == ids[0]))}
    assert kinds == {"withdrawn"}
