"""What discovery hands the ingest: image tasks (with the boxes their dataset gives them) and the found inputs.

An :class:`ImageTask` is picklable (it travels to the worker pool); :func:`plain_task` names the study of an image
from its file name and place.  The class helpers map a detection set's class names to the vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from radloop.core.vocabulary import BODY_REGIONS

__all__ = [
    "OPENI_IMAGE", "ROBOFLOW_COPY", "UNBOXED_CHOICES", "Discovery", "ImageTask", "RawBox", "box_label_for_class",
    "has_fracture_box", "plain_task", "region_for_class", "study_key",
]

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


def has_fracture_box(task: ImageTask) -> bool:
    """Whether one of the task's boxes is a fracture box (by the vocabulary label of its class)."""
    return any(box_label_for_class(box.source_label) == "fracture" for box in task.boxes)


def plain_task(path: Path, root: Path, dataset: str) -> ImageTask:
    """The task of an image file found under ``root`` (its id is the file name less an image suffix)."""
    stem = path.name
    for suffix in (".dcm", ".dicom", ".png", ".jpg", ".jpeg"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    namespace, key = study_key(path, root, stem, dataset)
    region = "chest" if namespace == "openi" else None
    return ImageTask(path=str(path), dataset=dataset, external_id=stem, study_namespace=namespace,
                     study_key=key, body_region=region)


def study_key(path: Path, root: Path, stem: str, dataset: str) -> tuple[str, str]:
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
