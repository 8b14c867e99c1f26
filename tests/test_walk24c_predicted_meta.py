"""Walk 24c: a round's model boxes went to Label Studio as pre-annotations but were not kept in the catalog, so the
Queue page could not show them.  Building the tasks (round start, ``round push``, ``ls export``) now keeps each
selected image's predicted boxes in ``Selection.meta["predicted"]``; the Queue's view reads them back.

A stand-in detector boxes a known rectangle in the pixels it is given, inside radloop's own
:class:`DetectorPredictor`, so the render -> original scaling of the stored boxes is the real one.
"""

from __future__ import annotations

import pytest
import torch
from sqlalchemy import select
from torch import nn

from bright_boxes import bright_detector as shared_bright_detector
from bright_boxes import bright_round
from radloop.app import views_rounds
from radloop.core.records import Box
from radloop.core.schema import Image, Selection
from radloop.labeling.ls_tasks import PREDICTED_META, build_task_payloads, export_tasks_json
from radloop.ssl.detection import DetectorPredictor

#: original (width, height) -> the bright rectangle (x, y, w, h) in original pixels; 3000 wide is rendered smaller
TRUE_BOXES = {(3000, 1500): (1500, 600, 300, 300), (400, 300): (100, 60, 120, 90)}


def bright_detector(version: str = "det-24c"):
    return shared_bright_detector(version, score=0.875)


@pytest.fixture
def picked(tmp_path, catalog) -> int:
    """Two images with a bright rectangle, both selected by round 1; the first one's task was pushed before."""
    return bright_round(catalog, tmp_path / "images", TRUE_BOXES, dataset="bright",
                        first_meta={"ls": {"task_id": 7, "project_id": 3}})


def _metas(catalog, round_id: int) -> dict[str, dict]:
    with catalog.session() as session:
        return {selection.image_id: dict(selection.meta or {}) for selection in
                session.scalars(select(Selection).where(Selection.round_id == round_id))}


def _sizes(catalog) -> dict[str, tuple[int, int]]:
    with catalog.session() as session:
        return {image.id: (image.width, image.height) for image in session.scalars(select(Image))}


def test_building_the_tasks_keeps_the_model_boxes_in_original_pixels(catalog, picked):
    payloads = build_task_payloads(catalog, picked, url_for=lambda staged: f"/data/{staged.name}",
                                   predictor=bright_detector(), report_text="none")
    assert len(payloads) == 2
    metas, sizes = _metas(catalog, picked), _sizes(catalog)
    for image_id, meta in metas.items():
        stored = meta[PREDICTED_META]
        assert stored["model_version"] == "det-24c"
        [box] = stored["boxes"]
        assert box["label"] == "fracture" and box["score"] == pytest.approx(0.875)
        width, height = sizes[image_id]
        # the render of the 3000 px image is smaller: a box 1 render pixel off is ~1.5 original pixels off
        assert [box[key] for key in "xywh"] == pytest.approx(TRUE_BOXES[(width, height)], abs=2)
    first = min(metas)
    assert metas[first]["ls"] == {"task_id": 7, "project_id": 3}, "the push's own meta is kept"

    queue = views_rounds.selection_queue(catalog, picked)
    assert set(queue.predicted) == set(metas)
    shown = queue.predicted[first]
    assert shown.model_version == "det-24c" and len(shown.boxes) == 1
    assert shown.boxes[0].label == "fracture" and shown.boxes[0].score == pytest.approx(0.875)


def test_the_export_keeps_them_too_and_a_rebuild_replaces_them(tmp_path, catalog, picked, monkeypatch):
    from radloop.labeling import ls_tasks

    export_tasks_json(catalog, picked, tmp_path / "tasks.json", report_text="none", with_model=False)
    assert all(PREDICTED_META not in meta for meta in _metas(catalog, picked).values()), "no model: nothing kept"
    assert views_rounds.selection_queue(catalog, picked).predicted == {}
    for version in ("det-24c-v1", "det-24c-v2"):
        monkeypatch.setattr(ls_tasks, "load_current_predictor", lambda _catalog, v=version: bright_detector(v))
        export_tasks_json(catalog, picked, tmp_path / "tasks.json", report_text="none")
        metas = _metas(catalog, picked)
        assert {meta[PREDICTED_META]["model_version"] for meta in metas.values()} == {version}
        assert all(len(meta[PREDICTED_META]["boxes"]) == 1 for meta in metas.values())


