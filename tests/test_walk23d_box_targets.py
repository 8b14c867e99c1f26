"""Walkthrough 23d: a detection set's degenerate boxes (zero width, wholly outside the image) in training targets."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image as PILImage

from radloop.core.ingest import ingest_paths
from radloop.core.targets import image_targets


def test_boxes_without_area_keep_their_label_but_are_no_target(tmp_path, catalog):
    """Before: a COCO box of zero width, and one wholly outside its image (clipped to zero size at ingest), were
    targets: ground truth that no detection can match, so a perfect detector scored mAP@0.5 = 1/3 here."""
    from radloop.ssl.finetune_metrics import box_map50

    for value, name in ((40, "a.png"), (90, "b.png")):  # different pixels: not one image twice
        PILImage.fromarray(np.full((200, 300), value, np.uint8)).save(tmp_path / name)
    coco = {"categories": [{"id": 1, "name": "wrist positive"}],
            "images": [{"id": 1, "file_name": "a.png", "width": 300, "height": 200},
                       {"id": 2, "file_name": "b.png", "width": 300, "height": 200}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [30, 40, 60, 50]},
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 5]},
                            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [500, 300, 10, 10]},
                            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [10, 10, 5, 0]}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    summary = ingest_paths(catalog, [tmp_path / "ann.json"], dataset="degenerate", workers=1, progress=False)
    assert summary.images_added == 2
    targets = sorted(image_targets(catalog), key=lambda target: len(target.boxes))
    assert [target.fracture for target in targets] == [1, 1]  # the set says "fracture" for both images
    assert [[(b.x, b.y, b.w, b.h) for b in target.boxes] for target in targets] == [[], [(30.0, 40.0, 60.0, 50.0)]]
    perfect = [[box.__class__(box.label, box.x, box.y, box.w, box.h, score=0.9) for box in target.boxes]
               for target in targets]
    assert box_map50(perfect, [target.boxes for target in targets])["map50"] == 1.0
