"""The ML backend's contract with FastAPI's TestClient: shapes, auth, malformed requests, training, swaps."""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from fastapi.testclient import TestClient

from radloop.app.backend import BackendAuth, BackendSettings, FetchPolicy, create_app
from radloop.app.backend_runtime import CasePredictor, ModelHolder
from radloop.core.records import Box

CUSTOM_CONFIG = ("<View><Image name='xray' value='$img'/><Choices name='cls' toName='xray' choice='multiple'>"
                 "<Choice value='fracture'/><Choice value='normal'/></Choices>"
                 "<RectangleLabels name='rect' toName='xray'><Label value='fracture'/></RectangleLabels></View>")


@dataclass
class _Output:
    choices: dict
    boxes: list
    model_version: str


@dataclass
class BrightSpotModel:
    """A tiny deterministic image model for contract tests: fracture probability = mean brightness, and a
    box around the brightest 16 x 16 block (original pixels, scaled from the render by ``original_sizes``)."""

    model_version: str = "test-model-1"
    calls: list = field(default_factory=list)

    def predict(self, images, *, original_sizes):
        from PIL import Image as PILImage

        outputs = []
        for image, (width, height) in zip(images, original_sizes, strict=True):
            pixels = np.asarray(PILImage.open(image).convert("L")) if isinstance(image, str) else image
            self.calls.append(pixels.shape)
            probability = float(pixels.mean() / 255.0)
            blocks = pixels[: pixels.shape[0] // 16 * 16, : pixels.shape[1] // 16 * 16]
            sums = blocks.reshape(blocks.shape[0] // 16, 16, blocks.shape[1] // 16, 16).sum(axis=(1, 3))
            row, column = np.unravel_index(int(sums.argmax()), sums.shape)
            scale_x, scale_y = width / pixels.shape[1], height / pixels.shape[0]
            box = Box("fracture", column * 16 * scale_x, row * 16 * scale_y, 16 * scale_x, 16 * scale_y,
                      score=round(probability, 4))
            outputs.append(_Output({"fracture": probability, "normal": 1 - probability}, [box], self.model_version))
        return outputs


@pytest.fixture
def cases(catalog):
    """Two synthetic cases in the catalog; the first's original is 2x its render."""
    from PIL import Image as PILImage

    from radloop.core.schema import Image, Study

    ids = []
    with catalog.session() as session:
        for index in range(2):
            pixels = np.zeros((64, 96), dtype=np.uint8)
            pixels[16:32, 48:64] = 255 - 40 * index
            image_id = f"I-{index:016x}"
            path = catalog.workspace.renders_dir / f"{image_id}.png"
            PILImage.fromarray(pixels).save(path)
            session.add(Study(id=f"S-{index:016x}", body_region="wrist"))
            session.flush()
            scale = 2 if index == 0 else 1
            session.add(Image(id=image_id, study_id=f"S-{index:016x}", content_hash=f"{index:064x}",
                              source_path="x", source_format="png", render_path=catalog.workspace.relative(path),
                              thumb_path="t", width=96 * scale, height=64 * scale, render_width=96,
                              render_height=64))
            ids.append(image_id)
    return ids


def _app(catalog, model=None, **kwargs):
    model = model or BrightSpotModel()
    return create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, model), **kwargs), model


def test_health_setup_versions(catalog, cases):
    app, _ = _app(catalog)
    client = TestClient(app)
    assert client.get("/health").json() == {"status": "UP", "model_class": "BrightSpotModel",
                                            "model_version": "test-model-1", "last_training": None}
    response = client.post("/setup", json={"project": "3.1700000000", "schema": CUSTOM_CONFIG,
                                           "hostname": "http://127.0.0.1:1", "access_token": "abc"})
    assert response.status_code == 200 and response.json() == {"model_version": "test-model-1"}
    assert app.state.projects.config("3.1700000000").choices[0].from_name == "cls"
    assert client.get("/versions").json()["model_version"] == "test-model-1"


