"""Find what to ingest: DICOM/PNG/JPEG files and folders, COCO and YOLO detection sets, report files.

Discovery only reads folder listings and annotation files; pixels are decoded later in the worker pool.
Every image becomes an :class:`ImageTask` (picklable) that carries the boxes its dataset gives it.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from radloop.core.vocabulary import BODY_REGIONS

__all__ = [
    "IGNORED_SUFFIXES", "MEDIA_DIRECTORY", "UNBOXED_CHOICES", "Discovery", "ImageTask", "RawBox",
    "box_label_for_class", "discover", "folder_files", "has_fracture_box", "region_for_class",
]

RASTER_SUFFIXES = {".png", ".jpg", ".jpeg"}
#: A file with one of these endings, passed as an input path, is a report file (Open-i tarball / XML, CSV).
REPORT_SUFFIXES = (".tgz", ".tar.gz", ".xml", ".csv")
#: Suffixes skipped (and counted) when walking a folder; passed explicitly they are still tried.
IGNORED_SUFFIXES = {".txt", ".md", ".json", ".yaml", ".yml", ".gz", ".zip", ".py", ".html", ".pdf", ".csv",
                    ".tgz", ".log", ".ini", ".cfg", ".sqlite", ".key", ".tmp"}
#: A DICOM media's directory file (PS3.10 8.6): an index of the images beside it, not an image; skipped (and
#: counted) in a folder like the suffixes above.
MEDIA_DIRECTORY = "DICOMDIR"
OPENI_IMAGE = re.compile(r"^(CXR\d+)_")
ROBOFLOW_COPY = re.compile(r"^(.+?)\.rf\.[0-9a-f]{16,}$")
REGION_ALIASES = {"finger": "fingers", "hands": "hand", "thumb": "fingers", "radius": "forearm",
                  "ulna": "forearm", "clavicle": "shoulder", "chest": "chest", "lung": "chest"}


@dataclass(frozen=True)
class RawBox:
    """A box as the dataset wrote it: pixels of a reference size (COCO) or normalised (YOLO)."""

    source_label: str
    x: float
    y: float
    w: float
    h: float
    normalized: bool = False
    reference_width: float | None = None
    reference_height: float | None = None

    def to_pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(x, y, w, h) in pixels of the actual image (``width`` x ``height``), clipped to the image.

        Clipping moves the edges that stick out and keeps the others: a box starting left of (above) the image
        loses the part cut off from its width (height), as one ending beyond the right (bottom) edge does.
        """
        if self.normalized:
            scale_x, scale_y = float(width), float(height)
        else:
            scale_x = width / self.reference_width if self.reference_width else 1.0
            scale_y = height / self.reference_height if self.reference_height else 1.0
        left, top = self.x * scale_x, self.y * scale_y
        x, y = max(0.0, left), max(0.0, top)
        w = min(left + self.w * scale_x, width) - x
        h = min(top + self.h * scale_y, height) - y
        return round(x, 3), round(y, 3), round(max(w, 0.0), 3), round(max(h, 0.0), 3)


@dataclass(frozen=True)
class ImageTask:
    """One image file to ingest and what its dataset says about it."""

    path: str
    dataset: str
    external_id: str
    study_namespace: str
    study_key: str
    body_region: str | None = None
    boxes: tuple[RawBox, ...] = ()
    box_source: str | None = None
    #: an image of a detection set that did not box every fracture (``unboxed="unknown"``) and has no fracture
    #: box: its boxes are stored, but "no fracture box" does not mean "no fracture" (no ``meta["box_source"]``)
    fracture_unknown: bool = False


@dataclass
class Discovery:
    """Everything found under the input paths."""

    image_tasks: list[ImageTask] = field(default_factory=list)
    report_files: list[Path] = field(default_factory=list)
    #: dataset of a report file found inside an input folder: that folder's dataset, as its images have
    report_datasets: dict[str, str] = field(default_factory=dict)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (path, stage, reason)
    ignored_files: list[str] = field(default_factory=list)
    sources: Counter = field(default_factory=Counter)
    #: the datasets of the image inputs (those of their images, and the name an image input that is gone or
    #: yielded no image would have given them): whose catalogued images a re-run should have read
    datasets: set[str] = field(default_factory=set)


#: What an image of a COCO / YOLO set without a fracture box means: ``negative`` (the set boxed every fracture,
#: so no box = no fracture; what the catalog has always assumed) or ``unknown`` (the set is not exhaustive, e.g.
#: only some positive studies were boxed: the image's other boxes are stored, its fracture label stays unknown
#: until an expert or a report says otherwise).
UNBOXED_CHOICES = ("negative", "unknown")


