"""Walk 22c: the ML backend's contract against a REAL Label Studio 1.23 server, with basic auth on, as a user
runs it: `radloop ls connect-backend` (Label Studio checks /health and calls /setup), the model versions
Label Studio lists (/versions), "Retrieve predictions" (/predict), an annotation (/webhook) and "Start
training" (/train or /webhook START_TRAINING), each pulled into the catalog before training."""

from __future__ import annotations

import json
import time

import pytest
from ls_live_rounds import bound_round_catalog
from ls_server import label_studio  # noqa: F401  (session fixture)

from radloop.labeling.ls_sync import push_round

pytestmark = pytest.mark.labelstudio


def _runs_with(app, predicate, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.state.scheduler.wait_idle(5)
        runs = app.state.scheduler.status()["runs"]
        if any(predicate(run) for run in runs):
            return runs
        time.sleep(0.2)
    return app.state.scheduler.status()["runs"]


def test_backend_contract_with_basic_auth(label_studio, test_catalog_url):  # noqa: F811
    from typer.testing import CliRunner

    from radloop.app.backend import BackendAuth, BackendSettings, create_app
    from radloop.app.backend_bench import serve_in_thread
    from radloop.app.backend_runtime import CasePredictor
    from radloop.app.cli import build_app

    server = label_studio
    catalog, round_id, image_ids, client, project_id = bound_round_catalog(server, test_catalog_url,
                                                                           "ws-walk22c-backend", "walk22c backend")
    root = catalog.workspace.root
    backend_ids: list[int] = []
    calls: list[tuple[str, str, int]] = []
    try:
        push_round(catalog, client, round_id, with_model=False)
        app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, None),
                         settings=BackendSettings(debounce_s=0.3, auth=BackendAuth("ls", "s3cret")))

        @app.middleware("http")
        async def _record(request, call_next):  # noqa: ANN001
            response = await call_next(request)
            calls.append((request.method, request.url.path, response.status_code))
            return response

        environment = {"RADLOOP_DATABASE_URL": catalog.workspace.database_url, "LABEL_STUDIO_API_KEY": server.token,
                       "RADLOOP_BACKEND_PASSWORD": "s3cret"}
        with serve_in_thread(app) as url:
            # a wrong password: one line from Label Studio, and what to pass (not only its validation JSON)
            wrong = CliRunner().invoke(build_app(), ["ls", "connect-backend", "--backend-url", url, "--auth-user",
                                                     "ls", "--workspace", str(root)],
                                       env={**environment, "RADLOOP_BACKEND_PASSWORD": "wrong"})
            text = " ".join(wrong.output.split())
            assert wrong.exit_code == 2 and "Traceback" not in wrong.output, wrong.output
            assert "authentication parameters were either not provided or are incorrect" in text, text
            assert "pass `--auth-user USER` with the password in $RADLOOP_BACKEND_PASSWORD" in text, text
            assert list(client.sdk.ml.list(project=project_id)) == []  # nothing half-connected is left

            # connect: Label Studio checks /health and calls /setup (with basic auth)
            cli = CliRunner().invoke(build_app(), ["ls", "connect-backend", "--backend-url", url, "--auth-user", "ls",
                                                   "--workspace", str(root), "--json"], env=environment)
            assert cli.exit_code == 0, cli.output
            backend_id = json.loads(cli.stdout)["ml_backend_id"]
            backend_ids.append(backend_id)
            assert client.sdk.ml.get(id=backend_id).state == "CO"
            assert {("GET", "/health", 200), ("POST", "/setup", 200)} <= set(calls), calls
            assert client.sdk.ml.list_model_versions(id=str(backend_id)).versions == ["report-rules:test-rules-1"]

            # "Retrieve predictions": /health, /setup, then /predict for the tasks without a prediction of the
            # version /setup gave (the pushed ones hold it: walk 22j), here one task imported without predictions
            pushed = client.iter_tasks(project_id, round_id=round_id)
            extra = client.import_tasks(project_id, [{"data": dict(pushed[0]["data"], round_id=None)}])
            calls.clear()
            client.retrieve_predictions(project_id)
            assert ("POST", "/predict", 200) in calls, calls
            tasks = client.iter_tasks(project_id, round_id=round_id)
            assert all([p["model_version"] for p in task["predictions"]] == ["report-rules:test-rules-1"]
                       for task in tasks), tasks
            added = [task for task in client.iter_tasks(project_id) if task["id"] in extra]
            assert [[p["model_version"] for p in task["predictions"]] for task in added] == \
                [["report-rules:test-rules-1"]], added

            # an annotation: the project webhook (with the backend's credentials) schedules a run that pulls it
            calls.clear()
            by_case = {task["data"]["case_id"]: task["id"] for task in tasks}
            client.create_annotation(by_case[image_ids[0]], [{"from_name": "findings", "to_name": "image",
                                                              "type": "choices", "value": {"choices": ["fracture"]}}])
            runs = _runs_with(app, lambda run: run.get("ok") is not None)
            assert ("POST", "/webhook", 200) in calls, calls
            assert [run["result"]["pull"]["annotations_added"] for run in runs if run.get("ok")] == [1], runs

            # "Start training": START_TRAINING reaches the backend and runs once more
            calls.clear()
            client.train(backend_id)
            runs = _runs_with(app, lambda run: "START_TRAINING" in run.get("reasons", []) and run.get("ok"))
            assert any("START_TRAINING" in run["reasons"] and run["ok"] for run in runs), runs
            assert client.sdk.ml.get(id=backend_id).state in ("CO", "TR"), calls
    finally:
        for backend_id in set(backend_ids):
            client.sdk.ml.delete(id=backend_id)
        client.delete_project(project_id)
        catalog.dispose()
