"""Discovery of detection sets: a COCO json (with its image folder) and a YOLO folder (``data.yaml``).

Boxes are kept as the set wrote them (:class:`RawBox`); they are scaled to the decoded image in the worker.
A JPEG/PNG with an EXIF orientation other than 1 is stored (and rendered) in its coded pixel layout, while
annotation tools draw on the rotated view that viewers show: its boxes are mapped into the coded layout
(:func:`oriented_box`), unless a COCO entry's size says the tool drew on the coded layout itself.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import yaml

from radloop.core.ingest_tasks import Discovery, ImageTask, RawBox, plain_task, region_for_class

__all__ = ["RASTER_SUFFIXES", "coco_box_orientation", "discover_coco", "discover_yolo", "exif_orientation",
           "oriented_box"]

RASTER_SUFFIXES = {".png", ".jpg", ".jpeg"}
#: EXIF orientations whose displayed view swaps width and height.
SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag of a JPEG/PNG file (1: none, or unreadable; 2..8: flipped and/or rotated)."""
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():  # a very large image is the decode stage's to note, not the header read's
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as image:
                value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - an unreadable file is the decode stage's to report
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _stored_point(u: float, v: float, orientation: int) -> tuple[float, float]:
    """A point of the displayed view (normalised ``u`` right, ``v`` down) in the coded pixel layout."""
    return {1: (u, v), 2: (1 - u, v), 3: (1 - u, 1 - v), 4: (u, 1 - v), 5: (v, u), 6: (v, 1 - u),
            7: (1 - v, 1 - u), 8: (1 - v, u)}[orientation]


def oriented_box(box: RawBox, orientation: int) -> RawBox:
    """``box`` drawn on the displayed view of an image with EXIF ``orientation``, in the coded pixel layout.

    The result is normalised (fractions of the coded image), so it scales to the decoded image like a YOLO box.
    """
    if orientation == 1:
        return box
    if box.normalized:
        scale_x = scale_y = 1.0
    elif box.reference_width and box.reference_height:
        scale_x, scale_y = 1.0 / box.reference_width, 1.0 / box.reference_height
    else:  # pixels of an unknown size: nothing to map with
        return box
    corners = [_stored_point(u, v, orientation) for u, v in
               ((box.x * scale_x, box.y * scale_y), ((box.x + box.w) * scale_x, (box.y + box.h) * scale_y))]
    left, right = sorted(c[0] for c in corners)
    top, bottom = sorted(c[1] for c in corners)
    return RawBox(box.source_label, left, top, right - left, bottom - top, True)


def coco_box_orientation(path: Path, reference: tuple[float | None, float | None]) -> int:
    """The orientation to map a COCO entry's boxes with: the file's, unless the entry's size is the coded
    layout's (not square), which says the annotation tool drew on the coded pixels."""
    orientation = exif_orientation(path)
    width, height = reference
    if orientation in SWAPPING_ORIENTATIONS and width and height and width != height:
        from PIL import Image as PILImage

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as image:
                coded_width, coded_height = image.size
        if abs(width / height - coded_width / coded_height) < abs(width / height - coded_height / coded_width):
            return 1
    return orientation