def test_old_and_damaged_meta_read_safely():
    assert views_rounds.predicted_boxes(None) is None
    assert views_rounds.predicted_boxes({"ls": {"task_id": 1}}) is None  # a round from before: nothing stored
    found = views_rounds.predicted_boxes({"predicted": {"model_version": "m-1", "boxes": [
        {"label": "fracture", "x": 1, "y": 2, "w": 3, "h": 4, "score": 0.5},
        {"label": "fracture", "x": "?", "y": 2, "w": 3, "h": 4}, "not a box", {"x": 1}]}})
    assert found == views_rounds.PredictedBoxes("m-1", (Box("fracture", 1.0, 2.0, 3.0, 4.0, 0.5),))
    assert views_rounds.predicted_boxes({"predicted": {"boxes": []}}) == views_rounds.PredictedBoxes(None, ())


# --- a round started with --simulate and a current detector ------------------------------------------------------


@pytest.fixture(scope="module")
def detector_round(tmp_path_factory, test_catalog_url):
    """12 real fracture radiographs, a small random encoder and a registered detector (the stand-in above);
    round 1 started with ``simulate``."""
    from rounds_workspace import build_rounds_catalog

    from radloop.app.rounds import start_round
    from radloop.core.registry import register_model
    from radloop.ssl import predict as predict_module

    root = (tmp_path_factory.mktemp("rounds24c") / "ws").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 12)
    patch = pytest.MonkeyPatch()
    patch.setitem(predict_module.LOADERS, "detector", lambda _catalog, record: fixed_box(record.version))
    register_model(catalog, "det-round-1", "detector", "detection", root / "det-round-1", make_current=True)
    try:
        report = start_round(catalog, strategy="random", budget=4, simulate=True, dataset="fracture")
        yield catalog, report
    finally:
        patch.undo()
        catalog.dispose()


class _Corner(nn.Module):
    """One box over the input's top-left quarter."""

    def forward(self, images):
        return [{"boxes": torch.tensor([[0.0, 0.0, image.shape[-1] / 4, image.shape[-2] / 4]]),
                 "labels": torch.tensor([1]), "scores": torch.tensor([0.5])} for image in images]


def fixed_box(version: str) -> DetectorPredictor:
    return DetectorPredictor(_Corner(), {"labels": ["fracture"]}, model_version=version)


def test_a_simulated_round_keeps_the_detector_boxes_of_its_batch(detector_round):
    catalog, _ = detector_round
    queue = views_rounds.selection_queue(catalog)
    assert len(queue.items) == 4
    assert set(queue.predicted) == set(queue.items["image_id"]), "every selected image has its model boxes"
    sizes = _sizes(catalog)
    for image_id, predicted in queue.predicted.items():
        assert predicted.model_version == "det-round-1"
        [box] = predicted.boxes
        width, height = sizes[image_id]
        assert (box.x, box.y) == (0, 0) and box.score == 0.5
        assert (box.w, box.h) == pytest.approx((width / 4, height / 4), abs=1)


def test_the_queue_page_of_that_round_counts_both_kinds(detector_round, env):
    from test_app_pages import open_page

    catalog, _ = detector_round
    app = open_page(catalog.workspace, "page_queue.py", env)
    assert not app.error
    captions = [image.caption for element in app.image for image in element.proto.imgs]
    assert len(captions) == 4
    for caption in captions:
        assert caption.startswith("1 predicted box (model det-round-1), dashed: 1 fracture box (red) · "), caption
        assert " expert box" in caption, caption
