"""Walkthrough 23d: box coordinate conventions between original pixels, renders, the detector and Label Studio.

Cases whose right answer is known by construction: a render three times smaller than its original, a detector
whose output is fixed, Label Studio rectangles turned a whole turn, box mAP@0.5 against hand-computed values.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from radloop.core.boxes import BoxError, box_from_ls_percent
from radloop.core.records import Box


class _FixedDetector(nn.Module):
    """Returns the same detections (render pixels, xyxy) for every image."""

    def __init__(self, boxes, scores):
        super().__init__()
        self.boxes, self.scores = torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores)

    def forward(self, images):
        return [{"boxes": self.boxes, "labels": torch.ones(len(self.boxes), dtype=torch.int64),
                 "scores": self.scores} for _ in images]


def test_training_targets_are_in_render_pixels(tmp_path):
    """A box in original pixels lands on the same place of a render a third of the size."""
    from radloop.ssl.detection import BoxImages

    render = tmp_path / "r.png"
    PILImage.fromarray(np.zeros((50, 100), np.uint8)).save(render)
    dataset = BoxImages([render], [(300, 150)], [[Box("fracture", 30, 15, 60, 60), Box("other", 0, 0, 9, 9)]],
                        ["fracture"])
    image, target = dataset[0]
    assert tuple(image.shape) == (1, 50, 100)
    assert target["boxes"].tolist() == [[10.0, 5.0, 30.0, 25.0]] and target["labels"].tolist() == [1]


def test_predicted_boxes_come_back_in_original_pixels_without_slivers():
    """Before: a detection a fraction of a pixel high (here 0.3 original px) came back as a box, which Label Studio
    showed as a pre-annotation that the pull then refused ("smaller than 1 px") once an expert accepted it."""
    from radloop.ssl.detection import MIN_PREDICTED_BOX_PX, DetectorPredictor

    model = _FixedDetector([[10.0, 5.0, 30.0, 25.0], [0.0, 49.9, 100.0, 50.0], [90.0, 40.0, 100.0, 50.0]],
                           [0.5, 0.9, 0.2])
    predictor = DetectorPredictor(model, {"labels": ["fracture"]}, "det-test")
    render = np.zeros((50, 100), np.float32)
    [prediction] = predictor.predict([render], original_sizes=[(300, 150)])
    assert [(b.x, b.y, b.w, b.h) for b in prediction.boxes] == [
        pytest.approx((30.0, 15.0, 60.0, 60.0)), pytest.approx((270.0, 120.0, 30.0, 30.0))]
    assert all(min(b.w, b.h) >= MIN_PREDICTED_BOX_PX for b in prediction.boxes)
    assert prediction.choices == {"fracture": pytest.approx(0.9)}  # the image-level score counts every detection


@pytest.mark.parametrize("rotation", [360, -360, 720, 359.9999999999, "0"])
def test_a_whole_turn_is_no_rotation(rotation):
    """Before: a rectangle turned a whole turn (rotation 360) was quarantined as "rotated"."""
    value = {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": rotation}
    box = box_from_ls_percent(value, 200, 100, "fracture")
    assert (box.x, box.y, box.w, box.h) == (20.0, 20.0, 60.0, 40.0)


@pytest.mark.parametrize("rotation", [30, 180, -90, float("nan"), float("inf")])
def test_turned_rectangles_are_refused(rotation):
    with pytest.raises(BoxError, match="rotated"):
        box_from_ls_percent({"x": 10, "y": 20, "width": 30, "height": 40, "rotation": rotation}, 200, 100, "fracture")


def _b(x, y, w, h, score=None):
    return Box("fracture", x, y, w, h, score=score)


def test_box_map50_matches_hand_computed_values():
    """101-point interpolated AP at IoU 0.5 (COCO), worked by hand."""
    from radloop.ssl.finetune_metrics import box_map50

    # detections by score: 0.9 TP, 0.8 FP (another image), 0.7 TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    truth = [[_b(10, 10, 20, 20)], [_b(50, 50, 10, 10)]]
    found = [[_b(10, 10, 20, 20, 0.9), _b(100, 100, 5, 5, 0.8)], [_b(50, 50, 10, 10, 0.7)]]
    result = box_map50(found, truth)
    assert result["map50"] == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101, abs=1e-6)
    assert result["mar100"] == 1.0 and result["n_boxes"] == 2
    # an image without truth: its detection (highest score) is a false positive; IoU 81/119 = 0.68 is a match
    truth = [[_b(10, 10, 20, 20)], [_b(50, 50, 10, 10)], []]
    found = [[_b(10, 10, 20, 20, 0.9)], [_b(0, 0, 5, 5, 0.8), _b(51, 51, 10, 10, 0.7)], [_b(1, 1, 3, 3, 0.95)]]
    assert box_map50(found, truth)["map50"] == pytest.approx(0.5, abs=1e-6)
    # IoU exactly at the edge of 0.5: 100/196 = 0.51 matches, 100/225 = 0.44 does not
    assert box_map50([[_b(0, 0, 10, 10, 0.9)]], [[_b(0, 0, 14, 14)]])["map50"] == pytest.approx(1.0)
    assert box_map50([[_b(0, 0, 10, 10, 0.9)]], [[_b(0, 0, 15, 15)]])["map50"] == pytest.approx(0.0)


def test_box_map50_agrees_with_pycocotools_directly():
    """The same figure from pycocotools' COCOeval on [x, y, w, h] boxes (skipped where it is not installed)."""
    coco_module = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    from radloop.ssl.finetune_metrics import box_map50

    rng = np.random.default_rng(3)
    truth, found = [], []
    for _ in range(12):
        image_truth = [_b(*rng.uniform(0, 200, 2), *rng.uniform(10, 60, 2)) for _ in range(rng.integers(0, 3))]
        image_found = [_b(b.x + rng.normal(0, 6), b.y + rng.normal(0, 6), b.w, b.h, float(rng.uniform()))
                       for b in image_truth if rng.uniform() < 0.8]
        image_found += [_b(*rng.uniform(0, 200, 2), *rng.uniform(10, 60, 2), float(rng.uniform()))
                        for _ in range(rng.integers(0, 2))]
        truth.append(image_truth)
        found.append(image_found)
    ground = coco_module.COCO()
    ground.dataset = {"images": [{"id": i} for i in range(len(truth))], "categories": [{"id": 1}],
                      "annotations": [{"id": n, "image_id": i, "category_id": 1, "bbox": [b.x, b.y, b.w, b.h],
                                       "area": b.w * b.h, "iscrowd": 0}
                                      for n, (i, b) in enumerate(((i, b) for i, bs in enumerate(truth) for b in bs),
                                                                 start=1)]}  # id 0 would read as "unmatched"
    ground.createIndex()
    detections = ground.loadRes([{"image_id": i, "category_id": 1, "bbox": [b.x, b.y, b.w, b.h], "score": b.score}
                                 for i, bs in enumerate(found) for b in bs])
    evaluation = cocoeval.COCOeval(ground, detections, "bbox")
    evaluation.params.iouThrs = np.array([0.5])
    evaluation.evaluate()
    evaluation.accumulate()
    precision = evaluation.eval["precision"][0, :, 0, 0, -1]  # IoU 0.5, all recalls, class 1, area all, 100 dets
    assert box_map50(found, truth)["map50"] == pytest.approx(float(np.mean(precision[precision > -1])), abs=1e-4)