def discover_coco(json_path: Path, images_dir: Path, dataset: str, found: Discovery) -> None:
    """Add the images a COCO json lists (found under ``images_dir``) with their boxes to ``found``."""
    try:
        coco = json.loads(json_path.read_text(encoding="utf-8"))
        categories = {int(c["id"]): c for c in coco["categories"]}
        images = coco["images"]
        annotations = coco.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as error:
        found.errors.append((str(json_path), "parse", f"not a readable COCO json: {error}"))
        return
    # A category that is another category's supercategory ("bones") groups classes; it is not a class.
    parents = {c.get("supercategory") for c in categories.values()}
    classes = {cid: c["name"] for cid, c in categories.items() if c["name"] not in parents}
    boxes: dict[int, list[RawBox]] = {}
    for annotation in annotations:
        name = classes.get(int(annotation.get("category_id", -1)))
        bbox = annotation.get("bbox") or []
        if name is None or len(bbox) != 4:
            continue
        image = annotation.get("image_id")
        boxes.setdefault(image, []).append(RawBox(name, *map(float, bbox)))
    source = f"coco:{json_path.name}"
    present = [(images_dir / entry["file_name"]).is_file() for entry in images]
    if images and not any(present):
        # the wrong folder (or none given): one error that says what to do, not one per listed image
        found.errors.append((str(json_path), "read", f"none of the {len(images)} images listed in {json_path.name} "
                             f"is in {images_dir}: pass --images FOLDER, the folder their file_name paths are in"))
        return
    for entry, exists in zip(images, present):
        path = images_dir / entry["file_name"]
        if not exists:
            found.errors.append((str(path), "read", f"image listed in {json_path.name} is missing"))
            continue
        reference = (float(entry.get("width") or 0) or None, float(entry.get("height") or 0) or None)
        image_boxes = tuple(RawBox(b.source_label, b.x, b.y, b.w, b.h, False, *reference)
                            for b in boxes.get(entry["id"], []))
        if image_boxes:
            orientation = coco_box_orientation(path, reference)
            image_boxes = tuple(oriented_box(box, orientation) for box in image_boxes)
        found.image_tasks.append(_annotated_task(path, images_dir, dataset, image_boxes, source))
    found.sources["coco"] += 1


def _annotated_task(path: Path, root: Path, dataset: str, boxes: tuple[RawBox, ...], source: str) -> ImageTask:
    task = plain_task(path, root, dataset)
    regions = Counter(region for region in (region_for_class(b.source_label) for b in boxes) if region)
    region = regions.most_common(1)[0][0] if regions else task.body_region
    return ImageTask(path=task.path, dataset=dataset, external_id=task.external_id,
                     study_namespace=task.study_namespace, study_key=task.study_key, body_region=region,
                     boxes=boxes, box_source=source)


def discover_yolo(root: Path, dataset: str | None, found: Discovery) -> None:
    """Add the images of a YOLO folder (``images/`` or ``<split>/images/``, labels beside) with their boxes."""
    config_path = root / "data.yaml" if (root / "data.yaml").is_file() else root / "data.yml"
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        names = config["names"]
        names = {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else dict(enumerate(names))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        found.errors.append((str(config_path), "parse", f"not a readable YOLO data.yaml (needs names): {error}"))
        return
    dataset = dataset or (config.get("roboflow") or {}).get("project") or root.name
    image_dirs = [d for d in [root / "images", *sorted(p / "images" for p in root.iterdir() if p.is_dir())]
                  if d.is_dir()]
    if not image_dirs:
        found.errors.append((str(root), "read", "YOLO folder has no images/ (or <split>/images/) folder"))
        return
    source = f"yolo:{root.name}"
    for images_dir in image_dirs:
        labels_dir = images_dir.parent / "labels"
        for path in sorted(images_dir.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in RASTER_SUFFIXES:
                continue
            label_path = labels_dir / path.relative_to(images_dir).with_suffix(".txt")
            boxes = _yolo_boxes(label_path, names, found)
            if boxes:
                orientation = exif_orientation(path)
                boxes = tuple(oriented_box(box, orientation) for box in boxes)
            found.image_tasks.append(_annotated_task(path, images_dir, dataset, boxes, source))
    found.sources["yolo"] += 1


def _yolo_boxes(label_path: Path, names: dict[int, str], found: Discovery) -> tuple[RawBox, ...]:
    """Boxes of one YOLO label file: ``cls cx cy w h`` or polygons ``cls x1 y1 ... xn yn`` (-> bounding box)."""
    if not label_path.is_file():
        return ()
    boxes = []
    for number, line in enumerate(label_path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            class_id, values = int(float(tokens[0])), [float(t) for t in tokens[1:]]
            name = names[class_id]
        except (ValueError, KeyError):
            found.errors.append((f"{label_path}:{number}", "parse",
                                 f"bad YOLO line (unknown class or number): {line!r}"))
            continue
        if len(values) == 4:
            center_x, center_y, width, height = values
            boxes.append(RawBox(name, center_x - width / 2, center_y - height / 2, width, height, True))
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            boxes.append(RawBox(name, min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys), True))
        else:
            found.errors.append((f"{label_path}:{number}", "parse",
                                 f"bad YOLO line (expected 'cls cx cy w h' or a polygon): {line!r}"))
    return tuple(boxes)
