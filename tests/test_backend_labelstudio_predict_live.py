"""Predictions through a REAL Label Studio server (tests/ls_server.py): "Retrieve predictions" as the Data Manager
action sends it (Label Studio 1.23 puts every selected task in one /predict request).

Found by hand: on a project with more tasks than the backend answers per request (64) the backend answered
422, Label Studio said "Retrieved 80 predictions" and stored none; a task whose image could not be fetched got
an empty prediction, which in radloop's view means "none present" and which Label Studio never asks to replace
for that model version; a project whose labels are none of radloop's findings connected without a word and got
empty predictions only.
"""

from __future__ import annotations

import pytest
from ls_live_rounds import bound_round_catalog
from ls_server import label_studio  # noqa: F401  (session fixture)

from radloop.labeling.ls_client import LabelStudioError
from radloop.labeling.ls_sync import push_round
from radloop.ssl.predict import ImagePrediction

pytestmark = pytest.mark.labelstudio


class SureModel:
    """Stand-in image model: every image has a fracture (p = 0.9)."""

    model_version = "live-model-1"

    def predict(self, images, *, original_sizes=None):
        return [ImagePrediction({"fracture": 0.9}, [], self.model_version) for _ in images]


def _predictions(client, project_id: int) -> dict[int, list]:
    """The backend's predictions per task (the push's report-rule pre-annotations left out)."""
    return {task["id"]: [prediction for prediction in task.get("predictions") or []
                         if prediction["model_version"] == SureModel.model_version]
            for task in client.iter_tasks(project_id)}


def test_retrieve_predictions_answers_every_task_and_stores_none_for_broken_ones(label_studio,  # noqa: F811
                                                                                 test_catalog_url):
    from radloop.app.backend import BackendSettings, create_app
    from radloop.app.backend_bench import serve_in_thread
    from radloop.app.backend_runtime import CasePredictor

    server = label_studio
    catalog, round_id, image_ids, client, project_id = bound_round_catalog(
        server, test_catalog_url, "ws-predict", "radloop predict live", n_images=4)
    other = None
    try:
        assert push_round(catalog, client, round_id, with_model=False)["imported"] == len(image_ids)
        [missing] = client.import_tasks(project_id, [{"data": {
            "image": "/data/local-files/?d=ws-predict/labelstudio/media/missing.png", "report": ""}}])
        # three tasks per request: Label Studio's one request for all five tasks is more than the backend answers
        app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, SureModel()),
                         settings=BackendSettings(max_tasks=3, debounce_s=3600))
        with serve_in_thread(app) as url:
            client.ensure_ml_backend(project_id, url)
            client.retrieve_predictions(project_id)
            first = _predictions(client, project_id)
            assert sum(bool(predictions) for predictions in first.values()) == 3, first
            assert first[missing] == []
            client.retrieve_predictions(project_id)  # the deferred tasks are asked for again, and only they
            second = _predictions(client, project_id)
            assert client.get_task(missing)["predictions"] == [], "a task whose image cannot be fetched must not " \
                "get an (empty) prediction"
            answered = [predictions for task_id, predictions in second.items() if task_id != missing]
            assert [len(predictions) for predictions in answered] == [1] * len(image_ids)
            for [prediction] in answered:
                assert prediction["result"][0]["value"]["choices"] == ["fracture"]

            # a project whose labels are none of radloop's findings: Label Studio's check of /setup refuses it
            other = client.create_project("radloop yes-no live", "<View><Image name='img' value='$img'/><Choices "
                                          "name='c' toName='img'><Choice value='yes'/><Choice value='no'/></Choices>"
                                          "</View>")
            with pytest.raises(LabelStudioError, match="setup"):
                client.ensure_ml_backend(other, url)
    finally:
        for project in (project_id, other):
            if project is not None:
                client.delete_project(project)
        catalog.dispose()