def test_predict_uses_project_names_and_original_pixels(catalog, cases):
    app, model = _app(catalog)
    client = TestClient(app)
    client.post("/setup", json={"project": "p1", "schema": CUSTOM_CONFIG})
    body = {"tasks": [{"id": 1, "data": {"img": "/x.png", "case_id": cases[0]}},
                      {"id": 2, "data": {"img": "/y.png", "case_id": cases[1]}}], "project": "p1"}
    results = client.post("/predict", json=body).json()["results"]
    assert len(results) == 2
    first = results[0]
    assert first["model_version"] == "test-model-1"
    kinds = {result["type"]: result for result in first["result"]}
    assert kinds["choices"]["from_name"] == "cls" and kinds["choices"]["to_name"] == "xray"
    rect = kinds["rectanglelabels"]
    assert rect["from_name"] == "rect" and rect["value"]["rectanglelabels"] == ["fracture"]
    assert rect["score"] is not None and rect["value"]["rotation"] == 0
    # case 0's original is 2x its render: the model saw the bright block at (48, 16) of the 96 x 64 render and
    # returned it at (96, 32) of the 192 x 128 original; either way it is 50 % / 25 % of the image
    assert rect["value"]["x"] == pytest.approx(48 / 96 * 100) and rect["value"]["y"] == pytest.approx(16 / 64 * 100)
    assert rect["value"]["width"] == pytest.approx(16 / 96 * 100)
    assert rect["original_width"] == 96 and rect["original_height"] == 64  # what Label Studio displays
    assert results[1]["result"][1]["value"]["x"] == pytest.approx(48 / 96 * 100)
    # an unknown case with no image URL gets no prediction (``[]``), not an empty one ("none present")
    unknown = client.post("/predict", json={"tasks": [{"id": 3, "data": {"case_id": "I-unknown"}}],
                                            "label_config": CUSTOM_CONFIG}).json()
    assert unknown["results"] == [[]]


@pytest.mark.parametrize("payload, status, reason", [
    (b"{not json", 400, "not valid JSON"),
    (b'{"tasks": []}', 422, "non-empty list"),
    (b'{"tasks": [{"id": 1}]}', 422, "'data' object"),
    (b'{"tasks": [{"id": 1, "data": {"foo": 1}}]}', 422, "neither a known case_id nor an image URL"),
    (b'{"tasks": [{"id": 1, "data": {"case_id": "I-1"}}], "label_config": "<View>"}', 422, "not valid XML"),
    (b'{"tasks": [{"id": 1, "data": {"image": "ftp://x"}}]}', 422, "unsupported image URL"),
])
def test_malformed_predict_requests_get_4xx_with_reason(catalog, cases, payload, status, reason):
    app, _ = _app(catalog)
    response = TestClient(app).post("/predict", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert reason in response.json()["detail"]


def test_malformed_setup_and_webhook(catalog, cases):
    client = TestClient(_app(catalog)[0])
    assert client.post("/setup", json={"project": "p", "schema": "<View><Image"}).status_code == 422
    assert client.post("/setup", content=b"[1]").status_code == 422
    for body in (b"", b"[1]", b'"ANNOTATION_CREATED"', b'{"project": {"id": 1}}', b'{"action": 7}',
                 b'{"action": ""}', b"{not json"):
        response = client.post("/webhook", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, (body, response.text)
        assert "JSON" in response.json()["detail"]


def test_webhook_never_reflects_the_action(catalog, cases):
    """Label Studio sends many event types: unknown ones get a fixed 200 reply, not the request's text back."""
    app, _ = _app(catalog, settings=BackendSettings(debounce_s=3600))
    client = TestClient(app)
    for action in ("PROJECT_UPDATED", "<script>alert(1)</script>", "x" * 10_000):
        response = client.post("/webhook", json={"action": action, "project": {"id": 1}})
        assert response.status_code == 200
        assert response.json() == {"status": "ignored", "reason": "not a training event"}
    scheduled = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}}).json()
    assert scheduled["status"] == "scheduled" and scheduled["action"] == "ANNOTATION_CREATED"
    assert app.state.scheduler.status()["pending"] == 1  # the ignored ones queued nothing


