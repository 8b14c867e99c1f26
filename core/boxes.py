"""Box geometry shared by training, prediction and the Label Studio adapter.

Catalog boxes are ``core.records.Box`` in original-image pixels (top-left x, y, width, height).  Label Studio
``rectanglelabels`` values are percentages of the image size (``x, y, width, height`` in 0..100).  The two
conversions are inverses: pixel coordinates given with up to :data:`PIXEL_DECIMALS` decimals (COCO uses 3)
come back bit-for-bit; percentages come back to within float rounding (relative 1e-12).

:func:`same_box` says when two pixel boxes are one box written twice (the same image annotated in two formats,
e.g. COCO and YOLO exports of one set, differ by rounding and polygon-to-box conversion only).
"""

from __future__ import annotations

import math
from dataclasses import replace

from radloop.core.records import Box

#: Pixel coordinates from Label Studio are rounded to this many decimals (1e-4 px), which makes the
#: pixel -> percent -> pixel round trip exact for any coordinate stored with that precision.
PIXEL_DECIMALS = 4

#: Two boxes of one label overlapping at least this much (intersection over union) are one box.
SAME_BOX_IOU = 0.9
#: ... as are two whose four edges each differ by at most this many pixels (small boxes, where a pixel of
#: rounding moves the IoU below :data:`SAME_BOX_IOU`).
SAME_BOX_EDGE_PX = 2.0

__all__ = ["PIXEL_DECIMALS", "SAME_BOX_EDGE_PX", "SAME_BOX_IOU", "BoxError", "box_from_ls_percent",
           "box_iou", "box_to_ls_percent", "same_box", "sanitize_box", "sanitize_boxes"]

XYWH = tuple[float, float, float, float]


class BoxError(ValueError):
    """A box that cannot be used (non-finite, zero area, outside the image) or a bad image size."""


def _check_size(width: float, height: float) -> None:
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise BoxError(f"image size must be positive and finite, got {width}x{height}")


def box_to_ls_percent(box: Box, width: int, height: int) -> dict[str, float]:
    """Label Studio ``rectanglelabels`` value (percent of the image, no rotation) of a pixel box.

    Raises:
        BoxError: non-positive image size.
    """
    _check_size(width, height)
    return {"x": box.x * 100.0 / width, "y": box.y * 100.0 / height,
            "width": box.w * 100.0 / width, "height": box.h * 100.0 / height, "rotation": 0.0}


def box_from_ls_percent(value: dict[str, float], width: int, height: int, label: str,
                        score: float | None = None) -> Box:
    """Pixel box of a Label Studio percent value (``x, y, width, height``; rotation 0 or a whole turn).

    Raises:
        BoxError: a missing key, a rotated rectangle, or a non-positive image size.
    """
    _check_size(width, height)
    missing = [key for key in ("x", "y", "width", "height") if key not in value]
    if missing:
        raise BoxError(f"Label Studio rectangle lacks {', '.join(missing)}: {value}")
    turn = float(value.get("rotation", 0.0) or 0.0) % 360.0  # a whole turn (360, -360) leaves the box as it is
    if not math.isfinite(turn) or min(turn, 360.0 - turn) > 1e-9:
        raise BoxError(f"rotated rectangles are not supported (rotation={value['rotation']})")
    return Box(label=label,
               x=round(float(value["x"]) * width / 100.0, PIXEL_DECIMALS),
               y=round(float(value["y"]) * height / 100.0, PIXEL_DECIMALS),
               w=round(float(value["width"]) * width / 100.0, PIXEL_DECIMALS),
               h=round(float(value["height"]) * height / 100.0, PIXEL_DECIMALS),
               score=score)


def box_iou(a: XYWH, b: XYWH) -> float:
    """Intersection over union of two pixel boxes ``(x, y, w, h)``; 0.0 when they do not overlap."""
    inter_w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    inter_h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def same_box(a: XYWH, b: XYWH, *, iou: float = SAME_BOX_IOU, edge_px: float = SAME_BOX_EDGE_PX) -> bool:
    """Whether two pixel boxes ``(x, y, w, h)`` of one image are the same box written twice.

    True when their IoU is at least ``iou`` or each of their four edges (left, top, right, bottom) differs by
    at most ``edge_px`` pixels.  Labels are the caller's to compare.
    """
    edges_a = (a[0], a[1], a[0] + a[2], a[1] + a[3])
    edges_b = (b[0], b[1], b[0] + b[2], b[1] + b[3])
    if all(abs(ea - eb) <= edge_px for ea, eb in zip(edges_a, edges_b)):
        return True
    return box_iou(a, b) >= iou


def sanitize_box(box: Box, width: int, height: int, *, min_size: float = 1.0) -> tuple[Box | None, str | None]:
    """Clip a box to the image; reject boxes that cannot be trained on.

    Returns:
        ``(box, None)`` when the box is fine, ``(clipped_box, "clipped ...")`` when part of it lay outside
        the image, ``(None, reason)`` when it is non-finite, has zero/negative area, lies entirely outside
        the image, or is smaller than ``min_size`` pixels on a side after clipping.
    """
    _check_size(width, height)
    values = (box.x, box.y, box.w, box.h)
    if not all(math.isfinite(v) for v in values):
        return None, f"non-finite coordinates {values}"
    if box.w <= 0 or box.h <= 0:
        return None, f"zero or negative area (w={box.w:g}, h={box.h:g})"
    x0, y0 = max(box.x, 0.0), max(box.y, 0.0)
    x1, y1 = min(box.x + box.w, float(width)), min(box.y + box.h, float(height))
    if x1 <= x0 or y1 <= y0:
        return None, (f"outside the {width}x{height} image (x={box.x:g}, y={box.y:g}, "
                      f"w={box.w:g}, h={box.h:g})")
    if x1 - x0 < min_size or y1 - y0 < min_size:
        return None, f"smaller than {min_size:g} px after clipping to the image"
    if (x0, y0, x1, y1) == (box.x, box.y, box.x + box.w, box.y + box.h):
        return box, None
    clipped = replace(box, x=x0, y=y0, w=x1 - x0, h=y1 - y0)
    return clipped, f"clipped to the {width}x{height} image"


def sanitize_boxes(boxes: list[Box] | tuple[Box, ...], width: int, height: int, *,
                   min_size: float = 1.0, context: str = "") -> tuple[list[Box], list[str]]:
    """:func:`sanitize_box` over many boxes: the usable (possibly clipped) boxes and one message per problem."""
    kept: list[Box] = []
    messages: list[str] = []
    prefix = f"{context}: " if context else ""
    for box in boxes:
        clean, reason = sanitize_box(box, width, height, min_size=min_size)
        if clean is not None:
            kept.append(clean)
        if reason is not None:
            action = "kept" if clean is not None else "dropped"
            messages.append(f"{prefix}{box.label} box {action}: {reason}")
    return kept, messages
