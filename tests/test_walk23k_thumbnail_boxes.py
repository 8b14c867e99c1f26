"""Walk 23k: the Search and Queue pages showed thumbnails but never the catalog's fracture / foreign-body boxes.

The boxes are drawn on a synthetic radiograph whose box position is known by construction, so that each check
says which thumbnail pixels the outline must cover.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

pytest.importorskip("streamlit")

from radloop.app.boxes_view import BOX_COLOURS, boxes_caption, draw_boxes  # noqa: E402
from radloop.core.records import Box  # noqa: E402

RED, YELLOW = BOX_COLOURS["fracture"], BOX_COLOURS["foreign_body"]
GREY = 90


def _grey(width: int, height: int) -> PILImage.Image:
    return PILImage.fromarray(np.full((height, width), GREY, dtype=np.uint8))


def _outline_checks(pixels: np.ndarray, left: int, top: int, right: int, bottom: int, colour) -> None:
    """The box's edges (inclusive corners, in thumbnail pixels) are ``colour``; just outside and inside are not."""
    for x, y in [(left, (top + bottom) // 2), (right, (top + bottom) // 2), ((left + right) // 2, top),
                 ((left + right) // 2, bottom), (left, top), (right, bottom)]:
        assert tuple(pixels[y, x]) == colour, (x, y, tuple(pixels[y, x]))
    middle_y, middle_x = (top + bottom) // 2, (left + right) // 2
    for x, y in [(left - 1, middle_y), (right + 1, middle_y), (middle_x, top - 1), (middle_x, bottom + 1),
                 (middle_x, middle_y), (left + 3, middle_y)]:
        assert tuple(pixels[y, x]) == (GREY, GREY, GREY), (x, y, tuple(pixels[y, x]))


def test_outline_lands_on_the_scaled_box():
    """Original 400 x 300, thumbnail 200 x 100 (sx 1/2, sy 1/3): box x 100..220, y 60..150 -> 50..109, 20..49."""
    drawn = draw_boxes(_grey(200, 100), [Box("fracture", 100, 60, 120, 90)], 400, 300)
    assert drawn.size == (200, 100) and drawn.mode == "RGB"
    _outline_checks(np.asarray(drawn), 50, 20, 109, 49, RED)


def test_each_finding_has_its_colour_and_a_box_past_the_edge_is_clipped():
    drawn = draw_boxes(_grey(100, 100), [Box("foreign_body", 10, 10, 20, 20), Box("fracture", 80, 80, 50, 50)],
                       100, 100)
    pixels = np.asarray(drawn)
    _outline_checks(pixels, 10, 10, 29, 29, YELLOW)
    assert tuple(pixels[99, 90]) == RED and tuple(pixels[90, 99]) == RED  # clipped to the last row / column


def test_the_stored_layout_is_kept():
    """No EXIF turn: a thumbnail whose EXIF says "rotate" is drawn on as stored (boxes are in stored pixels)."""
    thumb = _grey(200, 100)
    exif = thumb.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    buffer = io.BytesIO()
    thumb.convert("RGB").save(buffer, format="JPEG", exif=exif, quality=100)
    with PILImage.open(io.BytesIO(buffer.getvalue())) as stored:
        drawn = draw_boxes(stored, [Box("fracture", 20, 10, 40, 20)], 200, 100)
    assert drawn.size == (200, 100)
    assert tuple(np.asarray(drawn)[20, 20]) == RED


def test_caption_says_how_many_boxes_of_what():
    boxes = [Box("fracture", 0, 0, 1, 1), Box("foreign_body", 0, 0, 1, 1), Box("fracture", 0, 0, 1, 1)]
    assert boxes_caption(boxes) == "2 fracture boxes, 1 foreign body box"
    assert boxes_caption(boxes[:1], colours=True) == "1 fracture box (red)"
    assert boxes_caption([]) == ""


# --- the pages -------------------------------------------------------------------------------------------------

ORIGINAL = (512, 256)  # the test workspace's thumbnail is 256 x 128: scale 1/2 both ways
FRACTURES = [(100, 40, 120, 60), (300, 100, 80, 100)]  # -> thumbnail (50, 20, 109, 49) and (150, 50, 189, 99)
FOREIGN_BODY = (20, 150, 40, 40)  # -> (10, 75, 29, 94)


@pytest.fixture
def boxed_case(catalog, tmp_path):
    """One synthetic image with two fracture boxes, one foreign-body box and one without area (not drawn), picked
    by an open round."""
    from app_workspace import _add_image

    from radloop.core.schema import Annotation, Round, Selection

    source = tmp_path / "synthetic.png"
    _grey(*ORIGINAL).save(source)
    with catalog.session() as session:
        image = _add_image(session, catalog.workspace, source, dataset="synthetic", body_region="wrist",
                           split="train", meta={"box_source": "test"})
        for x, y, w, h in FRACTURES + [(5, 5, 0, 10)]:
            session.add(Annotation(image_id=image.id, source="coco:test", kind="box", label="fracture", x=x, y=y,
                                   w=w, h=h))
        x, y, w, h = FOREIGN_BODY
        session.add(Annotation(image_id=image.id, source="coco:test", kind="box", label="foreign_body", x=x, y=y,
                               w=w, h=h))
        round_ = Round(number=1, state="selected", strategy="random", budget=1, task="findings")
        session.add(round_)
        session.flush()
        session.add(Selection(round_id=round_.id, image_id=image.id, rank=1, score=0.5, strategy="random",
                              reason="picked at random"))
        image_id = image.id
    return catalog.workspace, image_id


@pytest.fixture
def shown_images(monkeypatch):
    """The bytes of every image a page sends to the browser."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    shown: list[bytes] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def recorded(self, path_or_data, mimetype, kind, filename=None):
        if isinstance(path_or_data, bytes):
            shown.append(path_or_data)
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recorded)
    return shown


@pytest.mark.parametrize("page", ["page_search.py", "page_queue.py"])
def test_page_shows_the_boxes_drawn_with_a_caption(boxed_case, shown_images, env, page):
    from test_app_pages import open_page

    workspace, image_id = boxed_case
    app = open_page(workspace, page, env)
    assert not app.error
    images = [image for element in app.image for image in element.proto.imgs]
    assert len(images) == 1
    assert images[0].caption == "2 fracture boxes (red), 1 foreign body box (yellow)"
    assert images[0].alt.startswith(f"Radiograph {image_id}") and images[0].alt.endswith(
        "; 2 fracture boxes, 1 foreign body box outlined")
    drawn = [data for data in shown_images if data.startswith(b"\x89PNG")]
    assert drawn, "the page sent the drawn thumbnail"
    with PILImage.open(io.BytesIO(drawn[-1])) as sent:
        pixels = np.asarray(sent.convert("RGB"))
    assert pixels.shape == (128, 256, 3)
    _outline_checks(pixels, 50, 20, 109, 49, RED)
    _outline_checks(pixels, 10, 75, 29, 94, YELLOW)
    assert tuple(pixels[99, 170]) == RED and tuple(pixels[50, 189]) == RED  # the second box, at the lower edge
    assert tuple(pixels[5, 2]) == (GREY, GREY, GREY)  # the box without area is not drawn


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    return monkeypatch
