"""`radloop evaluate --coco`: a COCO file's boxes on JPEGs with an EXIF orientation tag are scored in the coded
pixel layout the images are decoded in (as ingest maps them), not on the rotated view the tool drew on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

from radloop.ssl.finetune_evaluate import coco_labeled_set_with_notes

TO_CODED = {3: PILImage.Transpose.ROTATE_180, 6: PILImage.Transpose.ROTATE_90, 8: PILImage.Transpose.ROTATE_270}


def _bright(pixels: np.ndarray) -> tuple[float, float, float, float]:
    rows, columns = np.nonzero(pixels > 128)
    return (float(columns.min()), float(rows.min()), float(columns.max() + 1 - columns.min()),
            float(rows.max() + 1 - rows.min()))


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_coco_boxes_on_exif_rotated_images_cover_the_decoded_pixels(tmp_path, orientation):
    display = np.full((90, 60), 20, np.uint8)  # the view a viewer shows: 60 wide, 90 high
    display[50:80, 35:55] = 230
    shown = PILImage.fromarray(display).convert("RGB")
    coded = shown if orientation == 1 else shown.transpose(TO_CODED[orientation])
    exif = coded.getexif()
    if orientation != 1:
        exif[0x0112] = orientation
    coded.save(tmp_path / "a.jpg", quality=95, exif=exif.tobytes())
    coco = {"categories": [{"id": 1, "name": "fracture"}],
            "images": [{"id": 7, "file_name": "a.jpg", "width": 60, "height": 90}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [35, 50, 20, 30]}]}
    (tmp_path / "set.json").write_text(json.dumps(coco))

    labeled, _ = coco_labeled_set_with_notes(tmp_path / "set.json", tmp_path, ["fracture"])

    decoded = np.asarray(PILImage.open(tmp_path / "a.jpg").convert("L"))  # no EXIF transpose: the coded layout
    [box] = labeled.boxes[0]
    assert labeled.sizes[0] == (decoded.shape[1], decoded.shape[0])
    assert (box.x, box.y, box.w, box.h) == pytest.approx(_bright(decoded), abs=1.0)
    assert labeled.targets.tolist() == [[1]]
