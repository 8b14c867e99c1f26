"""The ML backend against a REAL Label Studio server (tests/ls_server.py): `radloop ls connect-backend` run
twice, then an annotation made in Label Studio reaches the catalog through the backend's training webhook
(pulled with the token Label Studio sent to /setup) before training would run."""

from __future__ import annotations

import json
import time

import pytest
from ls_live_rounds import bound_round_catalog
from ls_server import label_studio  # noqa: F401  (session fixture)
from sqlalchemy import select

from radloop.core.schema import Annotation
from radloop.labeling.ls_sync import push_round

pytestmark = pytest.mark.labelstudio


def test_connect_twice_then_training_pulls_the_new_annotation(label_studio, test_catalog_url):  # noqa: F811
    from typer.testing import CliRunner

    from radloop.app.backend import BackendSettings, create_app
    from radloop.app.backend_bench import serve_in_thread
    from radloop.app.backend_runtime import CasePredictor
    from radloop.app.cli import build_app

    server = label_studio
    catalog, round_id, image_ids, client, project_id = bound_round_catalog(server, test_catalog_url, "ws-backend",
                                                                           "radloop backend live")
    backend_ids: list[int] = []
    try:
        assert push_round(catalog, client, round_id, with_model=False)["imported"] == len(image_ids)
        app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, None),
                         settings=BackendSettings(debounce_s=0.3))
        environment = {"RADLOOP_DATABASE_URL": catalog.workspace.database_url, "LABEL_STUDIO_API_KEY": server.token}
        with serve_in_thread(app) as url:
            for _attempt in range(2):  # the second run updates the backend (PATCH) instead of creating one
                cli = CliRunner().invoke(build_app(), ["ls", "connect-backend", "--backend-url", url, "--workspace",
                                                       str(catalog.workspace.root), "--json"], env=environment)
                assert cli.exit_code == 0, cli.output
                backend_ids.append(json.loads(cli.stdout)["ml_backend_id"])
            assert backend_ids[0] == backend_ids[1]
            assert len(list(client.sdk.ml.list(project=project_id))) == 1
            assert app.state.projects.token(project_id), "Label Studio's /setup sent no token"

            tasks = {task["data"]["case_id"]: task["id"] for task in client.iter_tasks(project_id, round_id=round_id)}
            client.create_annotation(tasks[image_ids[0]], [{"from_name": "findings", "to_name": "image",
                                                            "type": "choices", "value": {"choices": ["fracture"]}}])
            deadline, pulled = time.monotonic() + 60, None
            while time.monotonic() < deadline and pulled is None:
                app.state.scheduler.wait_idle(5)
                runs = app.state.scheduler.status()["runs"]
                pulled = next((run["result"]["pull"] for run in runs if run.get("ok")
                               and run["result"]["pull"].get("annotations_added")), None)
                failed = [run["error"] for run in runs if not run.get("ok")]
                assert not failed, failed
            assert pulled is not None, app.state.scheduler.status()
            assert pulled["project_id"] == project_id and pulled["rounds"] == [round_id]
            assert pulled["annotations_added"] == 1
        with catalog.session() as session:
            fracture = session.scalars(select(Annotation).where(
                Annotation.source == "labelstudio", Annotation.label == "fracture")).all()
            assert [(row.image_id, row.meta["value"]) for row in fracture] == [(image_ids[0], 1)]
    finally:
        for backend_id in set(backend_ids):
            client.sdk.ml.delete(id=backend_id)
        client.delete_project(project_id)
        catalog.dispose()
