"""Walk 24c: the Queue page drew the catalog's boxes only, never the model boxes the round's tasks were sent with;
the Reports page drew no boxes at all.

Synthetic radiograph 512 x 256 (thumbnail 256 x 128: scale 1/2) with two fracture boxes and a foreign-body box
in the catalog (tests/test_walk23k_thumbnail_boxes.py's ``boxed_case``); the selection's stored model boxes are
dashed, the catalog's solid, and the caption counts both kinds.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

pytest.importorskip("streamlit")

from test_walk23k_thumbnail_boxes import (  # noqa: E402 - the 23k fixtures and pixel checks
    GREY, RED, YELLOW, _grey, _outline_checks, boxed_case, shown_images,
)

from radloop.app.boxes_view import DASH, both_caption, draw_boxes  # noqa: E402
from radloop.core.records import Box  # noqa: E402

__all__ = ["boxed_case", "shown_images"]  # fixtures used by name

#: the model's boxes (original pixels): -> thumbnail (200, 10, 239, 39) and (220, 90, 249, 119)
PREDICTED = [{"label": "fracture", "x": 400, "y": 20, "w": 80, "h": 60, "score": 0.91},
             {"label": "foreign_body", "x": 440, "y": 180, "w": 60, "h": 60, "score": 0.42}]


def test_dashed_outline_has_gaps_and_stays_inside_the_box():
    pixels = np.asarray(draw_boxes(_grey(100, 100), [Box("fracture", 10, 20, 40, 30)], 100, 100, dashed=True))
    drawn, gap = DASH
    for x in (10, 10 + drawn - 1, 10 + drawn + gap):  # top edge: dash, its last pixel, the next dash
        assert tuple(pixels[20, x]) == RED and tuple(pixels[21, x]) == RED, x  # 2 px thick
    assert tuple(pixels[20, 10 + drawn]) == (GREY, GREY, GREY)  # the gap
    assert tuple(pixels[20 + drawn, 10]) == (GREY, GREY, GREY) and tuple(pixels[20, 49]) == RED  # left gap, corner
    assert tuple(pixels[49, 10]) == RED and tuple(pixels[19, 10]) == (GREY, GREY, GREY)  # bottom corner; outside
    assert tuple(pixels[35, 30]) == (GREY, GREY, GREY)  # the inside


def test_caption_counts_both_kinds():
    expert = [Box("fracture", 0, 0, 1, 1)]
    predicted = [Box("fracture", 0, 0, 1, 1, 0.9), Box("fracture", 0, 0, 1, 1, 0.8)]
    assert both_caption(expert, predicted, "det-1") == \
        "2 predicted boxes (model det-1): 2 fracture boxes · 1 expert box: 1 fracture box"
    assert both_caption(expert, predicted, "det-1", colours=True) == \
        "2 predicted boxes (model det-1), dashed: 2 fracture boxes (red) · 1 expert box, solid: 1 fracture box (red)"
    assert both_caption([], [], None) == "no predicted box (model unknown) · no expert box"


def _store_predicted(catalog, image_id: str, boxes: list[dict], version: str = "det-test-7") -> None:
    from sqlalchemy import select

    from radloop.core.schema import Selection

    with catalog.session() as session:
        selection = session.scalars(select(Selection).where(Selection.image_id == image_id)).one()
        selection.meta = {**(selection.meta or {}), "predicted": {"model_version": version, "boxes": boxes}}


def _sent_png(shown_images) -> np.ndarray:
    drawn = [data for data in shown_images if data.startswith(b"\x89PNG")]
    assert drawn, "the page sent the drawn thumbnail"
    with PILImage.open(io.BytesIO(drawn[-1])) as sent:
        return np.asarray(sent.convert("RGB"))


def test_queue_draws_the_model_boxes_dashed_and_counts_both(catalog, boxed_case, shown_images, env):
    from test_app_pages import open_page

    workspace, image_id = boxed_case
    _store_predicted(catalog, image_id, PREDICTED)
    app = open_page(workspace, "page_queue.py", env)
    assert not app.error
    [image] = [image for element in app.image for image in element.proto.imgs]
    assert image.caption == ("2 predicted boxes (model det-test-7), dashed: 1 fracture box (red), 1 foreign body box "
                             "(yellow) · 3 expert boxes, solid: 2 fracture boxes (red), 1 foreign body box (yellow)")
    assert image.alt.startswith(f"Radiograph {image_id}") and image.alt.endswith(
        "; 2 predicted boxes (model det-test-7): 1 fracture box, 1 foreign body box · 3 expert boxes: 2 fracture "
        "boxes, 1 foreign body box outlined")
    pixels = _sent_png(shown_images)
    assert pixels.shape == (128, 256, 3)
    _outline_checks(pixels, 50, 20, 109, 49, RED)  # the catalog's boxes: solid, as before
    _outline_checks(pixels, 10, 75, 29, 94, YELLOW)
    # the model's fracture box (200, 10)-(239, 39): dashed, a gap after each dash
    assert tuple(pixels[10, 200]) == RED and tuple(pixels[10, 205]) == RED
    assert tuple(pixels[10, 206]) == (GREY, GREY, GREY) and tuple(pixels[10, 210]) == RED
    assert tuple(pixels[25, 220]) == (GREY, GREY, GREY)  # its inside
    assert tuple(pixels[90, 220]) == YELLOW and tuple(pixels[96, 220]) == (GREY, GREY, GREY)  # the foreign body's


def test_queue_says_when_the_model_found_nothing(catalog, boxed_case, env):
    from test_app_pages import open_page

    workspace, image_id = boxed_case
    _store_predicted(catalog, image_id, [])
    app = open_page(workspace, "page_queue.py", env)
    [image] = [image for element in app.image for image in element.proto.imgs]
    assert image.caption == ("no predicted box (model det-test-7) · 3 expert boxes, solid: 2 fracture boxes (red), "
                             "1 foreign body box (yellow)")


def test_queue_of_an_old_round_shows_the_catalog_boxes_as_before(boxed_case, env):
    """No stored model boxes (a round built before they were kept): the 23k caption, no predicted count."""
    from test_app_pages import open_page

    workspace, _ = boxed_case
    app = open_page(workspace, "page_queue.py", env)
    [image] = [image for element in app.image for image in element.proto.imgs]
    assert image.caption == "2 fracture boxes (red), 1 foreign body box (yellow)"


def test_reports_page_draws_the_catalog_boxes(catalog, boxed_case, shown_images, env):
    from test_app_pages import open_page

    from radloop.core.schema import Image, Report

    workspace, image_id = boxed_case
    with catalog.session() as session:
        study_id = session.get(Image, image_id).study_id
        session.add(Report(id="R-24c", study_id=study_id, content_hash="h24c", text="FINDINGS: Distal radius fracture."))
    app = open_page(workspace, "page_reports.py", env)
    assert not app.error
    [image] = [image for element in app.image for image in element.proto.imgs]
    assert image.caption == f"{image_id} · wrist · 2 fracture boxes (red), 1 foreign body box (yellow)"
    assert image.alt.endswith("; 2 fracture boxes, 1 foreign body box outlined")
    pixels = _sent_png(shown_images)
    _outline_checks(pixels, 50, 20, 109, 49, RED)
    _outline_checks(pixels, 10, 75, 29, 94, YELLOW)
