"""Held-out evaluation of a registered model (``radloop evaluate``): catalog split or an external COCO file.

Metrics (``--json`` keys): ``auroc.<finding>``, ``ap.<finding>``, ``ece``, ``map50`` (detectors), plus
``region_balanced_accuracy`` when the model has a body-region head and ``n_images``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from radloop.core.boxes import sanitize_boxes
from radloop.core.catalog import Catalog
from radloop.core.records import Box
from radloop.core.vocabulary import BODY_REGIONS
from radloop.ssl.finetune_data import DataError, LabeledSet, build_labeled_set, drop_missing_renders
from radloop.ssl.finetune_metrics import box_map50, classification_metrics, region_metrics

__all__ = ["coco_labeled_set", "coco_labeled_set_with_notes", "evaluate_model", "evaluate_predictor",
           "training_data"]


def _predict_originals(predictor: Any, labeled: LabeledSet,
                       batch_size: int = 16) -> tuple[LabeledSet, list[Any], list[str]]:
    """Predictions for a set whose paths are original files (a COCO file's images), each read as ingest renders
    it (:func:`radloop.ssl.predict.read_rendered`: decoded as ingest decodes it, long side scaled down to the
    render's), so a model is scored on the pixels it trained on and ``radloop predict`` gives it; boxes come back
    in the pixels of the sizes the set records (the COCO file's, those of its ground-truth boxes; a size recorded
    as (0, 0), not in the file, becomes the image's own).

    Returns:
        (the readable rows of ``labeled``, their predictions, a note naming the unreadable files if any).

    Raises:
        DataError: no file can be read.
    """
    from radloop.core.input_errors import InputError
    from radloop.ssl.predict import read_rendered

    kept: list[int] = []
    predictions: list[Any] = []
    unreadable: list[str] = []
    for start in range(0, len(labeled), batch_size):
        pixels, rows = [], []
        for row in range(start, min(start + batch_size, len(labeled))):
            try:
                image, size = read_rendered(labeled.paths[row])
            except (InputError, OSError) as error:
                reason = (error.strerror or str(error)) if isinstance(error, OSError) else str(error)
                unreadable.append(f"{labeled.paths[row]}: {reason}")
                continue
            except Exception as error:  # noqa: BLE001 - any decoder failure means this file only, as in ingest
                unreadable.append(f"{labeled.paths[row]}: cannot decode: {type(error).__name__}: {error}")
                continue
            pixels.append(image)
            if not all(labeled.sizes[row]):  # a COCO file without the image's width and height: its own
                labeled.sizes[row] = size
            rows.append(row)
        if rows:
            predictions += predictor.predict(pixels, original_sizes=[labeled.sizes[row] for row in rows])
            kept += rows
    if not kept:
        raise DataError(f"none of the {len(labeled)} images could be read (e.g. {unreadable[0]})")
    notes = [f"{len(unreadable)} of {len(labeled)} images left out: unreadable (e.g. {unreadable[0]})"
             ] if unreadable else []
    return (labeled if len(kept) == len(labeled) else labeled.take(kept)), predictions, notes


def evaluate_predictor(predictor: Any, labeled: LabeledSet, *, catalog: Catalog | None = None,
                       encoder_version: str | None = None, progress: bool = False,
                       originals: bool = False) -> dict[str, Any]:
    """Metrics of ``predictor`` on ``labeled`` (probes reuse stored embeddings when a catalog is given).

    ``originals``: ``labeled.paths`` are original files, not catalog renders (an external COCO file's images):
    they are rendered in memory as ingest renders them first, and unreadable ones are left out with a note.
    """
    from radloop.ssl.predict import ProbePredictor

    notes: list[str] = []
    predictions = None
    if originals:
        labeled, predictions, notes = _predict_originals(predictor, labeled)
    findings = [name for name in predictor.findings if name in labeled.findings]
    columns = [labeled.findings.index(name) for name in findings]
    predicted_regions: list[str | None] = [None] * len(labeled)
    predicted_boxes: list[list[Box]] | None = None
    if isinstance(predictor, ProbePredictor) and catalog is not None and predictions is None:
        from radloop.ssl.finetune_jobs import embeddings_for

        vectors = embeddings_for(catalog, predictor.encoder, encoder_version, labeled, progress=progress)
        probabilities = predictor.probe.predict_proba(vectors)
        region_probabilities = predictor.probe.predict_region_proba(vectors)
        if predictor.regions:
            predicted_regions = [predictor.regions[i] for i in region_probabilities.argmax(axis=1)]
        order = [predictor.findings.index(name) for name in findings]
        probabilities = probabilities[:, order]
    else:
        if predictions is None:
            predictions = predictor.predict(list(labeled.paths), original_sizes=labeled.sizes)  # boxes: original px
        probabilities = np.array([[p.choices.get(name, 0.0) for name in findings] for p in predictions],
                                 dtype=np.float32).reshape(len(labeled), len(findings))
        predicted_regions = [p.body_region for p in predictions]
        if "labels" in (getattr(predictor, "meta", None) or {}):  # a detector: its boxes are scored too
            predicted_boxes = [p.boxes for p in predictions]
    metrics: dict[str, Any] = {"n_images": len(labeled)}
    metrics.update(classification_metrics(labeled.targets[:, columns], probabilities, findings))
    if getattr(predictor, "regions", None):
        metrics.update(region_metrics(labeled.regions, predicted_regions))
    if predicted_boxes is not None:
        labels = list(predictor.meta["labels"])
        truth = [sanitize_boxes([b for b in boxes if b.label in labels], w, h)[0]
                 for boxes, (w, h) in zip(labeled.boxes, labeled.sizes)]
        boxes = box_map50(predicted_boxes, truth, labels)
        box_notes = boxes.pop("notes", [])
        metrics.update(boxes)
        if box_notes:
            metrics.setdefault("notes", []).extend(box_notes)
    if notes:  # the unreadable originals first (the metrics' own notes replace a "notes" key they find)
        metrics["notes"] = notes + list(metrics.get("notes", []))
    return metrics


def _coco_label(class_name: str) -> str:
    return "foreign_body" if "foreign" in class_name.lower() else "fracture"


def _coco_region(class_name: str) -> str | None:
    first = class_name.lower().split()[0] if class_name.strip() else ""
    return first if first in BODY_REGIONS else None


def coco_labeled_set(coco_file: str | Path, images_dir: str | Path, findings: list[str]) -> LabeledSet:
    """A held-out set from a COCO detection file (boxes exhaustive: no box -> finding absent).

    Class names map to ``fracture`` (or ``foreign_body`` when the name says so) and to a body region when
    their first word is one (``"elbow positive"`` -> elbow).  Images not found under ``images_dir`` are left
    out (:func:`coco_labeled_set_with_notes` also says how many).

    Raises:
        DataError: unreadable file, or none of its images exists under ``images_dir``.
    """
    return coco_labeled_set_with_notes(coco_file, images_dir, findings)[0]


def _coded_layout_boxes(path: Path, image_boxes: list[Box],
                        size: tuple[int, int]) -> tuple[list[Box], tuple[int, int]]:
    """A COCO entry's boxes and size in the image's coded pixel layout, the one ingest and ``read_rendered``
    decode: boxes drawn on the view an EXIF orientation tag rotates or flips are mapped as ingest maps them
    (:func:`radloop.core.ingest_detection_sets.oriented_box`); others come back as they are."""
    from radloop.core.ingest_detection_sets import SWAPPING_ORIENTATIONS, coco_box_orientation, oriented_box
    from radloop.core.ingest_tasks import RawBox

    orientation = coco_box_orientation(path, (float(size[0]), float(size[1])))
    if orientation == 1:
        return image_boxes, size
    coded = (size[1], size[0]) if orientation in SWAPPING_ORIENTATIONS else size
    mapped = []
    for box in image_boxes:
        raw = oriented_box(RawBox(box.label, box.x, box.y, box.w, box.h, False, *map(float, size)), orientation)
        mapped.append(Box(box.label, raw.x * coded[0], raw.y * coded[1], raw.w * coded[0], raw.h * coded[1],
                          score=box.score))
    return mapped, coded


def coco_labeled_set_with_notes(coco_file: str | Path, images_dir: str | Path,
                                findings: list[str]) -> tuple[LabeledSet, list[str]]:
    """:func:`coco_labeled_set` and a note naming how many of the file's images were not found under
    ``images_dir`` (with one example), so that a score on a subset says it is one.

    Raises:
        DataError: unreadable file, or none of its images exists under ``images_dir``.
    """
    coco_path, folder = Path(coco_file), Path(images_dir)
    try:
        coco = json.loads(coco_path.read_text())
        categories = {c["id"]: c["name"] for c in coco["categories"]}
        entries = coco["images"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"cannot read COCO file {coco_path}: {type(error).__name__}: {error}") from None
    boxes: dict[Any, list[Box]] = {}
    regions: dict[Any, str] = {}
    for number, annotation in enumerate(coco.get("annotations", [])):
        try:
            name = categories.get(annotation["category_id"], "")
            x, y, w, h = (float(value) for value in annotation["bbox"])
            image_id = annotation["image_id"]
        except (KeyError, TypeError, ValueError) as error:  # a missing key, a bbox that is not 4 numbers
            raise DataError(f"cannot read COCO file {coco_path}: annotation #{number} (id "
                            f"{annotation.get('id') if isinstance(annotation, dict) else '?'}) has no usable "
                            f"category_id, bbox [x, y, w, h] and image_id ({type(error).__name__}: {error})") from None
        boxes.setdefault(image_id, []).append(Box(_coco_label(name), x, y, w, h))
        if _coco_region(name):
            regions.setdefault(image_id, _coco_region(name))
    result = LabeledSet(findings=list(findings))
    rows = []
    missing: list[str] = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or "file_name" not in entry or "id" not in entry:
            raise DataError(f"cannot read COCO file {coco_path}: image #{number} has no file_name and id")
        path = folder / entry["file_name"]
        if not path.is_file():
            missing.append(str(entry["file_name"]))
            continue
        image_boxes = boxes.get(entry["id"], [])
        try:  # (0, 0): not in the file; the image's own size is read with its pixels (_predict_originals)
            size = (int(entry.get("width") or 0), int(entry.get("height") or 0))
        except (TypeError, ValueError):
            raise DataError(f"cannot read COCO file {coco_path}: image {entry['file_name']} has width "
                            f"{entry.get('width')!r} and height {entry.get('height')!r}") from None
        if image_boxes and all(size):  # boxes drawn on an EXIF-rotated view: into the coded layout, as ingest
            image_boxes, size = _coded_layout_boxes(path, image_boxes, size)
        present = {b.label for b in image_boxes}
        rows.append([int(name in present) if name in ("fracture", "foreign_body") else -1 for name in findings])
        result.image_ids.append(str(entry["file_name"]))
        result.study_ids.append(str(entry["file_name"]))
        result.paths.append(path)
        result.sizes.append(size)
        result.regions.append(regions.get(entry["id"]))
        result.boxes.append(image_boxes)
    where = f"{folder} (the COCO file's folder)" if folder == coco_path.parent else str(folder)
    if not entries:
        raise DataError(f"COCO file {coco_path} lists no images: nothing to evaluate on")
    if not rows:
        raise DataError(f"none of the {len(entries)} images of {coco_path.name} is under {where}: "
                        "pass --images FOLDER, the folder their file_name paths are in")
    result.targets = np.asarray(rows, dtype=np.int64)
    result.weights = np.ones(len(rows), dtype=np.float32)
    notes = [f"{len(missing)} of {len(entries)} images of {coco_path.name} left out: not under {where} "
             f"(e.g. {missing[0]}); scored on the {len(rows)} found"] if missing else []
    return result, notes


def training_data(config: dict[str, Any]) -> dict[str, Any]:
    """What a registered model's config says about the data it was trained and evaluated on: a training job's
    ``data`` section, or for an active-learning round's probe (``round`` in its config, no ``data``) the
    round's settings: it selected from ``pool_split``, was scored on ``eval_split``, restricted to ``dataset``."""
    if "data" in config or "round" not in config:
        return dict(config.get("data", {}))
    data = {"train_splits": [config.get("pool_split", "train")], "eval_split": config.get("eval_split", "test"),
            "dataset": config.get("dataset")}
    return {**data, "findings": [config["task"]]} if config.get("task") else data


def _use_of(config: dict[str, Any], split: str) -> str:
    """What a model's labelled images of ``split`` served, as a verb phrase: a fine-tuned classifier's
    ``data.calibration_split`` Platt-scaled it and/or chose its epoch; any other split's trained it."""
    summary = config.get("train_summary") or {}
    if split != (config.get("data") or {}).get("calibration_split"):
        return "train"
    uses = [verb for key, verb in (("calibration", "calibrate"), ("epoch_selection", "select the epoch of"))
            if key in summary]
    return " and ".join(uses) or "train"


def evaluate_model(catalog: Catalog, version: str, *, coco: str | Path | None = None,
                   images: str | Path | None = None, split: str | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Evaluate registered ``version`` on the held-out catalog split (default: the job's eval split) or a COCO file
    (its images under ``images``, default: the COCO file's folder).

    A catalog split is refused when the model was trained on it (a training job's ``data.train_splits``, a
    round probe's ``pool_split``: :func:`training_data`) or when any of its images' annotations trained the
    model (a round probe records the expert choices it trained on, whatever their split) or calibrated it (a
    fine-tuned classifier's ``data.calibration_split``, also used to select its epoch).

    Raises:
        DataError: the split overlaps the model's training images, or has no images.
        RegistryError: unknown version.
    """
    from radloop.core.registry import get_model
    from radloop.ssl.predict import predictor_for_version

    record = get_model(catalog, version)
    predictor = predictor_for_version(catalog, version)
    data = training_data(record.config or {})
    findings = list(dict.fromkeys(list(data.get("findings", predictor.findings)) + list(predictor.findings)))
    if coco is not None:
        # as `radloop ingest` reads a COCO file: its images sit in its folder unless ``images`` names another
        labeled, notes = coco_labeled_set_with_notes(coco, images if images is not None else Path(coco).parent,
                                                     findings)
        source = f"coco:{Path(coco).name}"
    else:
        split = split or data.get("eval_split", "test")
        if split in data.get("train_splits", ["train"]):
            raise DataError(f"split {split!r} was used to train {version}: evaluation would leak")
        labeled = build_labeled_set(catalog, findings, splits=[split], dataset=data.get("dataset"),
                                    require_labels=False)
        labeled, notes = drop_missing_renders(labeled, f"{split}-split")
        trained_on = set(record.annotation_ids)
        leaked = [i for i in labeled.annotation_ids if i in trained_on]
        if leaked:
            leaked_images = len({labeled.annotations[i] for i in leaked})
            raise DataError(f"{len(leaked)} annotations of split {split!r} ({leaked_images} image(s)) were used "
                            f"to {_use_of(record.config or {}, split)} {version}: evaluation would leak")
        source = f"split:{split}"
    metrics = evaluate_predictor(predictor, labeled, catalog=catalog if coco is None else None,
                                 encoder_version=record.parent_version, progress=progress, originals=coco is not None)
    if notes:
        metrics["notes"] = notes + list(metrics.get("notes", []))
    return {"model": version, "kind": record.kind, "source": source, **metrics}