@pytest.mark.parametrize("payload, reason", [
    (b"", "needs 'project'"),
    (b"[1]", "must be a JSON object"),
    (b'"train"', "must be a JSON object"),
    (b"{}", "needs 'project'"),
    (b'{"project": {"id": 1}}', "needs 'project'"),
    (b'{"project": true}', "needs 'project'"),
    (b'{"project": " "}', "needs 'project'"),
    (b'{"project": "' + b"9" * 101 + b'"}', "longer than 100"),
    (b'{"project": "1.1", "annotations": {"id": 1}}', "'annotations' must be a list"),
    (b'{"project": "1.1", "annotations": [1, 2]}', "'annotations' must be a list of task objects"),
    (b'{"project": "1.1", "label_config": 5}', "'label_config' must be a string"),
    (b'{"project": "1.1", "params": []}', "'params' must be an object"),
])
def test_train_body_is_validated(catalog, cases, payload, reason):
    app, _ = _app(catalog, settings=BackendSettings(debounce_s=3600))
    response = TestClient(app).post("/train", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == 400 and reason in response.json()["detail"]
    assert app.state.scheduler.status()["pending"] == 0


def test_train_accepts_label_studios_body(catalog, cases):
    """The body of ``MLApi.train`` in Label Studio 1.23 (``ml/api_connector.py``, feature flag off)."""
    app, _ = _app(catalog, settings=BackendSettings(debounce_s=3600))
    body = {"annotations": [{"id": 1, "data": {"case_id": cases[0]}, "annotations": [], "predictions": []}],
            "project": "3.1700000000", "label_config": CUSTOM_CONFIG, "params": {"login": None, "password": None}}
    client = TestClient(app)
    response = client.post("/train", json=body)
    assert response.status_code == 200 and response.json()["status"] == "scheduled"
    assert client.post("/train", json={"project": 3, "future_key": "ignored"}).status_code == 200
    assert app.state.scheduler.status()["pending"] == 2


def test_tasks_beyond_the_limit_are_deferred_not_refused(catalog, cases):
    """Label Studio sends every selected task in one /predict: the first ``max_tasks`` are answered, the rest
    get ``[]`` (no prediction; asked again next time) instead of a 422 that left every task without one."""
    app, _ = _app(catalog, settings=BackendSettings(max_tasks=2))
    body = {"tasks": [{"id": i, "data": {"case_id": cases[0]}} for i in range(3)]}
    response = TestClient(app).post("/predict", json=body)
    assert response.status_code == 200, response.text
    first, second, third = response.json()["results"]
    assert first["result"] and second["result"] and third == []
    out_of_time = TestClient(_app(catalog, settings=BackendSettings(predict_budget_s=0.0))[0]).post(
        "/predict", json=body)
    assert out_of_time.status_code == 200 and out_of_time.json()["results"][1:] == [[], []]


def test_basic_and_bearer_auth(catalog, cases):
    auth = BackendAuth(username="ls", password="s3cret", bearer_token="tok-123")
    assert "s3cret" not in repr(auth) and "tok-123" not in repr(auth)
    client = TestClient(_app(catalog, settings=BackendSettings(auth=auth))[0])
    assert client.get("/health").status_code == 401
    assert client.get("/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    wrong = base64.b64encode(b"ls:nope").decode()
    assert client.get("/health", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    assert client.get("/health", headers={"Authorization": "Basic !!notbase64"}).status_code == 401
    good = base64.b64encode(b"ls:s3cret").decode()
    assert client.get("/health", headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert client.get("/health", headers={"Authorization": "Bearer tok-123"}).status_code == 200
    body = {"tasks": [{"id": 1, "data": {"case_id": cases[0]}}]}
    assert client.post("/predict", json=body).status_code == 401
    assert client.post("/predict", json=body, headers={"Authorization": "Bearer tok-123"}).status_code == 200
    assert client.get("/health").headers["www-authenticate"].startswith("Bearer")
    assert client.get("/openapi.json").status_code == 404 and client.get("/docs").status_code == 404
    assert TestClient(_app(catalog)[0]).get("/openapi.json").status_code == 200  # no auth: docs stay


def test_predict_survives_bad_image_urls_and_reads_16_bit_images(catalog, cases):
    """Every fetch or decode failure is a 4xx naming the cause (never a 500); in a batch only the bad task
    goes without a prediction; downloads are capped in time and size; 16-bit PNGs keep their contrast."""
    import asyncio
    import io

    from PIL import Image as PILImage
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    from radloop.app.backend_bench import serve_in_thread

    wide = np.tile(np.linspace(0, 4095, 96, dtype=np.uint16), (64, 1))  # 12-bit values in a 16-bit PNG
    buffer = io.BytesIO()
    PILImage.fromarray(wide).save(buffer, format="PNG")

    async def drip(_request):
        async def body():
            for _ in range(20):
                yield b"x"
                await asyncio.sleep(0.5)
        return StreamingResponse(body(), media_type="image/png")

    images = Starlette(routes=[
        Route("/sixteen.png", lambda _r: Response(buffer.getvalue(), media_type="image/png")),
        Route("/text", lambda _r: PlainTextResponse("not an image")),
        Route("/huge", lambda _r: Response(b"x" * 4096, media_type="image/png")),
        Route("/slow", drip),
    ])
    def predict(*urls):
        tasks = [{"id": index, "data": {"image": url}} for index, url in enumerate(urls)]
        return client.post("/predict", json={"tasks": tasks, "label_config": CUSTOM_CONFIG.replace("$img", "$image")})

    with serve_in_thread(images) as base:
        # the test image server and a closed port are not Label Studio: allowed explicitly, as a user would
        allowed = FetchPolicy((f"{base}/", "http://127.0.0.1:9/"))
        app, model = _app(catalog, settings=BackendSettings(image_fetch_timeout_s=1.0, max_image_bytes=2048,
                                                            fetch_policy=allowed))
        client = TestClient(app)
        expectations = {f"{base}/text": "not return a PNG/JPEG", f"{base}/huge": "larger than",
                        "http://127.0.0.1:9/x.png": "could not be fetched", "http://[::1": "could not be fetched"}
        for url, reason in expectations.items():
            response = predict(url)
            assert response.status_code == 422 and reason in response.json()["detail"], (url, response.text)
        started = time.monotonic()
        slow = predict(f"{base}/slow")
        assert slow.status_code == 422 and "longer than 1 s" in slow.json()["detail"]
        assert time.monotonic() - started < 4
        mixed = predict(f"{base}/sixteen.png", f"{base}/text")
        assert mixed.status_code == 200
        first, second = mixed.json()["results"]
        assert first["result"] and second == []  # no prediction, not an empty one
    # the model saw the 16-bit ramp scaled to 0..255 (mean brightness 0.5), not clipped to white by convert("L")
    assert model.calls[-1] == (64, 96)
    [box] = [result for result in first["result"] if result["type"] == "rectanglelabels"]
    assert box["score"] == pytest.approx(0.5, abs=0.02)


def test_bodies_too_large_or_too_deep_are_4xx(catalog, cases):
    client = TestClient(_app(catalog, settings=BackendSettings(max_body_bytes=1000))[0])
    assert client.post("/predict", content=b"[" * 5000).status_code == 413
    deep = TestClient(_app(catalog)[0])
    response = deep.post("/webhook", content=b"[" * 200000 + b"]" * 200000)
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


def test_a_missing_render_costs_only_its_own_task(catalog, cases):
    app, _ = _app(catalog)
    (catalog.workspace.renders_dir / f"{cases[1]}.png").unlink()
    client = TestClient(app)
    both = client.post("/predict", json={"tasks": [{"id": 1, "data": {"case_id": cases[0]}},
                                                   {"id": 2, "data": {"case_id": cases[1]}}]})
    assert both.status_code == 200
    first, second = both.json()["results"]
    assert first["result"] and second == []
    alone = client.post("/predict", json={"tasks": [{"id": 2, "data": {"case_id": cases[1]}}]})
    assert alone.status_code == 422 and "task 2" in alone.json()["detail"]


def test_webhooks_schedule_debounced_background_training_and_swap_model(catalog, cases):
    runs, started, release = [], threading.Event(), threading.Event()
    versions = iter(["test-model-2", "test-model-3"])
    current = {"model": BrightSpotModel()}

    def train(batch):
        started.set()
        release.wait(10)  # slow training (until the test has been served meanwhile) must not block requests
        current["model"] = BrightSpotModel(model_version=next(versions))
        runs.append([request.reason for request in batch])
        return {"ok": True}

    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, current["model"]),
                     train_function=train, settings=BackendSettings(debounce_s=1.0))
    client = TestClient(app)
    for _ in range(4):
        response = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}})
        assert response.status_code == 200 and response.json()["status"] == "scheduled"
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert not started.is_set()  # the webhooks returned while the debounce was still pending
    assert started.wait(5)
    body = {"tasks": [{"id": 1, "data": {"case_id": cases[1]}}]}
    assert client.post("/predict", json=body).json()["results"][0]["model_version"] == "test-model-1"
    assert not runs  # served while training runs (it waits for `release`)
    release.set()
    assert app.state.scheduler.wait_idle(10)
    assert runs == [["ANNOTATION_CREATED"] * 4 + ["START_TRAINING"]]  # one debounced run
    assert client.post("/predict", json=body).json()["results"][0]["model_version"] == "test-model-2"
    status = client.get("/training").json()
    assert status["runs"][-1]["ok"] and status["runs"][-1]["model_version"] == "test-model-2"
    # a failing training run is recorded and the server keeps the model it had
    app.state.scheduler._train = lambda batch: 1 / 0
    client.post("/train", json={"project": "1.1"})
    assert app.state.scheduler.wait_idle(10)
    assert client.get("/training").json()["runs"][-1]["ok"] is False
    health = client.get("/health").json()
    assert health["status"] == "UP" and health["model_version"] == "test-model-2"
    assert health["last_training"]["status"] == "failed"
    assert health["last_training"]["error"] == "ZeroDivisionError: division by zero"


