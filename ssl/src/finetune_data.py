"""Training and evaluation sets for the heads, read from the catalog.

Expert annotations come first (``core.targets.image_targets``: image-level choices and exhaustive boxes);
report weak labels (``weak_labels`` rows of the study's reports) optionally fill findings an expert has not
labelled, with a lower sample weight (noise-aware).  Splits are the study-level ``Study.split`` written by
ingest, so training (``train``) and evaluation (``test`` / ``val``) never share a patient study.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select

from radloop.core.catalog import Catalog
from radloop.core.records import Box
from radloop.core.schema import Annotation
from radloop.core.targets import ImageTargets, image_targets
from radloop.core.weak_status import newest_version_rows, study_status

__all__ = ["DataError", "LabeledSet", "build_labeled_set", "cap_images", "check_no_leak", "drop_missing_renders",
           "drop_unlabelled", "subsample"]


class DataError(ValueError):
    """No usable images/labels for a job (the message says what is missing and what to run)."""


@dataclass
class LabeledSet:
    """Images with their targets, aligned by row.

    Attributes:
        findings: the T finding names (columns of ``targets``).
        image_ids, study_ids: catalog ids (N).
        paths: absolute render paths (N).
        sizes: original (width, height) per image (boxes are in these pixels).
        targets: (N, T) int64, 1 present / 0 absent / -1 unknown.
        weights: (N,) float32 sample weights (1 for expert labels, the weak weight for report-only rows).
        regions: body region per image (None unknown).
        boxes: expert boxes per image (original pixels).
        annotations: expert annotation id -> image id (the annotations behind the rows).
        weak_rows: number of rows whose labels come only from reports.
    """

    findings: list[str]
    image_ids: list[str] = field(default_factory=list)
    study_ids: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    targets: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.float32))
    regions: list[str | None] = field(default_factory=list)
    boxes: list[list[Box]] = field(default_factory=list)
    annotations: dict[int, str] = field(default_factory=dict)
    weak_rows: int = 0

    @property
    def annotation_ids(self) -> list[int]:
        """Sorted ids of the expert annotations behind the rows (recorded per model)."""
        return sorted(self.annotations)

    def __len__(self) -> int:
        return len(self.image_ids)

    def take(self, rows: np.ndarray | list[int]) -> "LabeledSet":
        """A subset (rows in the given order); annotations are kept only for the kept images."""
        rows = [int(r) for r in rows]
        kept = {self.image_ids[r] for r in rows}
        return LabeledSet(
            findings=list(self.findings), image_ids=[self.image_ids[r] for r in rows],
            study_ids=[self.study_ids[r] for r in rows], paths=[self.paths[r] for r in rows],
            sizes=[self.sizes[r] for r in rows], targets=self.targets[rows], weights=self.weights[rows],
            regions=[self.regions[r] for r in rows], boxes=[self.boxes[r] for r in rows],
            annotations={i: image for i, image in self.annotations.items() if image in kept},
            weak_rows=int(sum(1 for r in rows if self.weights[r] < 1.0)))

    def summary(self) -> dict:
        """Counts for logs and the registry: images, positives per finding, regions, boxes, weak rows."""
        positives = {name: int((self.targets[:, c] == 1).sum()) for c, name in enumerate(self.findings)}
        labelled = {name: int((self.targets[:, c] >= 0).sum()) for c, name in enumerate(self.findings)}
        return {"images": len(self), "studies": len(set(self.study_ids)), "labelled": labelled,
                "positives": positives, "regions": dict(Counter(r for r in self.regions if r)),
                "boxes": int(sum(len(b) for b in self.boxes)), "weak_rows": self.weak_rows,
                "annotations": len(self.annotations)}


def _report_status(catalog: Catalog, study_ids: list[str], findings: list[str]) -> dict[str, dict[str, int]]:
    """Study -> finding -> 1/0 from its report weak labels of the newest rules version that labelled it
    (positive beats negative; uncertain-only is skipped; :mod:`radloop.core.weak_status`)."""
    result: dict[str, dict[str, int]] = defaultdict(dict)
    with catalog.session() as session:
        newest = newest_version_rows(session, study_ids)
    for study_id, (_version, rows) in newest.items():
        seen: dict[str, list[str]] = defaultdict(list)
        for finding, status in rows:
            if finding in findings:
                seen[finding].append(status)
        for finding, statuses in seen.items():
            status = study_status(statuses)
            if status != "uncertain":
                result[study_id][finding] = int(status == "positive")
    return result


def build_labeled_set(catalog: Catalog, findings: list[str], *, splits: list[str], dataset: str | None = None,
                      weak_labels: bool = False, weak_weight: float = 0.3,
                      require_labels: bool = True) -> LabeledSet:
    """Catalog images of ``splits`` with expert targets (and optionally report weak labels).

    Expert labels win; with ``weak_labels`` an image without any expert label for ``findings`` takes its
    study's report-level weak labels with sample weight ``weak_weight``.  Images with no known label, no
    body region and no box are left out unless ``require_labels`` is False.

    Raises:
        DataError: no images in those splits, or none of them is labelled.
    """
    targets: list[ImageTargets] = []
    for split in splits:
        targets.extend(image_targets(catalog, dataset=dataset, split=split))
    where = f"split(s) {', '.join(splits)}{f' of dataset {dataset!r}' if dataset else ''}"
    if not targets:
        raise DataError(f"no images in {where}: run `radloop ingest ...` first")
    weak = _report_status(catalog, sorted({t.study_id for t in targets}), findings) if weak_labels else {}
    result = LabeledSet(findings=list(findings))
    rows_targets, rows_weights = [], []
    for target in targets:
        row = [target.labels.get(name, -1) for name in findings]
        weight, weak_only = 1.0, False
        if weak_labels and all(value < 0 for value in row):
            report = weak.get(target.study_id, {})
            row = [report.get(name, -1) for name in findings]
            weak_only = any(value >= 0 for value in row)
            weight = weak_weight if weak_only else 1.0
        if require_labels and all(value < 0 for value in row) and not target.body_region and not target.boxes:
            continue
        result.image_ids.append(target.image_id)
        result.study_ids.append(target.study_id)
        result.paths.append(catalog.workspace.absolute(target.render_path))
        result.sizes.append((int(target.width), int(target.height)))
        result.regions.append(target.body_region)
        result.boxes.append(list(target.boxes))
        rows_targets.append(row)
        rows_weights.append(weight)
        result.weak_rows += int(weak_only)
    if not result.image_ids:
        raise DataError(f"none of the {len(targets)} images in {where} has a label for {', '.join(findings)}, "
                        "a body region or a box: annotate some (Label Studio) or ingest a labelled dataset")
    result.targets = np.asarray(rows_targets, dtype=np.int64).reshape(len(result.image_ids), len(findings))
    result.weights = np.asarray(rows_weights, dtype=np.float32)
    with catalog.session() as session:
        for start in range(0, len(result.image_ids), 5000):
            chunk = result.image_ids[start:start + 5000]
            for annotation_id, image_id in session.execute(
                    select(Annotation.id, Annotation.image_id)
                    .where(Annotation.image_id.in_(chunk), Annotation.kind.in_(("box", "choice")))):
                result.annotations[int(annotation_id)] = image_id
    return result


def drop_missing_renders(labeled: LabeledSet, what: str) -> tuple[LabeledSet, list[str]]:
    """``labeled`` without the images whose render file is missing, and a message saying how many were left out.

    A missing render would otherwise stop a job with a traceback after minutes of training (the detector reads its
    images step by step, a held-out set is read after training); pretraining skips unreadable images the same way.

    Args:
        what: the set's role in the message, e.g. ``"training"``.

    Raises:
        DataError: every render of the set is missing.
    """
    missing = [row for row, path in enumerate(labeled.paths) if not Path(path).is_file()]
    if not missing:
        return labeled, []
    example = labeled.paths[missing[0]]
    if len(missing) == len(labeled):
        raise DataError(f"all {len(labeled)} {what} images' render files are missing (e.g. {example}): "
                        "is the workspace's renders/ folder there?")
    gone = set(missing)
    kept = [row for row in range(len(labeled)) if row not in gone]
    message = f"{len(missing)} of {len(labeled)} {what} images left out: render file missing (e.g. {example})"
    return labeled.take(kept), [message]


def subsample(labeled: LabeledSet, fraction: float, *, seed: int = 0, stratify_column: int = 0) -> LabeledSet:
    """Keep ``fraction`` of the images, stratified by one finding (at least one image of each class, so a small
    fraction may keep a few more than ``fraction``; :func:`cap_images` keeps an exact number).

    Raises:
        DataError: ``fraction`` outside (0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction >= 1.0:
        return labeled
    rng = np.random.default_rng(seed)
    column = labeled.targets[:, stratify_column] if labeled.targets.size else np.full(len(labeled), -1)
    chosen: list[int] = []
    for value in np.unique(column):
        rows = np.flatnonzero(column == value)
        count = max(1, int(round(fraction * len(rows))))
        chosen.extend(rng.choice(rows, size=min(count, len(rows)), replace=False).tolist())
    return labeled.take(sorted(chosen))


def cap_images(labeled: LabeledSet, count: int, *, seed: int = 0, stratify_column: int = 0) -> LabeledSet:
    """Exactly ``count`` images (all of them when there are no more), stratified by one finding.

    Each class of the finding (present, absent, unknown) keeps its share of ``count`` (largest remainders round
    it), and each known class (present / absent) keeps at least one image when ``count`` is at least the number
    of known classes: ``data.max_train_images`` is a hard cap, never exceeded to keep a class.

    Raises:
        DataError: ``count`` below 1.
    """
    if count < 1:
        raise DataError(f"an image cap must be at least 1, got {count}")
    if count >= len(labeled):
        return labeled
    column = labeled.targets[:, stratify_column] if labeled.targets.size else np.full(len(labeled), -1)
    values, sizes = np.unique(column, return_counts=True)
    exact = count * sizes / len(labeled)
    quota = np.floor(exact).astype(int)
    known = values >= 0
    if count >= int(known.sum()):
        quota[known] = np.maximum(quota[known], 1)
    while quota.sum() > count:  # the minimum of one took images from the largest classes
        floor = np.where(known, 1, 0)
        quota[int(np.argmax(np.where(quota > floor, quota, -1)))] -= 1
    while quota.sum() < count:  # largest remainder first, among classes with images left
        remainder = np.where(quota < sizes, exact - quota, -np.inf)
        quota[int(np.argmax(remainder))] += 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for value, take in zip(values, quota):
        rows = np.flatnonzero(column == value)
        chosen.extend(rng.choice(rows, size=int(take), replace=False).tolist())
    return labeled.take(sorted(chosen))


def drop_unlabelled(labeled: LabeledSet, *, regions: bool) -> tuple[LabeledSet, list[str]]:
    """``labeled`` without the rows a classifier cannot learn from, and a message saying how many were left out.

    A row whose findings are all unknown (-1) adds nothing to a probe's or fine-tuned classifier's findings (its
    loss is masked out) and, without a body region (or with ``regions`` False: the region head is off), nothing at
    all: kept, it would only take a place in the batches, in ``data.max_train_images`` and in the label fraction.

    Raises:
        DataError: no row has a known finding label (or a body region, with ``regions``).
    """
    useful = [row for row in range(len(labeled))
              if (labeled.targets[row] >= 0).any() or (regions and labeled.regions[row])]
    if len(useful) == len(labeled):
        return labeled, []
    what = f"a known label for {', '.join(labeled.findings)}" + (" or a body region" if regions else "")
    if not useful:
        raise DataError(f"none of the {len(labeled)} training images has {what}: annotate some (Label Studio), "
                        "turn on data.weak_labels.use, or ingest a labelled dataset")
    message = f"{len(labeled) - len(useful)} of {len(labeled)} training images left out: no {what[2:]}"
    return labeled.take(useful), [message]


def check_no_leak(train: LabeledSet, held_out: LabeledSet) -> None:
    """Raise if a study appears in both sets (the split must be at study/patient level).

    Raises:
        DataError: naming the first shared study ids.
    """
    shared = sorted(set(train.study_ids) & set(held_out.study_ids))
    if shared:
        raise DataError(f"{len(shared)} studies are in both the training and the held-out set "
                        f"(e.g. {', '.join(shared[:5])}): the split must be study-level")
