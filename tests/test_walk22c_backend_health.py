"""Walk 22c: /health and /setup answer within Label Studio's timeouts while a new model loads.

Label Studio 1.23 calls /health (1-s timeout) and /setup (3 s) before every "Retrieve predictions"; a backend
that misses them is marked disconnected and the action silently predicts nothing.  Once the registry's current
model changed, the first of those calls used to load the new model before answering (seconds for an image
model).  Now the load runs in the background and they answer with the model in place; /predict waits for it
as before.
"""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from radloop.app.backend_runtime import CasePredictor

LOAD_S = 2.5


class _Named(CasePredictor):
    def __init__(self, version: str) -> None:
        super().__init__(None)
        self._version = version

    @property
    def model_version(self) -> str:
        return self._version


def test_health_and_setup_do_not_wait_for_a_model_load(catalog, monkeypatch):
    from radloop.app import backend
    from radloop.app.backend import BackendSettings, create_app

    state = {"registry": ("findings", "v1"), "loads": 0}
    monkeypatch.setattr(backend, "registry_state", lambda catalog, task: state["registry"])

    def load() -> CasePredictor:
        state["loads"] += 1
        if state["loads"] > 1:
            time.sleep(LOAD_S)  # an image model's weights being read
        return _Named(state["registry"][1])

    app = create_app(catalog, predictor_loader=load, settings=BackendSettings(model_check_s=0.0))
    http = TestClient(app)
    assert http.get("/health").json()["model_version"] == "v1"
    state["registry"] = ("findings", "v2")  # `radloop round finish` registered a new current model

    started = time.monotonic()
    assert http.get("/health").json()["model_version"] == "v1"  # the model in place, within the 1 s
    assert time.monotonic() - started < 0.9
    started = time.monotonic()
    assert http.post("/setup", json={"project": "1.1", "schema": ""}).json()["model_version"] == "v1"
    assert time.monotonic() - started < 2.5
    deadline = time.monotonic() + 10 * LOAD_S
    while http.get("/health").json()["model_version"] != "v2" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert http.get("/health").json()["model_version"] == "v2" and state["loads"] == 2
