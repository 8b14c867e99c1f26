"""The ML backend follows the registry's current model (``radloop round finish`` / ``models set-current``
in another process) and logs one summary line per /predict."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from radloop.app.backend import BackendSettings, create_app
from radloop.app.backend_runtime import CasePredictor, ModelHolder, registry_state
from radloop.core.registry import current_model, register_model, set_current


@dataclass
class _Output:
    choices: dict
    boxes: list = field(default_factory=list)
    model_version: str = ""


@dataclass
class VersionModel:
    """Answers every image with the same probability, tagged with its version."""

    model_version: str

    def predict(self, images, *, original_sizes=None):
        return [_Output({"fracture": 0.9}, [], self.model_version) for _ in images]


@pytest.fixture
def case(catalog):
    import numpy as np
    from PIL import Image as PILImage

    from radloop.core.schema import Image, Study

    path = catalog.workspace.renders_dir / "I-0.png"
    PILImage.fromarray(np.zeros((32, 48), dtype=np.uint8)).save(path)
    with catalog.session() as session:
        session.add(Study(id="S-0", body_region="wrist"))
        session.flush()
        session.add(Image(id="I-0", study_id="S-0", content_hash="0" * 64, source_path="x", source_format="png",
                          render_path=catalog.workspace.relative(path), thumb_path="t", width=48, height=32,
                          render_width=48, render_height=32))
    return "I-0"


def _register(catalog, tmp_path, version: str, task: str = "findings") -> None:
    register_model(catalog, version, kind="probe", task=task, path=tmp_path / version, make_current=True)


def test_a_newly_current_model_is_served_without_a_restart(catalog, case, tmp_path):
    loads = []

    def loader():  # what load_case_predictor does, without model files: the registry's current version
        record = current_model(catalog, "findings")
        loads.append(record.version if record else None)
        return CasePredictor(catalog, VersionModel(record.version if record else "untrained"))

    _register(catalog, tmp_path, "probe-fracture-r001")
    app = create_app(catalog, predictor_loader=loader, settings=BackendSettings(model_check_s=0))
    client = TestClient(app)
    body = {"tasks": [{"id": 1, "data": {"case_id": case}}]}
    assert client.get("/health").json()["model_version"] == "probe-fracture-r001"
    for _ in range(3):  # no change in the registry: no reload
        client.post("/predict", json=body)
    assert loads == ["probe-fracture-r001"]

    _register(catalog, tmp_path, "probe-fracture-r003")  # e.g. `radloop round finish` in another process
    assert client.post("/predict", json=body).json()["results"][0]["model_version"] == "probe-fracture-r003"
    assert client.get("/health").json()["model_version"] == "probe-fracture-r003"
    versions = client.get("/versions").json()
    assert versions["model_version"] == "probe-fracture-r003"
    assert versions["versions"] == ["probe-fracture-r001", "probe-fracture-r003"]
    set_current(catalog, "probe-fracture-r001")  # a rollback is a change too
    assert client.get("/health").json()["model_version"] == "probe-fracture-r001"
    _register(catalog, tmp_path, "det-fracture-1", task="detection")  # the detector the predictor attaches
    client.get("/health")
    assert loads == ["probe-fracture-r001", "probe-fracture-r003", "probe-fracture-r001", "probe-fracture-r001"]


def test_registry_state_is_the_current_versions_of_the_task_and_the_detector(catalog, tmp_path):
    assert registry_state(catalog, "findings") == ()
    _register(catalog, tmp_path, "probe-a")
    _register(catalog, tmp_path, "encoder-a", task="encoder")  # not loaded by the backend: no reload for it
    _register(catalog, tmp_path, "det-a", task="detection")
    assert registry_state(catalog, "findings") == (("detection", "det-a"), ("findings", "probe-a"))


def test_registry_checks_are_rate_limited_and_reloads_are_single_and_atomic(catalog):
    """Many concurrent readers: the registry is queried at most once per interval, one thread loads while
    the others keep getting the old model (never a half-swapped one), and a failed load keeps the old one."""
    state = {"version": "v1", "queries": 0, "fail": False}
    loading = threading.Lock()
    concurrent_loads = []

    def read_state():
        state["queries"] += 1
        return state["version"]

    def loader():
        if not loading.acquire(blocking=False):
            concurrent_loads.append(True)
            return CasePredictor(catalog, VersionModel("clash"))
        try:
            time.sleep(0.05)
            if state["fail"]:
                raise OSError("model file unreadable")
            return CasePredictor(catalog, VersionModel(state["version"]))
        finally:
            loading.release()

    holder = ModelHolder(loader, registry_state=read_state, check_interval_s=0.2)
    assert holder.get().model_version == "v1" and state["queries"] == 1
    for _ in range(50):
        holder.get()
    assert state["queries"] == 1  # within the interval: no query at all

    state["version"] = "v2"
    started, queries_before = time.monotonic(), state["queries"]
    time.sleep(0.25)
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            predictor = holder.get()
            seen.append(predictor.model_version == predictor.predictor.model_version)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while holder.get().model_version != "v2" and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join()
    assert holder.get().model_version == "v2" and all(seen) and not concurrent_loads
    # at most one registry query per 0.2-s interval however many readers (a loaded machine stretches the wait)
    intervals = (time.monotonic() - started) / 0.2
    assert state["queries"] - queries_before <= intervals + 1 and holder.swaps == 1

    state.update(version="v3", fail=True)
    time.sleep(0.25)
    assert holder.get().model_version == "v2"  # the failed load is logged; the model in place keeps serving
    state["fail"] = False
    time.sleep(0.25)
    assert holder.get().model_version == "v3"


def test_each_predict_logs_one_summary_line_without_task_data(catalog, case, caplog):
    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, VersionModel("probe-log-1")))
    client = TestClient(app)
    body = {"tasks": [{"id": 1, "data": {"case_id": case, "report": "Patient Jane Roe, fracture of the radius",
                                         "image": "https://ls.example/data/upload/x.png?token=SIGNED-SECRET"}},
                      {"id": 2, "data": {"case_id": case}}], "project": "3.1700000000"}
    with caplog.at_level(logging.INFO, logger="radloop.app.backend"):
        assert client.post("/predict", json=body).status_code == 200
    [line] = [record for record in caplog.records if record.getMessage().startswith("predict:")]
    message = line.getMessage()
    assert line.levelno == logging.INFO and line.name == "radloop.app.backend"
    assert "2 task(s)" in message and "model probe-log-1" in message and "'3.1700000000'" in message
    assert message.endswith(" s")
    assert "SIGNED-SECRET" not in message and "Jane" not in message and "ls.example" not in message


def test_serve_backend_lets_the_summary_lines_through_at_the_default_level():
    """`radloop` logs at WARNING by default (RADLOOP_LOG_LEVEL); the backend's INFO summaries still show."""
    from radloop.app.cli_labelstudio import _log_requests

    root = logging.getLogger()
    names = ("radloop.app.backend", "radloop.app.backend_runtime")
    saved = root.level, [logging.getLogger(name).level for name in names]
    try:
        for name in names:
            logging.getLogger(name).setLevel(logging.NOTSET)
        root.setLevel(logging.ERROR)  # RADLOOP_LOG_LEVEL=ERROR: kept quiet
        _log_requests()
        assert not logging.getLogger(names[0]).isEnabledFor(logging.INFO)
        root.setLevel(logging.WARNING)
        _log_requests()
        assert all(logging.getLogger(name).isEnabledFor(logging.INFO) for name in names)
        assert not logging.getLogger("radloop.app.backend").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        for name, level in zip(names, saved[1]):
            logging.getLogger(name).setLevel(level)
