"""Image-level tasks for the active-learning benchmark, derived from a COCO detection set.

- ``region``: the body part named by the category of the image's boxes ("wrist positive" -> wrist);
  images with boxes only, images whose boxes name two different regions are left out.
- ``fracture``: 1 when the image has a fracture box (a category named "... fracture" or "... positive";
  a bare bone name such as "humerus" is not a fracture), else 0; every image.
The supercategory (a category that is only a parent, e.g. "bones") is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radloop.core.ingest_sources import ROBOFLOW_COPY

TASKS = ("region", "fracture")
_FRACTURE_WORDS = ("fracture", "positive")


@dataclass(frozen=True)
class CocoImages:
    """Images of one COCO file with their image-level targets.

    Attributes:
        file_names: image file names (N).
        regions: body region per image, None without boxes.
        fracture: (N,) int 0/1.
    """

    file_names: list[str]
    regions: list[str | None]
    fracture: np.ndarray


def load_coco_targets(path: str | Path) -> CocoImages:
    """Read a COCO file and derive region and fracture targets per image.

    Raises:
        ValueError: the file is not COCO detection JSON.
    """
    try:
        data = json.loads(Path(path).read_text())
    except ValueError as error:  # not JSON, or not text at all (UnicodeDecodeError)
        raise ValueError(f"{path} is not a COCO JSON file ({error})") from None
    if not isinstance(data, dict) or not all(key in data for key in ("images", "annotations", "categories")):
        raise ValueError(f"{path} is not a COCO detection file (needs images, annotations, categories)")
    try:
        return _coco_targets(data)
    except (KeyError, TypeError, AttributeError) as error:  # an entry without file_name, id, category_id, ...
        raise ValueError(f"{path} is not a COCO detection file: an entry lacks or mistypes {error}") from None


def _coco_targets(data: dict) -> CocoImages:
    parents = {category.get("supercategory") for category in data["categories"]}
    names = {category["id"]: category["name"] for category in data["categories"]
             if not (category["name"] in parents and category.get("supercategory") in (None, "none", ""))}
    by_image: dict[int, list[str]] = {}
    for annotation in data["annotations"]:
        name = names.get(annotation["category_id"])
        if name:
            by_image.setdefault(annotation["image_id"], []).append(name)
    file_names, regions, fracture = [], [], []
    for image in sorted(data["images"], key=lambda item: item["file_name"]):
        categories = by_image.get(image["id"], [])
        region_names = {name.split()[0].lower() for name in categories}
        file_names.append(Path(image["file_name"]).name)
        regions.append(region_names.pop() if len(region_names) == 1 else None)
        fracture.append(int(any(word in name.lower() for name in categories for word in _FRACTURE_WORDS)))
    return CocoImages(file_names, regions, np.asarray(fracture, dtype=np.int64))


@dataclass(frozen=True)
class TaskData:
    """One task's pool and evaluation arrays.

    Attributes:
        name: "region" or "fracture".
        metric: "balanced_accuracy" or "auroc".
        classes: class names.
        pool_x / eval_x: float32 (N, D) features; pool_y / eval_y: int class indices.
    """

    name: str
    metric: str
    classes: list[str]
    pool_x: np.ndarray
    pool_y: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray


def task_arrays(name: str, images: CocoImages, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(rows, targets, classes) of ``images`` that belong to task ``name``.

    Raises:
        ValueError: unknown task.
    """
    if name == "region":
        rows = np.asarray([i for i, region in enumerate(images.regions) if region], dtype=np.int64)
        classes = sorted({images.regions[i] for i in rows})
        targets = np.asarray([classes.index(images.regions[i]) for i in rows], dtype=np.int64)
        return rows, targets, classes
    if name == "fracture":
        return np.arange(len(images.file_names)), images.fracture.copy(), ["no_fracture", "fracture"]
    raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASKS)}")


def build_task(name: str, pool: CocoImages, pool_features: np.ndarray, evaluation: CocoImages,
               eval_features: np.ndarray) -> TaskData:
    """Pool and evaluation arrays of one task (evaluation classes follow the pool's)."""
    pool_rows, pool_y, classes = task_arrays(name, pool, pool_features)
    eval_rows, eval_y, eval_classes = task_arrays(name, evaluation, eval_features)
    keep = np.asarray([eval_classes[label] in classes for label in eval_y], dtype=bool)
    eval_y = np.asarray([classes.index(eval_classes[label]) for label in eval_y[keep]], dtype=np.int64)
    return TaskData(name=name, metric="balanced_accuracy" if name == "region" else "auroc", classes=classes,
                    pool_x=pool_features[pool_rows], pool_y=pool_y, eval_x=eval_features[eval_rows][keep],
                    eval_y=eval_y)


def source_key(file_name: str) -> str:
    """The source image a file was exported from: Roboflow's copies ``<source>.rf.<hash>.<ext>`` of one
    radiograph (augmented or resized) share it, as they share a study in the catalog; otherwise the file itself."""
    stem = Path(str(file_name)).stem
    copy = ROBOFLOW_COPY.match(stem)
    return copy.group(1) if copy else Path(str(file_name)).name


def split_by_source(images: CocoImages, fraction: float, seed: int) -> tuple[CocoImages, CocoImages, np.ndarray]:
    """Hold out about ``fraction`` of the images (seeded) for evaluation, whole source images at a time, so
    copies of one radiograph never sit on both sides; returns (pool, eval, eval mask)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"eval fraction must be in (0, 1), got {fraction}")
    keys = [source_key(name) for name in images.file_names]
    sources = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(sources))
    rows_of: dict[str, list[int]] = {}
    for row, key in enumerate(keys):
        rows_of.setdefault(key, []).append(row)
    held = np.zeros(len(keys), dtype=bool)
    target, count = int(round(fraction * len(keys))), 0
    for index in order:
        if count >= target:
            break
        rows = rows_of[sources[index]]
        held[rows] = True
        count += len(rows)
    if held.all() or not held.any():
        raise ValueError(f"cannot hold out {fraction:.0%} of {len(keys)} images from {len(sources)} source image(s)")

    def subset(mask: np.ndarray) -> CocoImages:
        rows = np.flatnonzero(mask)
        return CocoImages([images.file_names[i] for i in rows], [images.regions[i] for i in rows],
                          images.fracture[rows])

    return subset(~held), subset(held), held


def features_for(images: CocoImages, ids: list[str], vectors: np.ndarray, source: str) -> np.ndarray:
    """Rows of ``vectors`` matching ``images.file_names`` by file name.

    Raises:
        ValueError: images without a vector (the message counts and names some).
    """
    row_of = {Path(str(name)).name: row for row, name in enumerate(ids)}
    keys = [Path(name).name for name in images.file_names]  # a COCO file_name may carry a subfolder
    missing = [name for name, key in zip(images.file_names, keys) if key not in row_of]
    if missing:
        raise ValueError(f"{len(missing)} image(s) have no embedding in {source}, e.g. {missing[:3]}")
    return np.asarray(vectors[[row_of[key] for key in keys]], dtype=np.float32)