def region_for_class(name: str) -> str | None:
    """Body region named in a dataset class (``"wrist positive"`` -> ``wrist``), else None."""
    for word in re.split(r"[^a-z]+", name.lower()):
        word = REGION_ALIASES.get(word, word)
        if word in BODY_REGIONS:
            return word
    return None


def box_label_for_class(name: str) -> str:
    """Vocabulary label of a detection class: ``foreign_body`` when named so, else ``fracture``.

    The detection sets radloop ingests are fracture sets whose classes name the region
    (``elbow positive``, ``humerus``); every such box marks a fracture.
    """
    lowered = name.lower()
    return "foreign_body" if "foreign" in lowered else "fracture"


def discover(paths: list[Path], *, images_dir: Path | None = None, dataset: str | None = None,
             reports: list[Path] | None = None, limit: int | None = None, unboxed: str = "negative") -> Discovery:
    """Classify every input path and list image tasks (sorted by path) and report files.

    Args:
        paths: files or folders (DICOM/PNG/JPEG files or folders, COCO json, YOLO folder, report files).
        images_dir: image folder of a COCO json (default: the json's folder).
        dataset: dataset name for every image (default: the input path's name).
        reports: extra report files (Open-i XML/tgz/folder, CSV).
        limit: keep only the first ``limit`` images (sorted by path) of each input path.
        unboxed: what a detection-set image without a fracture box means (:data:`UNBOXED_CHOICES`).
    """
    if unboxed not in UNBOXED_CHOICES:
        raise ValueError(f"unboxed must be one of {', '.join(UNBOXED_CHOICES)}, not {unboxed!r}")
    found = Discovery()
    for report in reports or []:
        _add_report_path(Path(report), found)
    for path in paths:
        path = Path(path)
        name = dataset or _default_dataset(path)
        if not (path.is_file() and path.name.lower().endswith(REPORT_SUFFIXES)):
            found.datasets.add(name)  # not a report file
        if not path.exists():
            found.errors.append((str(path), "read", "path does not exist"))
            continue
        before = len(found.image_tasks)
        if path.is_file():
            _discover_file(path, name, images_dir, found)
        elif (path / "data.yaml").is_file() or (path / "data.yml").is_file():
            _discover_yolo(path, dataset, found)
        else:
            _discover_folder(path, name, found)
        if limit is not None:
            added = sorted(found.image_tasks[before:], key=lambda task: task.path)
            found.image_tasks[before:] = added[:limit]
    unique: dict[str, ImageTask] = {}
    for task in found.image_tasks:  # a file named twice (folder + explicit path) is ingested once
        unique.setdefault(str(Path(task.path).resolve()), task)
    found.image_tasks = sorted(unique.values(), key=lambda task: (task.dataset, task.path))
    found.datasets |= {task.dataset for task in found.image_tasks}
    if unboxed == "unknown":
        for index, task in enumerate(found.image_tasks):
            if task.box_source and not has_fracture_box(task):
                found.image_tasks[index] = replace(task, fracture_unknown=True)
    return found


def has_fracture_box(task: ImageTask) -> bool:
    """Whether one of the task's boxes is a fracture box (by the vocabulary label of its class)."""
    return any(box_label_for_class(box.source_label) == "fracture" for box in task.boxes)


