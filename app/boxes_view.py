"""Finding boxes (fracture, foreign body) drawn on a case's thumbnail, for the Search, Queue and Reports pages.

The boxes are the catalog's (:func:`radloop.core.targets.image_targets`: detection-set boxes, expert boxes pulled
from Label Studio) in original-image pixels; the thumbnail is the whole image scaled down, in its stored layout
(no EXIF turn, no flip), so a box maps onto it by the two scale factors alone.  A model's predicted boxes (the
pre-annotations a round's tasks were sent with) are drawn dashed in their finding's colour, the catalog's solid.
No Streamlit here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw

from radloop.core.records import Box

__all__ = ["BOX_COLOURS", "OTHER_COLOUR", "DASH", "draw_boxes", "boxes_caption", "both_caption", "boxed_thumbnail"]

#: Outline colour (RGB) per finding: bright on a grey radiograph, named in the caption.
BOX_COLOURS = {"fracture": (255, 40, 40), "foreign_body": (255, 200, 0)}
#: Outline colour of any other label.
OTHER_COLOUR = (0, 200, 255)
_COLOUR_NAMES = {(255, 40, 40): "red", (255, 200, 0): "yellow", (0, 200, 255): "cyan"}
#: A predicted box's outline: ``DASH[0]`` thumbnail pixels drawn, ``DASH[1]`` left out, from each corner on.
DASH = (6, 4)


def draw_boxes(thumb: PILImage.Image, boxes: Iterable[Box], width: int, height: int, *,
               line_width: int = 2, dashed: bool = False) -> PILImage.Image:
    """An RGB copy of ``thumb`` with each box outlined in its finding's colour.

    Args:
        thumb: the thumbnail (any mode), the whole ``width`` x ``height`` image scaled down.
        boxes: boxes in original-image pixels (``x, y`` top-left corner, ``w, h``).
        width: the original image's width in pixels.
        height: the original image's height in pixels.
        line_width: outline thickness in thumbnail pixels (drawn inside the box).
        dashed: dashed outlines (:data:`DASH`), for a model's predicted boxes.
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
        colour = BOX_COLOURS.get(box.label, OTHER_COLOUR)
        if dashed:
            _dashed_rectangle(draw, (left, top, right, bottom), colour, line_width)
        else:
            draw.rectangle((left, top, right, bottom), outline=colour, width=line_width)
    return image


def _dashed_rectangle(draw: ImageDraw.ImageDraw, corners: tuple[int, int, int, int], colour, line_width: int) -> None:
    """A dashed outline ``line_width`` pixels thick inside the inclusive ``corners``, dashes starting at each corner."""
    left, top, right, bottom = corners
    inner_x, inner_y = min(left + line_width - 1, right), min(top + line_width - 1, bottom)
    outer_x, outer_y = max(right - line_width + 1, left), max(bottom - line_width + 1, top)
    step = DASH[0] + DASH[1]
    for start in range(left, right + 1, step):
        end = min(start + DASH[0] - 1, right)
        draw.rectangle((start, top, end, inner_y), fill=colour)
        draw.rectangle((start, outer_y, end, bottom), fill=colour)
    for start in range(top, bottom + 1, step):
        end = min(start + DASH[0] - 1, bottom)
        draw.rectangle((left, start, inner_x, end), fill=colour)
        draw.rectangle((outer_x, start, right, end), fill=colour)


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


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}{'es' if count != 1 else ''}" if count else f"no {noun}"


def both_caption(expert: Iterable[Box], predicted: Iterable[Box], model_version: str | None, *,
                 colours: bool = False) -> str:
    """A model's predicted boxes and the catalog's (expert) boxes counted apart: ``"2 predicted boxes (model
    det-1): 2 fracture boxes · 1 expert box: 1 foreign body box"``.

    ``colours`` names each kind's outline and each finding's colour (``"2 predicted boxes (model det-1), dashed:
    2 fracture boxes (red) · 1 expert box, solid: ..."``).
    """
    parts = []
    for boxes, head, style in ((list(predicted), f" (model {model_version or 'unknown'})", "dashed"),
                               (list(expert), "", "solid")):
        part = _count(len(boxes), "predicted box" if style == "dashed" else "expert box") + head
        if boxes:
            part += f"{', ' + style if colours else ''}: {boxes_caption(boxes, colours=colours)}"
        parts.append(part)
    return " · ".join(parts)


def boxed_thumbnail(thumb_path: Path, boxes: Iterable[Box], width: int | None,
                    height: int | None, predicted: Iterable[Box] = ()) -> PILImage.Image | None:
    """The thumbnail file with ``boxes`` drawn on it (and ``predicted`` ones dashed, under them), or None without
    boxes (show the file as it is) or when the file cannot be read."""
    boxes, predicted = list(boxes), list(predicted)
    if not (boxes or predicted) or not width or not height:
        return None
    try:
        with PILImage.open(thumb_path) as thumb:
            thumb.load()
            drawn = draw_boxes(thumb, predicted, width, height, dashed=True) if predicted else thumb
            return draw_boxes(drawn, boxes, width, height)
    except (OSError, ValueError):  # gone or damaged since the card was made: the page shows the file as before
        return None
