"""Walkthrough 23d: detection-set boxes land on the pixels radloop stores, whatever the image file's layout.

Synthetic images with one bright rectangle at a known place (known by construction): the set's box must cover
the bright pixels of the render, in original pixels and as Label Studio percentages, for landscape / portrait,
grayscale / RGB, downscaled renders and JPEGs with an EXIF orientation (stored in their coded layout while
annotation tools draw on the rotated view).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageOps
from sqlalchemy import select

from radloop.core.ingest import ingest_paths
from radloop.core.schema import Annotation, Image

#: display -> coded layout: the inverse of the transpose Pillow's ``exif_transpose`` applies per orientation
TO_CODED = {2: PILImage.Transpose.FLIP_LEFT_RIGHT, 3: PILImage.Transpose.ROTATE_180,
            4: PILImage.Transpose.FLIP_TOP_BOTTOM, 5: PILImage.Transpose.TRANSPOSE,
            6: PILImage.Transpose.ROTATE_90, 7: PILImage.Transpose.TRANSVERSE, 8: PILImage.Transpose.ROTATE_270}


def _canvas(width: int, height: int, box: tuple[int, int, int, int]) -> PILImage.Image:
    pixels = np.full((height, width), 20, np.uint8)
    x, y, w, h = box
    pixels[y:y + h, x:x + w] = 230
    return PILImage.fromarray(pixels)


def _write(folder, name: str, display: PILImage.Image, orientation: int = 1, mode: str = "L") -> None:
    coded = display if orientation == 1 else display.transpose(TO_CODED[orientation])
    coded = coded.convert(mode)
    if orientation == 1:
        coded.save(folder / name, quality=95)
    else:
        exif = coded.getexif()
        exif[0x0112] = orientation
        coded.save(folder / name, quality=95, exif=exif.tobytes())
    shown = ImageOps.exif_transpose(PILImage.open(folder / name)).convert("L")
    assert np.array_equal(np.asarray(shown) > 128, np.asarray(display) > 128)  # the viewer's view is the display


def _bright(pixels: np.ndarray) -> tuple[float, float, float, float]:
    rows, columns = np.nonzero(pixels > 128)
    return (float(columns.min()), float(rows.min()), float(columns.max() + 1 - columns.min()),
            float(rows.max() + 1 - rows.min()))


#: (file name, displayed size, box on the display, EXIF orientation, mode)
CASES = [("landscape_rgb.jpg", (90, 60), (10, 20, 30, 15), 1, "RGB"),
         ("portrait_gray.png", (60, 90), (35, 50, 20, 30), 1, "L"),
         ("square_rgb.png", (64, 64), (5, 40, 30, 12), 1, "RGB"),
         ("big_landscape.png", (3000, 1000), (2500, 100, 300, 400), 1, "L"),  # render downscaled to 2048 px
         *[(f"exif{o}.jpg", (60, 90), (35, 50, 20, 30), o, "RGB") for o in range(2, 9)]]


def _boxes_against_renders(catalog) -> dict[str, tuple]:
    from radloop.core.boxes import box_to_ls_percent
    from radloop.core.records import Box

    found = {}
    with catalog.session() as session:
        for image in session.scalars(select(Image)):
            [box] = session.scalars(select(Annotation).where(Annotation.image_id == image.id)).all()
            render = np.asarray(PILImage.open(catalog.workspace.absolute(image.render_path)))
            assert render.shape == (image.render_height, image.render_width)
            x, y, w, h = _bright(render)
            expected = {"x": x * 100 / render.shape[1], "y": y * 100 / render.shape[0],
                        "width": w * 100 / render.shape[1], "height": h * 100 / render.shape[0]}
            percent = box_to_ls_percent(Box("fracture", box.x, box.y, box.w, box.h), image.width, image.height)
            found[image.external_id.split(".")[0]] = (percent, expected, (box.x, box.y, box.w, box.h),
                                                      (image.width, image.height))
    return found


def _tolerance(name: str) -> float:
    return 0.1 if name.startswith("big") else 0.5  # percent: a render pixel of a 2048-px render, a JPEG edge


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_set_boxes_cover_the_bright_rectangle_in_every_layout(tmp_path, catalog, fmt):
    """Before: an EXIF-rotated JPEG's box was scaled onto the coded (unrotated) pixels and missed the fracture."""
    folder = tmp_path / "set" / "images"
    folder.mkdir(parents=True)
    coco = {"categories": [{"id": 0, "name": "bones", "supercategory": "none"},
                           {"id": 1, "name": "wrist positive", "supercategory": "bones"}],
            "images": [], "annotations": []}
    (tmp_path / "set" / "labels").mkdir()
    for number, (name, (width, height), box, orientation, mode) in enumerate(CASES):
        _write(folder, name, _canvas(width, height, box), orientation, mode)
        coco["images"].append({"id": number, "file_name": name, "width": width, "height": height})
        coco["annotations"].append({"id": number, "image_id": number, "category_id": 1, "bbox": list(box)})
        x, y, w, h = box
        (tmp_path / "set" / "labels" / f"{name.rsplit('.', 1)[0]}.txt").write_text(
            f"0 {(x + w / 2) / width} {(y + h / 2) / height} {w / width} {h / height}\n")
    if fmt == "coco":
        (tmp_path / "set" / "ann.json").write_text(json.dumps(coco))
        inputs, images_dir = [tmp_path / "set" / "ann.json"], folder
    else:
        (tmp_path / "set" / "data.yaml").write_text("names: ['wrist positive']\n")
        inputs, images_dir = [tmp_path / "set"], None
    summary = ingest_paths(catalog, inputs, images_dir=images_dir, dataset="synthetic", workers=1, progress=False)
    assert summary.errors == 0 and summary.images_added == len(CASES)
    found = _boxes_against_renders(catalog)
    assert len(found) == len(CASES)
    for name, (percent, expected, pixels, size) in found.items():
        for key in expected:
            assert percent[key] == pytest.approx(expected[key], abs=_tolerance(name)), (name, key, pixels, size)


def test_coco_drawn_on_the_coded_layout_is_left_as_it_is(tmp_path, catalog):
    """A COCO entry whose size is the coded layout's (the tool ignored the EXIF tag) keeps its boxes."""
    folder = tmp_path / "images"
    folder.mkdir()
    display = _canvas(60, 90, (35, 50, 20, 30))
    _write(folder, "coded.jpg", display, 6, "RGB")
    coded = np.asarray(PILImage.open(folder / "coded.jpg").convert("L"))
    x, y, w, h = (round(v) for v in _bright(coded))
    coco = {"categories": [{"id": 1, "name": "elbow positive"}],
            "images": [{"id": 1, "file_name": "coded.jpg", "width": coded.shape[1], "height": coded.shape[0]}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x, y, w, h]}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    summary = ingest_paths(catalog, [tmp_path / "ann.json"], images_dir=folder, dataset="coded", workers=1,
                           progress=False)
    assert summary.errors == 0
    with catalog.session() as session:
        [box] = session.scalars(select(Annotation)).all()
    assert (box.x, box.y, box.w, box.h) == pytest.approx((x, y, w, h), abs=0.01)