def test_model_holder_swap_is_atomic_under_concurrent_reads(catalog):
    versions = iter(range(1, 10_000))
    holder = ModelHolder(lambda: CasePredictor(catalog, BrightSpotModel(model_version=f"v{next(versions)}")))
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            predictor = holder.get()
            seen.append(predictor.model_version == predictor.predictor.model_version)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(200):
        holder.reload()
    stop.set()
    for thread in threads:
        thread.join()
    assert all(seen) and holder.swaps == 200 and holder.get().model_version == "v201"


def test_fallback_predictor_serves_report_weak_labels(catalog, cases):
    from radloop.core.schema import Report, WeakLabel

    with catalog.session() as session:
        session.add(Report(id="R-1", study_id="S-0000000000000000", content_hash="h", text="Fracture."))
        session.flush()
        session.add(WeakLabel(report_id="R-1", finding="fracture", status="positive", rules_version="r9"))
    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, None))
    client = TestClient(app)
    result = client.post("/predict", json={"tasks": [{"id": 1, "data": {"case_id": cases[0]}}]}).json()
    prediction = result["results"][0]
    # the version /setup answers: Label Studio skips tasks holding a prediction of that version, so a task
    # answered once is not sent again; it is the rules version the push stamps too (walk 22j: one prediction
    # per task, not a pushed "report-rules:r9" beside a backend "report-rules")
    setup = client.post("/setup", json={"project": "1", "schema": "", "hostname": "", "access_token": ""}).json()
    assert prediction["model_version"] == setup["model_version"] == "report-rules:r9"
    assert prediction["result"][0]["value"]["choices"] == ["fracture"]


def test_serve_backend_auth_option_is_checked(monkeypatch):
    """`--auth basic:` with no user would have served without any auth: refused, as are missing secrets."""
    import typer

    from radloop.app.cli_labelstudio import _backend_auth

    monkeypatch.setenv("RADLOOP_BACKEND_PASSWORD", "pw")
    monkeypatch.delenv("RADLOOP_BACKEND_TOKEN", raising=False)
    for bad in ("basic:", "bearer", "token"):
        with pytest.raises(typer.Exit):
            _backend_auth(bad)
    assert _backend_auth("basic:ls").enabled and not _backend_auth(None).enabled