def _default_dataset(path: Path) -> str:
    name = path.name
    for suffix in (".coco.json", ".json", ".tar.gz", ".tgz", ".xml", ".csv"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or path.parent.name
    return path.stem if path.is_file() else name


def _add_report_path(path: Path, found: Discovery) -> None:
    # a folder is one report source (read_reports reads its XML and CSV files, recursively): one dataset
    # named after the folder, as its tarball is named after the tarball
    if path.exists():
        found.report_files.append(path)
    else:
        found.errors.append((str(path), "read", "report path does not exist"))


def _discover_file(path: Path, dataset: str, images_dir: Path | None, found: Discovery) -> None:
    lowered = path.name.lower()
    if lowered.endswith(".json"):
        _discover_coco(path, images_dir or path.parent, dataset, found)
    elif lowered.endswith(REPORT_SUFFIXES):
        found.report_files.append(path)
    elif lowered in ("data.yaml", "data.yml"):
        _discover_yolo(path.parent, dataset, found)
    else:
        found.image_tasks.append(_plain_task(path, path.parent, dataset))
        found.sources["files"] += 1


def _discover_folder(root: Path, dataset: str, found: Discovery) -> None:
    for path in folder_files(root, found):
        if path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if suffix == ".xml":
            found.report_files.append(path)
            found.report_datasets[str(path)] = dataset
        elif suffix in IGNORED_SUFFIXES or path.name.upper() == MEDIA_DIRECTORY:
            found.ignored_files.append(str(path))
        else:  # images, extension-less files (often DICOM) and anything unknown: tried, errors recorded
            found.image_tasks.append(_plain_task(path, root, dataset))
    found.sources["folders"] += 1


def folder_files(root: Path, found: Discovery) -> list[Path]:
    """The files under ``root`` (sorted), through symbolic links to folders too (an archive's dated folders are
    often links to other volumes), each real folder once (a link loop ends there).  A folder that cannot be
    listed and a link whose target is gone are recorded as ``read`` errors (``Path.rglob`` skipped all three
    without a word)."""
    files: list[Path] = []
    listed: set[tuple[int, int]] = set()

    def unlistable(error: OSError) -> None:
        found.errors.append((str(error.filename or root), "read",
                             f"cannot list folder ({error.strerror or error}): its files are not ingested"))

    for folder, folders, names in os.walk(root, onerror=unlistable, followlinks=True):
        try:
            status = os.stat(folder)
        except OSError as error:
            unlistable(error)
            folders[:] = []
            continue
        if (status.st_dev, status.st_ino) in listed:  # a link back up (loop) or a second link to one folder
            folders[:] = []
            continue
        listed.add((status.st_dev, status.st_ino))
        for name in names:
            path = Path(folder, name)
            if path.is_file():
                files.append(path)
            elif path.is_symlink() and not path.exists():
                found.errors.append((str(path), "read", _dangling_link_reason(path)))
    return sorted(files)


def _dangling_link_reason(path: Path) -> str:
    """Why a symbolic link leads to no file: its target is gone, or the links lead round in a loop (``a -> b``,
    ``b -> a``; it was called broken, its target named as missing though it is there)."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"symbolic link loop (it leads through {os.readlink(path)} back to a link, never to a file)"
    return f"broken symbolic link (its target {os.readlink(path)} does not exist)"


def _plain_task(path: Path, root: Path, dataset: str) -> ImageTask:
    stem = path.name
    for suffix in (".dcm", ".dicom", ".png", ".jpg", ".jpeg"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    namespace, key = _study_key(path, root, stem, dataset)
    region = "chest" if namespace == "openi" else None
    return ImageTask(path=str(path), dataset=dataset, external_id=stem, study_namespace=namespace,
                     study_key=key, body_region=region)


def _study_key(path: Path, root: Path, stem: str, dataset: str) -> tuple[str, str]:
    """Source study key of a non-DICOM image (DICOM files use their StudyInstanceUID).

    Open-i ``CXR<n>_IM-...`` belongs to report ``CXR<n>``; Roboflow copies ``<source>.rf.<hash>`` of one
    source image share a study (so augmented copies never straddle splits); otherwise one study per file.
    """
    openi = OPENI_IMAGE.match(stem)
    if openi:
        return "openi", openi.group(1)
    copy = ROBOFLOW_COPY.match(stem)
    if copy:
        return "file", f"{dataset}/{copy.group(1)}"
    try:
        relative = path.relative_to(root).with_suffix("")
    except ValueError:
        relative = Path(stem)
    return "file", f"{dataset}/{relative.as_posix()}"


def _discover_coco(json_path: Path, images_dir: Path, dataset: str, found: Discovery) -> None:
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
        found.image_tasks.append(_annotated_task(path, images_dir, dataset, image_boxes, source))
    found.sources["coco"] += 1


def _annotated_task(path: Path, root: Path, dataset: str, boxes: tuple[RawBox, ...], source: str) -> ImageTask:
    task = _plain_task(path, root, dataset)
    regions = Counter(region for region in (region_for_class(b.source_label) for b in boxes) if region)
    region = regions.most_common(1)[0][0] if regions else task.body_region
    return ImageTask(path=task.path, dataset=dataset, external_id=task.external_id,
                     study_namespace=task.study_namespace, study_key=task.study_key, body_region=region,
                     boxes=boxes, box_source=source)


def _discover_yolo(root: Path, dataset: str | None, found: Discovery) -> None:
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
