"""Export the labelled catalog as a training dataset for use elsewhere (``radloop export``).

Expert labels and boxes come from :func:`radloop.core.targets.image_targets`, the resolution ``radloop train``
trains on (newest answer wins, Label Studio versions, exhaustively boxed sets), called a page of image ids at a
time.  What is held at once: one page (:data:`~radloop.core.catalog.IN_CHUNK` images: their targets, columns and
their studies' weak labels), the ids that ``image_ids`` (a ``--filter``) selected, and, for ``weak_labels.jsonl``
only, the ids of the studies written.  COCO annotations go to a side file until the images are written.

Files written into the output folder (built in a temporary sibling folder and renamed into place, so that an
interrupted export leaves no half dataset):

- ``labels.csv``: one row per image (:func:`csv_columns`);
- ``boxes.coco.json``: COCO with every exported image (``file_name`` its render) and the expert boxes in the render's
  pixels (``bbox``, what COCO readers expect) and in the original's as stored (``bbox_original``);
- ``export.json``: provenance and counts;
- ``weak_labels.jsonl`` (``with_evidence`` only): each study's weak-label mentions with their evidence redacted.

No report text leaves by default: weak labels are exported as a status per finding only.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator

from sqlalchemy import func, select

from radloop.core.catalog import IN_CHUNK, Catalog, chunked
from radloop.core.schema import Image, Study, WeakLabel
from radloop.core.splits import SPLITS
from radloop.core.targets import image_targets
from radloop.core.vocabulary import BOX_FINDINGS, FINDINGS
from radloop.core.weak_status import newest_version_rows, study_status

__all__ = ["EXPORT_FILES", "LABEL_MODES", "ExportError", "ExportSummary", "csv_columns", "export_dataset"]

#: which labels the export carries: expert answers and boxes, report weak labels, or both
LABEL_MODES = ("expert", "weak", "both")
#: the files an export writes (``weak_labels.jsonl`` only with evidence)
EXPORT_FILES = ("labels.csv", "boxes.coco.json", "export.json", "weak_labels.jsonl")
_IMAGE_COLUMNS = ("image_id", "study_id", "split", "dataset", "body_region", "laterality", "view", "width",
                  "height", "render_width", "render_height", "render_path", "source_path")
_BOX_NOTE = ("bbox is [x, y, w, h] in the pixels of file_name (the render: width x height, scaled down from the "
             "original when its long side was over 2048 px); bbox_original is the box in the original image's pixels "
             "(original_width x original_height, source_path), as the catalog stores it")


class ExportError(ValueError):
    """An export refused before writing anything (bad option, output folder not empty)."""


@dataclass
class ExportSummary:
    """What an export wrote: counts per split, expert labels per finding (``{finding: {"1": n, "0": n}}``), weak
    statuses per finding, boxes per category, renders scaled down or missing on disk, and where."""

    out: str
    images: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    expert: dict[str, dict[str, int]] = field(default_factory=dict)
    weak: dict[str, dict[str, int]] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    scaled_renders: int = 0
    missing_renders: int = 0
    labels_outside_vocabulary: dict[str, int] = field(default_factory=dict)
    rules_versions: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def csv_columns(labels: str = "both") -> list[str]:
    """``labels.csv``'s header: the image columns, then ``expert_<finding>`` (1 / 0 / empty) and / or
    ``weak_<finding>`` (positive / negative / uncertain / empty) for each vocabulary finding."""
    _check_mode(labels)
    columns = list(_IMAGE_COLUMNS)
    if labels in ("expert", "both"):
        columns += [f"expert_{finding}" for finding in FINDINGS]
    if labels in ("weak", "both"):
        columns += [f"weak_{finding}" for finding in FINDINGS]
    return columns


def _check_mode(labels: str) -> None:
    if labels not in LABEL_MODES:
        raise ExportError(f"labels {labels!r}: one of {', '.join(LABEL_MODES)}")


def export_dataset(catalog: Catalog, out: str | Path, *, dataset: str | None = None,
                   splits: Iterable[str] | None = None, image_ids: Iterable[str] | None = None,
                   labels: str = "both", with_evidence: bool = False, redact: Callable[[str], str] | None = None,
                   overwrite: bool = False, filters: dict | None = None, command: list[str] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> ExportSummary:
    """Write the catalog's images (of ``dataset``, ``splits`` and ``image_ids``; default all) and their labels
    into the folder ``out`` (see the module docstring for the files).

    Args:
        image_ids: only these images (e.g. :func:`radloop.retrieval.search_filters.allowed_image_ids` of the
            ``--filter`` items); ``filters`` is recorded in ``export.json`` as given.
        labels: ``expert``, ``weak`` or ``both``.
        with_evidence: also write ``weak_labels.jsonl``; needs ``redact`` (text -> redacted text, e.g.
            ``lambda text: radloop.labeling.redact.redact_report(text).text``; a sentence met again, "No acute
            fracture.", is redacted once).
        overwrite: replace a non-empty ``out`` (else refused).
        command: the command line to record (the CLI's); None from Python.
        progress: called ``(images done, images in scope)`` after each page.

    Raises:
        ExportError: a bad option, or ``out`` is a file or a non-empty folder without ``overwrite``.
    """
    _check_mode(labels)
    splits = list(dict.fromkeys(splits or ()))
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise ExportError(f"split {unknown[0]!r}: one of {', '.join(SPLITS)}")
    if with_evidence and labels == "expert":
        raise ExportError("evidence comes with weak labels: use labels 'weak' or 'both' with it")
    if with_evidence and redact is None:
        raise ExportError("with_evidence needs redact (text -> redacted text): report text never leaves unredacted")
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file: give a folder (new or empty)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"--out {out} is not empty: give a new or empty folder, or --overwrite to replace it")
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    summary = ExportSummary(out=str(out))
    try:
        _write(catalog, staging, summary, dataset=dataset, splits=splits,
               image_ids=None if image_ids is None else sorted(set(image_ids)), labels=labels,
               redact=lru_cache(maxsize=65536)(redact) if with_evidence else None, progress=progress)
        summary.seconds = round(time.perf_counter() - started, 3)
        summary.files = sorted(path.name for path in staging.iterdir()) + ["export.json"]
        provenance = _provenance(catalog, summary, dataset=dataset, splits=splits, labels=labels,
                                 with_evidence=with_evidence, filters=filters, command=command)
        (staging / "export.json").write_text(json.dumps(provenance, indent=2) + "\n")
        _put_in_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _put_in_place(staging: Path, out: Path) -> None:
    """Rename the finished folder to ``out``; a replaced ``out`` is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.replaced-{os.getpid()}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _pages(catalog: Catalog, *, dataset: str | None, splits: list[str], image_ids: list[str] | None
           ) -> tuple[int, Iterator[tuple[int, list[tuple]]]]:
    """(images in scope, at most; pages in id order), each page (ids looked at, the image rows found: each the
    image's columns that its targets lack)."""
    columns = (Image.id, Image.dataset, Image.laterality, Image.view, Image.render_width, Image.render_height,
               Image.source_path)
    query = select(*columns).join(Study, Study.id == Image.study_id)
    count = select(func.count()).select_from(Image).join(Study, Study.id == Image.study_id)
    if dataset:
        query, count = query.where(Image.dataset == dataset), count.where(Image.dataset == dataset)
    if splits:
        query, count = query.where(Study.split.in_(splits)), count.where(Study.split.in_(splits))
    if image_ids is not None:
        def listed() -> Iterator[tuple[int, list[tuple]]]:
            for chunk in chunked(image_ids, IN_CHUNK):
                with catalog.session() as session:  # closed before the page is used: no transaction held open
                    rows = session.execute(query.where(Image.id.in_(chunk)).order_by(Image.id)).all()
                yield len(chunk), rows
        return len(image_ids), listed()
    with catalog.session() as session:
        total = session.scalar(count) or 0

    def keyset() -> Iterator[tuple[int, list[tuple]]]:
        last = ""
        while True:
            with catalog.session() as session:
                rows = session.execute(query.where(Image.id > last).order_by(Image.id).limit(IN_CHUNK)).all()
            if not rows:
                return
            yield len(rows), rows
            last = rows[-1][0]
    return total, keyset()


def _write(catalog: Catalog, folder: Path, summary: ExportSummary, *, dataset, splits, image_ids, labels, redact,
           progress) -> None:
    expert, weak = labels in ("expert", "both"), labels in ("weak", "both")
    categories = {name: index + 1 for index, name in enumerate(BOX_FINDINGS)}
    total, pages = _pages(catalog, dataset=dataset, splits=splits, image_ids=image_ids)
    splits_seen, expert_counts, weak_counts = Counter(), defaultdict(Counter), defaultdict(Counter)
    box_counts, outside, rules_versions, studies_written = Counter(), Counter(), set(), set()
    coco_images = folder / "boxes.coco.json"
    annotations_file = folder / ".annotations.part"
    done = number = box_id = 0
    root = str(catalog.workspace.root)
    with ExitStack() as files:
        table = files.enter_context((folder / "labels.csv").open("w", newline="", encoding="utf-8"))
        coco = files.enter_context(coco_images.open("w", encoding="utf-8"))
        boxes = files.enter_context(annotations_file.open("w", encoding="utf-8"))
        evidence = (files.enter_context((folder / "weak_labels.jsonl").open("w", encoding="utf-8"))
                    if redact is not None else None)
        writer = csv.writer(table)
        writer.writerow(csv_columns(labels))
        coco.write('{"info": {"description": "radloop export: expert boxes"},\n"images": [')
        for looked_at, page in pages:
            done += looked_at
            extra = {row[0]: row for row in page}
            targets = image_targets(catalog, image_ids=list(extra))
            statuses, mentions = (_weak_labels(catalog, {t.study_id for t in targets}, with_mentions=redact
                                               is not None) if weak else ({}, {}))
            for target in targets:
                _, image_dataset, laterality, view, render_width, render_height, source_path = extra[target.image_id]
                render = os.path.join(root, target.render_path)  # Workspace.absolute, without a Path per row
                row = [target.image_id, target.study_id, target.split, image_dataset or "", target.body_region or "",
                       laterality or "", view or "", target.width, target.height, render_width, render_height,
                       render, source_path]
                if expert:
                    row += ["" if target.labels.get(name) is None else int(target.labels[name]) for name in FINDINGS]
                    for name, value in target.labels.items():
                        if name in FINDINGS:
                            expert_counts[name][str(int(value))] += 1
                        else:
                            outside[name] += 1
                if weak:
                    study = statuses.get(target.study_id, {})
                    row += [study.get(name, ("", ""))[0] for name in FINDINGS]
                    for name, (status, version) in study.items():
                        weak_counts[name][status] += 1
                        rules_versions.add(version)
                writer.writerow(row)
                splits_seen[target.split] += 1
                summary.scaled_renders += int((render_width, render_height) != (target.width, target.height))
                summary.missing_renders += int(not os.path.isfile(render))
                number += 1
                # COCO readers take boxes in the pixels of file_name (the render, scaled down when its long side
                # was over 2048 px): bbox is there, bbox_original in the original's pixels as stored
                coco.write(("" if number == 1 else ",") + "\n" + json.dumps(
                    {"id": number, "file_name": render, "width": render_width, "height": render_height,
                     "original_width": target.width, "original_height": target.height, "radloop_image_id":
                     target.image_id, "source_path": source_path}))
                if expert:
                    scale_x, scale_y = render_width / target.width, render_height / target.height
                    for box in target.boxes:
                        category = categories.setdefault(box.label, len(categories) + 1)
                        box_id += 1
                        box_counts[box.label] += 1
                        bbox = [box.x, box.y, box.w, box.h]
                        if (scale_x, scale_y) != (1.0, 1.0):
                            bbox = [round(box.x * scale_x, 3), round(box.y * scale_y, 3),
                                    round(box.w * scale_x, 3), round(box.h * scale_y, 3)]
                        boxes.write(json.dumps({"id": box_id, "image_id": number, "category_id": category,
                                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0,
                                                "bbox_original": [box.x, box.y, box.w, box.h]}) + "\n")
                if evidence is not None and target.study_id in mentions and target.study_id not in studies_written:
                    studies_written.add(target.study_id)
                    version, rows = mentions[target.study_id]
                    evidence.write(json.dumps({"study_id": target.study_id, "rules_version": version, "mentions": [
                        dict(mention, evidence=redact(mention["evidence"] or "")) for mention in rows]}) + "\n")
            if progress is not None:
                progress(min(done, total), total)
        coco.write('\n],\n"annotations": [')
        boxes.close()
        with annotations_file.open(encoding="utf-8") as written:
            for index, line in enumerate(written):
                coco.write(("" if index == 0 else ",") + "\n" + line.rstrip("\n"))
        coco.write('\n],\n"categories": ' + json.dumps([{"id": index, "name": name, "supercategory": "finding"}
                                                        for name, index in categories.items()]) + "\n}\n")
    annotations_file.unlink()
    summary.images = number
    summary.splits = dict(sorted(splits_seen.items()))
    summary.expert = {name: dict(expert_counts[name]) for name in FINDINGS if name in expert_counts}
    summary.weak = {name: dict(weak_counts[name]) for name in FINDINGS if name in weak_counts}
    summary.boxes = dict(box_counts)
    summary.labels_outside_vocabulary = dict(outside)
    summary.rules_versions = sorted(rules_versions)


def _weak_labels(catalog: Catalog, study_ids: set[str], *, with_mentions: bool
                 ) -> tuple[dict[str, dict[str, tuple[str, str]]], dict[str, tuple[str, list[dict]]]]:
    """(study -> finding -> (report-level status, rules version), study -> (rules version, mentions)).

    A study's labels are those of the newest rules version that labelled its reports (an older version's rows
    are kept in the catalog for comparison).  Status per finding as training with weak labels
    (``data.weak_labels.use``) reads it: ``positive`` when any mention is positive, ``negative`` when all are
    negative, else ``uncertain`` (which training leaves unknown).
    """
    extra = ([WeakLabel.temporality, WeakLabel.site, WeakLabel.laterality, WeakLabel.device_type,
              WeakLabel.section, WeakLabel.evidence] if with_mentions else [])
    with catalog.session() as session:
        newest = newest_version_rows(session, study_ids, extra)
    statuses: dict[str, dict[str, tuple[str, str]]] = {}
    mentions: dict[str, tuple[str, list[dict]]] = {}
    for study_id, (version, rows) in newest.items():
        seen: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            if row[0] in FINDINGS:
                seen[row[0]].append(row[1])
        statuses[study_id] = {name: (study_status(found), version) for name, found in seen.items()}
        if with_mentions:
            mentions[study_id] = (version, [
                {"finding": row[0], "status": row[1], "temporality": row[2], "site": row[3], "laterality": row[4],
                 "device_type": row[5], "section": row[6], "evidence": row[7]} for row in rows])
    return statuses, mentions


def _radloop_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("radloop")
    except PackageNotFoundError:  # a source tree that was not installed
        return "unknown"


def _provenance(catalog: Catalog, summary: ExportSummary, *, dataset, splits, labels, with_evidence, filters,
                command) -> dict:
    return {
        "radloop_version": _radloop_version(), "catalog_schema_version": catalog.schema_version(),
        "rules_versions": summary.rules_versions,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": None if command is None else list(command),  # None: called from Python, not the CLI
        "selection": {"dataset": dataset, "splits": splits or list(SPLITS), "filters": filters or {}},
        "labels": labels, "with_evidence": with_evidence,
        "files": summary.files, "boxes": _BOX_NOTE,
        "expert_labels": "1 / 0 / empty per finding, resolved as `radloop train` resolves them (newest answer, "
                         "Label Studio versions, exhaustively boxed sets)",
        "weak_labels": "per finding, the study's reports under the newest rules version: positive (any mention), "
                       "negative (all), uncertain (otherwise; training leaves it unknown), empty (not mentioned)",
        "counts": {"images": summary.images, "splits": summary.splits, "expert": summary.expert,
                   "weak": summary.weak, "boxes": summary.boxes, "scaled_renders": summary.scaled_renders,
                   "missing_renders": summary.missing_renders,
                   "labels_outside_vocabulary": summary.labels_outside_vocabulary},
        "seconds": summary.seconds,
    }
