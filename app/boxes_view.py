"""Finding boxes (fracture, foreign body) drawn on a case's thumbnail, for the Search and Queue pages.

The boxes are the catalog's (:func:`radloop.core.targets.image_targets`: detection-set boxes, expert boxes pulled
from Label Studio) in original-image pixels; the thumbnail is the whole image scaled down, in its stored layout
(no EXIF turn, no flip), so a box maps onto it by the two scale factors alone.  No Streamlit here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw

from radloop.core.records import Box

__all__ = ["BOX_COLOURS", "OTHER_COLOUR", "draw_boxes", "boxes_caption", "boxed_thumbnail"]

#: Outline colour (RGB) per finding: bright on a grey radiograph, named in the caption.
BOX_COLOURS = {"fracture": (255, 40, 40), "foreign_body": (255, 200, 0)}
#: Outline colour of any other label.
OTHER_COLOUR = (0, 200, 255)
_COLOUR_NAMES = {(255, 40, 40): "red", (255, 200, 0): "yellow", (0, 200, 255): "cyan"}


def draw_boxes(thumb: PILImage.Image, boxes: Iterable[Box], width: int, height: int, *,
               line_width: int = 2) -> PILImage.Image:
    """An RGB copy of ``thumb`` with each box outlined in its finding's colour.

    Args:
        thumb: the thumbnail (any mode), the whole ``width`` x ``height`` image scaled down.
        boxes: boxes in original-image pixels (``x, y`` top-left corner, ``w, h``).
        width: the original image's width in pixels.
        height: the original image's height in pixels.
        line_width: outline thickness in thumbnail pixels (drawn inside the box).
    """
    image = thumb.convert("RGB") if thumb.mode != "RGB" else thumb.copy()
    if not width or not height:
        return image
    scale_x, scale_y = image.width / width, image.height / height
    draw = ImageDraw.Draw(image)
    for box in boxes:
        # pixels [x, x + w) of the original are [x * sx, (x + w) * sx) here; PIL's corners are inclusive
        left = _clamp(round(box.x * scale_x), image.width - 1)
        top = _clamp(round(box.y * scale_y), image.height - 1)
        right = _clamp(max(round((box.x + box.w) * scale_x) - 1, left), image.width - 1)
        bottom = _clamp(max(round((box.y + box.h) * scale_y) - 1, top), image.height - 1)
        draw.rectangle((left, top, right, bottom), outline=BOX_COLOURS.get(box.label, OTHER_COLOUR),
                       width=line_width)
    return image


def _clamp(value: int, upper: int) -> int:
    return min(max(value, 0), upper)


def boxes_caption(boxes: Iterable[Box], *, colours: bool = False) -> str:
    """How many boxes of what: ``"2 fracture boxes, 1 foreign body box"``; ``""`` without boxes.

    ``colours`` adds each finding's outline colour (``"2 fracture boxes (red)"``).
    """
    counts = Counter(box.label for box in boxes)
    parts = []
    order = list(BOX_COLOURS)  # fracture first, then foreign body, then any other label by name
    for label in sorted(counts, key=lambda name: (order.index(name) if name in order else len(order), name)):
        count = counts[label]
        part = f"{count} {label.replace('_', ' ')} box{'es' if count != 1 else ''}"
        if colours:
            part += f" ({_COLOUR_NAMES[BOX_COLOURS.get(label, OTHER_COLOUR)]})"
        parts.append(part)
    return ", ".join(parts)


def boxed_thumbnail(thumb_path: Path, boxes: Iterable[Box], width: int | None,
                    height: int | None) -> PILImage.Image | None:
    """The thumbnail file with ``boxes`` drawn on it, or None without boxes (show the file as it is) or when the
    file cannot be read."""
    boxes = list(boxes)
    if not boxes or not width or not height:
        return None
    try:
        with PILImage.open(thumb_path) as thumb:
            thumb.load()
            return draw_boxes(thumb, boxes, width, height)
    except (OSError, ValueError):  # gone or damaged since the card was made: the page shows the file as before
        return None
