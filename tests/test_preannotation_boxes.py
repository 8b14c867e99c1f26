"""Model boxes reach Label Studio where the model saw them, also on images larger than their render.

A 4000 x 3000 PNG is rendered at 2048 x 1536 (``MAX_RENDER_SIDE``); the detector reads the render, so its raw
boxes are in render pixels while Label Studio percentages are computed from the catalog's original size.  The
stand-in detector boxes the bright rectangle in whatever pixels it is given (as Faster R-CNN returns boxes in
its input tensor's pixels) inside radloop's own :class:`DetectorPredictor`, so the render -> original scaling
under test is the real one.  Both ways boxes go out are checked: round push / ``ls export`` task payloads and
the ML backend's ``/predict``; also a workspace whose only model is a detector.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bright_boxes import bright_detector, bright_round
from radloop.app.backend import BackendSettings, create_app
from radloop.app.backend_runtime import CasePredictor, load_case_predictor
from radloop.core.registry import register_model
from radloop.core.render import MAX_RENDER_SIDE
from radloop.core.schema import Image
from radloop.labeling.ls_adapter import ImageGeometry, parse_annotation
from radloop.labeling.ls_config import build_label_config, parse_label_config
from radloop.labeling.ls_tasks import build_task_payloads, export_tasks_json
from radloop.ssl import predict as predict_module
from radloop.ssl.predict import CombinedPredictor, ImagePrediction, load_predictor

#: original (width, height) -> the bright rectangle (x, y, w, h) in original pixels
TRUE_BOXES = {(4000, 3000): (2000, 1500, 400, 300), (800, 1200): (200, 300, 160, 120)}
#: how far (percentage points of the image) a box may be from the truth: render resampling blurs its edges
TOLERANCE = 0.5


class ConstantFindings:
    """Stand-in findings head: the same choices for every image."""

    model_version = "findings-test-1"
    findings = ["fracture"]
    regions: list[str] = []
    encoder_version = None

    def predict(self, images, *, original_sizes=None):
        return [ImagePrediction({"fracture": 0.7}, model_version=self.model_version) for _ in images]


@pytest.fixture
def big_round(tmp_path, catalog) -> int:
    """One image larger than its render and one that is its own render, both selected in round 1."""
    return bright_round(catalog, tmp_path / "images", TRUE_BOXES, dataset="big")


def _images(catalog) -> dict[str, Image]:
    with catalog.session() as session:
        return {image.id: image for image in session.scalars(select(Image))}


def _rectangles(results: list[dict]) -> list[dict]:
    return [result for result in results if result["type"] == "rectanglelabels"]


def _assert_on_true_box(rectangle: dict, image: Image) -> None:
    x, y, w, h = TRUE_BOXES[(image.width, image.height)]
    expected = [x * 100 / image.width, y * 100 / image.height, w * 100 / image.width, h * 100 / image.height]
    value = rectangle["value"]
    assert [value["x"], value["y"], value["width"], value["height"]] == pytest.approx(expected, abs=TOLERANCE), \
        f"{image.width}x{image.height} (render {image.render_width}x{image.render_height})"
    # what Label Studio displays is the render: the size it is told is the render's
    assert (rectangle["original_width"], rectangle["original_height"]) == (image.render_width, image.render_height)


def test_the_large_image_is_downscaled_for_its_render(catalog, big_round):
    sizes = {(image.width, image.height): (image.render_width, image.render_height)
             for image in _images(catalog).values()}
    assert sizes == {(4000, 3000): (MAX_RENDER_SIDE, 1536), (800, 1200): (800, 1200)}


@pytest.mark.parametrize("predictor", [bright_detector(), CombinedPredictor(ConstantFindings(), bright_detector())],
                         ids=["detector", "findings+detector"])
def test_pushed_boxes_land_on_the_true_box_and_come_back_there(catalog, big_round, predictor):
    images = _images(catalog)
    config = parse_label_config(build_label_config())
    payloads = build_task_payloads(catalog, big_round, url_for=lambda staged: f"/data/{staged.name}",
                                   predictor=predictor, report_text="none")
    assert len(payloads) == 2
    for payload in payloads:
        image = images[payload.image_id]
        [model] = [p for p in payload.task["predictions"] if p["model_version"] == predictor.model_version]
        [rectangle] = _rectangles(model["result"])
        _assert_on_true_box(rectangle, image)
        # an expert accepting the pre-annotation unchanged stores the true box (original pixels)
        accepted = parse_annotation({"id": 1, "created_at": "2024-01-01T00:00:00Z", "result": [rectangle]}, config,
                                    ImageGeometry(image.width, image.height, image.render_width, image.render_height))
        [box] = accepted.boxes
        x, y, w, h = TRUE_BOXES[(image.width, image.height)]
        assert (box.x, box.y, box.w, box.h) == pytest.approx((x, y, w, h), abs=TOLERANCE / 100 * image.width)


def test_backend_boxes_land_on_the_true_box(catalog, big_round):
    images = _images(catalog)
    app = create_app(catalog, predictor_loader=lambda: CasePredictor(catalog, bright_detector()),
                     train_function=lambda batch: None, settings=BackendSettings(debounce_s=3600))
    ids = sorted(images)
    tasks = [{"id": index + 1, "data": {"image": f"/data/{image_id}.png", "case_id": image_id}}
             for index, image_id in enumerate(ids)]
    response = TestClient(app).post("/predict", json={"tasks": tasks, "label_config": build_label_config()})
    assert response.status_code == 200, response.text
    for image_id, result in zip(ids, response.json()["results"]):
        [rectangle] = _rectangles(result["result"])
        _assert_on_true_box(rectangle, images[image_id])


def test_detector_refuses_to_guess_the_original_size(catalog, big_round):
    image = next(image for image in _images(catalog).values() if image.width > MAX_RENDER_SIDE)
    render = str(catalog.workspace.absolute(image.render_path))
    with pytest.raises(TypeError, match="original_sizes"):
        bright_detector().predict([render])
    with pytest.raises(ValueError, match="2 original sizes for 1 images"):
        bright_detector().predict([render], original_sizes=[(4000, 3000)] * 2)
    [prediction] = bright_detector().predict([render], original_sizes=[(image.width, image.height)])
    assert [round(v) for v in (prediction.boxes[0].x, prediction.boxes[0].y)] == [2000, 1500]


def test_a_detector_alone_pre_annotates_boxes(tmp_path, catalog, big_round, monkeypatch):
    monkeypatch.setitem(predict_module.LOADERS, "detector", lambda _catalog, record: bright_detector(record.version))
    assert load_predictor(catalog, "findings", with_detector=True) is None  # no model at all yet
    register_model(catalog, "det-only-1", "detector", "detection", tmp_path / "det-only-1", make_current=True)
    assert load_predictor(catalog, "findings") is None  # no findings model: nothing without the detector
    predictor = load_predictor(catalog, "findings", with_detector=True)
    assert isinstance(predictor, CombinedPredictor) and predictor.findings_predictor is None
    assert predictor.model_version == "det-only-1" and predictor.findings == ["fracture"]
    assert predictor.encoder_version is None
    with pytest.raises(TypeError, match="needs images"):
        predictor.predict_proba_embeddings(np.zeros((1, 8), dtype=np.float32))
    images = _images(catalog)

    summary = export_tasks_json(catalog, big_round, tmp_path / "tasks.json", report_text="none")
    assert summary["model_version"] == "det-only-1" and summary["tasks"] == 2
    for task in json.loads((tmp_path / "tasks.json").read_text()):
        [model] = [p for p in task["predictions"] if p["model_version"] == "det-only-1"]
        [rectangle] = _rectangles(model["result"])
        _assert_on_true_box(rectangle, images[task["data"]["case_id"]])
        [choices] = [r for r in model["result"] if r["type"] == "choices"]
        assert choices["value"]["choices"] == ["fracture"]  # the detector's best box score (0.9)

    app = create_app(catalog, predictor_loader=lambda: load_case_predictor(catalog),
                     train_function=lambda batch: None, settings=BackendSettings(debounce_s=3600))
    client = TestClient(app)
    assert client.get("/health").json()["model_version"] == "det-only-1"
    ids = sorted(images)
    tasks = [{"id": index + 1, "data": {"image": f"/data/{image_id}.png", "case_id": image_id}}
             for index, image_id in enumerate(ids)]
    results = client.post("/predict", json={"tasks": tasks, "label_config": build_label_config()}).json()["results"]
    for image_id, result in zip(ids, results):
        assert result["model_version"] == "det-only-1"
        [rectangle] = _rectangles(result["result"])
        _assert_on_true_box(rectangle, images[image_id])
