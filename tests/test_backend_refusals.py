"""What the ML backend tells the person connecting it to Label Studio, whose UI only says "422 Client Error ...
check the ML backend server console logs": refusals are logged with the reason (throttled), a labelling config
with none of radloop's labels is refused at /setup instead of connecting and predicting nothing, a webhook
refused for missing credentials says how to give it some, and a backend without an image model does not
download task images it cannot use."""

from __future__ import annotations

import base64
import logging

from fastapi.testclient import TestClient

from radloop.app import backend as backend_module
from radloop.app.backend import BackendAuth, BackendSettings, FetchPolicy, create_app
from radloop.app.backend_runtime import CasePredictor
from radloop.labeling.ls_config import build_label_config

YES_NO_CONFIG = ("<View><Image name='img' value='$img'/><Choices name='c' toName='img'>"
                 "<Choice value='yes'/><Choice value='no'/></Choices></View>")


def _app(**settings):
    return create_app(None, predictor_loader=lambda: CasePredictor(None, None),
                      settings=BackendSettings(debounce_s=3600, **settings))


def _refusals(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == "radloop.app.backend" and record.getMessage().startswith("refused")]


def test_setup_refuses_a_config_without_radloop_labels_and_logs_why(caplog):
    client = TestClient(_app())
    with caplog.at_level(logging.WARNING, logger="radloop.app.backend"):
        refused = client.post("/setup", json={"project": "3.1700000000", "schema": YES_NO_CONFIG})
        no_image = client.post("/setup", json={"project": "4.1700000000", "schema": "<View><Text name='t' "
                                               "value='$t'/></View>"})
    assert refused.status_code == 422
    assert "no radloop finding among its labels (yes, no)" in refused.json()["detail"]
    assert no_image.status_code == 422
    logged = _refusals(caplog)
    assert any("POST /setup" in line and "HTTP 422" in line and "(yes, no)" in line for line in logged), logged
    # the same refusal again within a minute is not logged again (a page reload must not flood the console)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="radloop.app.backend"):
        assert client.post("/setup", json={"project": "3.1700000000", "schema": YES_NO_CONFIG}).status_code == 422
    assert _refusals(caplog) == []
    # radloop's own config, and a custom one with one radloop label among others, are accepted
    assert client.post("/setup", json={"project": "5.1", "schema": build_label_config()}).status_code == 200
    mixed = YES_NO_CONFIG.replace("<Choice value='no'/>", "<Choice value='no'/><Choice value='fracture'/>")
    assert client.post("/setup", json={"project": "6.1", "schema": mixed}).status_code == 200


def test_a_webhook_refused_for_missing_credentials_says_how_to_add_them(caplog):
    client = TestClient(_app(auth=BackendAuth(username="lead", password="s3cret")))
    with caplog.at_level(logging.WARNING, logger="radloop.app.backend"):
        assert client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}}).status_code == 401
    [line] = _refusals(caplog)
    assert "POST /webhook" in line and "HTTP 401" in line and "radloop ls connect-backend" in line
    assert "s3cret" not in caplog.text
    good = base64.b64encode(b"lead:s3cret").decode()
    accepted = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}},
                           headers={"Authorization": f"Basic {good}"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "scheduled"


def test_without_an_image_model_task_images_are_not_downloaded(monkeypatch):
    """The report rules read reports, not pixels: a task with only an image URL gets no prediction (``[]``),
    at once, instead of a download followed by an empty prediction (or a 422 when the URL fails)."""
    def no_fetch(*_args, **_kwargs):
        raise AssertionError("an image was downloaded for a model that cannot read it")

    monkeypatch.setattr(backend_module, "fetch_image", no_fetch)
    client = TestClient(_app(fetch_policy=FetchPolicy(allow_any=True)))
    tasks = [{"id": 1, "data": {"image": "http://127.0.0.1:9/x.png"}},
             {"id": 2, "data": {"image": "http://127.0.0.1:9/y.png"}}]
    response = client.post("/predict", json={"tasks": tasks, "label_config": build_label_config()})
    assert response.status_code == 200, response.text
    assert response.json()["results"] == [[], []]



def test_downloads_never_run_past_the_predict_budget(monkeypatch):
    """Label Studio gives /predict 30 s: a download started near the end of ``predict_budget_s`` gets only what
    is left of it (at least 0.5 s), not the whole ``image_fetch_timeout_s``, so the answer comes in time."""
    import time
    from types import SimpleNamespace

    import numpy as np

    timeouts: list[float] = []

    def slow_fetch(*_args, timeout, **_kwargs):
        timeouts.append(timeout)
        time.sleep(0.4)
        return np.zeros((8, 8), dtype=np.uint8)

    class ImageModel:
        model_version = "img-v1"

        def predict(self, images, *, original_sizes=None):
            return [SimpleNamespace(model_version="img-v1", choices={"fracture": 0.9}, boxes=()) for _ in images]

    monkeypatch.setattr(backend_module, "fetch_image", slow_fetch)
    app = create_app(None, predictor_loader=lambda: CasePredictor(None, ImageModel()),
                     settings=BackendSettings(debounce_s=3600, predict_budget_s=1.0, image_fetch_timeout_s=10.0,
                                              fetch_policy=FetchPolicy(allow_any=True)))
    tasks = [{"id": index, "data": {"image": f"http://127.0.0.1:9/{index}.png"}} for index in range(6)]
    response = TestClient(app).post("/predict", json={"tasks": tasks, "label_config": build_label_config()})
    assert response.status_code == 200, response.text
    assert timeouts and max(timeouts) <= 1.0 and min(timeouts) >= 0.5
    results = response.json()["results"]
    assert len(results) == 6 and results[0] and results[-1] == []  # the first answered, the last deferred


def test_unknown_routes_are_not_logged_as_refusals(caplog):
    """A client probing the port asks for paths Label Studio never calls: no WARNING line for each."""
    client = TestClient(_app())
    with caplog.at_level(logging.WARNING, logger="radloop.app.backend"):
        for path in ("/admin", "/.env", "/wp-login.php"):
            assert client.get(path).status_code == 404
        assert client.get("/predict").status_code == 405
    assert _refusals(caplog) == []
