"""Image-level training targets derived from expert annotations in the catalog.

Contract with ingest (COCO / YOLO detection sets and Label Studio pulls):
- a box is an ``Annotation`` with ``kind="box"``, ``label`` from the vocabulary (``fracture``,
  ``foreign_body``), ``source_label`` the dataset's own class name, ``x, y, w, h`` in original pixels;
- an image-level expert label is an ``Annotation`` with ``kind="choice"``, ``label`` a finding name and
  ``meta["value"]`` 1 (present) or 0 (absent);
- an image whose boxes were annotated exhaustively (a detection set) carries
  ``Image.meta["box_source"]``: then "no fracture box" means "fracture absent".
- ``Image.body_region`` is the region (for the fracture set: from its boxes' class names);
- Label Studio rows (``source="labelstudio"``) are versioned by ``external_id`` / ``version``: per label, an
  image's boxes come from the newest annotation that drew it, over the imported ones, and none where the
  answers rule the label out (:func:`_resolve_boxes`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from radloop.core.catalog import IN_CHUNK, Catalog
from radloop.core.records import Box
from radloop.core.schema import Annotation, Image, Study


@dataclass(frozen=True)
class ImageTargets:
    """What is known about one image for training and evaluation.

    ``labels`` maps finding -> 1/0 where known (absent key: unknown).
    """

    image_id: str
    study_id: str
    split: str
    body_region: str | None
    render_path: str
    width: int
    height: int
    labels: dict[str, int] = field(default_factory=dict)
    boxes: tuple[Box, ...] = ()

    @property
    def fracture(self) -> int | None:
        return self.labels.get("fracture")


def image_targets(catalog: Catalog, *, dataset: str | None = None, split: str | None = None,
                  image_ids: list[str] | None = None) -> list[ImageTargets]:
    """Targets of catalog images, sorted by image id.

    Later choice annotations of the same (image, finding) override earlier ones (append-only history,
    the newest version wins); detection-set images get ``fracture``/``foreign_body`` from their boxes.  Boxes
    without area (zero width or height) count for the labels but are left out of ``boxes``.

    Only the columns the targets need are read (not whole rows: an archive's image metadata is large), and
    more than :data:`~radloop.core.catalog.IN_CHUNK` ``image_ids`` are not sent as bound parameters
    (PostgreSQL takes 65535 at most): the images are read in order and filtered here.
    """
    query = (select(Image.id, Image.study_id, Study.split, Image.body_region, Image.render_path, Image.width,
                    Image.height, Image.meta["box_source"]).join(Study, Study.id == Image.study_id))
    if dataset:
        query = query.where(Image.dataset == dataset)
    if split:
        query = query.where(Study.split == split)
    query = query.order_by(Image.id)
    with catalog.session() as session:
        if image_ids is not None and len(image_ids) <= IN_CHUNK:
            rows = session.execute(query.where(Image.id.in_(image_ids))).all()
        else:
            wanted = None if image_ids is None else set(image_ids)
            rows = [row for row in session.execute(query) if wanted is None or row[0] in wanted]
        boxes, choices = _expert_annotations(session, [row[0] for row in rows], everything=image_ids is None
                                             and not dataset and not split)
    result = []
    for image_id, study_id, study_split, body_region, render_path, width, height, box_source in rows:
        image_boxes = boxes.get(image_id, [])
        result.append(ImageTargets(
            image_id=image_id, study_id=study_id, split=study_split, body_region=body_region,
            render_path=render_path, width=width, height=height,
            labels=_labels(box_source, image_boxes, choices.get(image_id)),
            boxes=tuple(box for box in image_boxes if _has_area(box))))
    return result


def image_labels(catalog: Catalog, image_ids: list[str] | None = None, *, dataset: str | None = None,
                 split: str | None = None) -> dict[str, dict[str, int]]:
    """Image id -> finding -> 1/0, for the images (of ``image_ids``, ``dataset`` and ``split``; default all)
    that have a known label.

    The ``labels`` of :func:`image_targets` without building a target per image: only exhaustively boxed images
    (``meta["box_source"]``) and images with expert annotations are read, so this costs what is labelled, not
    the size of the archive.  An image absent from the result has no label (its targets' ``labels`` is empty).
    """
    box_source = Image.meta["box_source"]
    query = select(Image.id, box_source).where(box_source.as_string().is_not(None))
    with catalog.session() as session:
        if dataset or split:  # the images in scope, by id (their annotations are kept by id below)
            scope = select(Image.id).join(Study, Study.id == Image.study_id)
            if dataset:
                scope = scope.where(Image.dataset == dataset)
            if split:
                scope = scope.where(Study.split == split)
            in_scope = set(session.scalars(scope))
            image_ids = [i for i in image_ids if i in in_scope] if image_ids is not None else list(in_scope)
        if image_ids is not None and len(image_ids) <= IN_CHUNK:
            wanted = list(image_ids)
            sources = dict(session.execute(query.where(Image.id.in_(wanted))).all()) if wanted else {}
        else:
            wanted = None if image_ids is None else set(image_ids)
            sources = {image_id: value for image_id, value in session.execute(query)
                       if wanted is None or image_id in wanted}
        boxes, choices = _expert_annotations(session, wanted, everything=wanted is None)
    result = {}
    for image_id in {image_id for image_id, value in sources.items() if value} | set(choices):
        labels = _labels(sources.get(image_id), boxes.get(image_id, []), choices.get(image_id))
        if labels:
            result[image_id] = labels
    return result


def _has_area(box: Box) -> bool:
    """Whether a catalog box can be trained on and matched: a set's zero-width box, or one that lay wholly outside
    its image (ingest clips it to zero size), still says "fracture" but marks no place."""
    return box.w > 0 and box.h > 0


def _labels(box_source, image_boxes: list[Box], choices: dict[str, int] | None) -> dict[str, int]:
    """An image's labels: ``fracture`` from the boxes of an exhaustively boxed set, then its expert answers."""
    labels: dict[str, int] = {}
    if box_source:
        labels["fracture"] = int("fracture" in {box.label for box in image_boxes})
    labels.update(choices or {})
    return labels


#: The source of annotations pulled from Label Studio (``radloop.labeling.ls_sync``): versioned by ``external_id``.
LABEL_STUDIO_SOURCE = "labelstudio"


def _expert_annotations(session, image_ids, *, everything: bool = False
                        ) -> tuple[dict[str, list[Box]], dict[str, dict[str, int]]]:
    """(image id -> boxes, image id -> finding -> newest answer 1/0) of ``image_ids`` (every image with
    ``everything``), in annotation order (created, then id) so that the newest answer wins.

    Boxes (see :func:`_resolve_boxes`): a Label Studio annotation counts with its newest version only; per label,
    the newest annotation that drew it replaces the image's imported (COCO / YOLO) boxes, and a label the image's
    answers rule out (consensus included) has none; append-only history stays in the catalog.
    """
    imported: dict[str, list[Box]] = defaultdict(list)
    answers: dict[str, _Answers] = defaultdict(_Answers)
    choices: dict[str, dict[str, int]] = defaultdict(dict)
    query = (select(Annotation.image_id, Annotation.kind, Annotation.label, Annotation.x, Annotation.y,
                    Annotation.w, Annotation.h, Annotation.meta, Annotation.source, Annotation.external_id,
                    Annotation.version)
             .where(Annotation.kind.in_(("box", "choice", "skip"))).order_by(Annotation.created_at, Annotation.id))
    if everything:
        found = session.execute(query)
    elif len(image_ids) <= IN_CHUNK:  # a few images: by the image index
        found = session.execute(query.where(Annotation.image_id.in_(list(image_ids)))) if image_ids else []
    else:  # most of the archive: one pass over the (far fewer) annotations, not thousands of IN lists
        wanted = set(image_ids)
        found = (row for row in session.execute(query) if row[0] in wanted)
    for image_id, kind, label, x, y, w, h, meta, source, external_id, version in found:
        if source == LABEL_STUDIO_SOURCE and external_id:
            answers[image_id].add(external_id, int(version or 1), kind, label, (x, y, w, h))
        elif kind == "box" and None not in (x, y, w, h):
            imported[image_id].append(Box(label, x, y, w, h))
        if kind == "choice":
            value = (meta or {}).get("value", 1)
            if value is None:  # annotators disagreed (consensus "uncertain"): unknown again
                choices[image_id].pop(label, None)
            else:
                choices[image_id][label] = int(bool(value))
    boxes = {image_id: _resolve_boxes(imported.get(image_id, []), answers.get(image_id), choices.get(image_id, {}))
             for image_id in set(imported) | set(answers)}
    return {image_id: found_boxes for image_id, found_boxes in boxes.items() if found_boxes}, choices


@dataclass
class _Version:
    boxes: list[Box] = field(default_factory=list)
    skipped: bool = False
    order: int = 0  # arrival of its last row (rows come in annotation order)


@dataclass
class _Answers:
    """One image's Label Studio annotations: ``external_id`` -> version number -> what that version holds."""

    versions: dict[str, dict[int, _Version]] = field(default_factory=lambda: defaultdict(dict))
    rows: int = 0

    def add(self, external_id: str, version: int, kind: str, label: str, geometry: tuple) -> None:
        """One row (box, choice or skip) of version ``version`` of annotation ``external_id``: a version answered
        with its choices even where it drew nothing (its choices count with the image's others, in ``labels``)."""
        self.rows += 1
        entry = self.versions[external_id].setdefault(version, _Version())
        entry.order = self.rows
        if kind == "box" and None not in geometry:
            entry.boxes.append(Box(label, *geometry))
        elif kind == "skip":
            entry.skipped = True

    def answered(self) -> list[_Version]:
        """The newest version of each annotation that answered (skipped ones do not), oldest first."""
        latest = [history[max(history)] for history in self.versions.values()]
        return sorted((entry for entry in latest if not entry.skipped), key=lambda entry: entry.order)


def _resolve_boxes(imported: list[Box], answers: _Answers | None, labels: dict[str, int]) -> list[Box]:
    """An image's boxes for training and evaluation, label by label.

    ``labels``: the image's resolved expert answers (newest answer, or the annotators' consensus).  A label they
    rule out (0) has no boxes.  Otherwise the newest Label Studio annotation that drew the label gives its boxes
    (older versions of an annotation were edited away; several annotators' boxes are not pooled), else the
    imported boxes stay: Label Studio does not show imported boxes, so an answer that draws nothing but says
    "fracture" (or "cannot tell") keeps the dataset's box.
    """
    drawn: dict[str, list[Box]] = {}
    for entry in answers.answered() if answers is not None else []:
        for label in {box.label for box in entry.boxes}:  # a later annotation's drawing of a label wins
            drawn[label] = [box for box in entry.boxes if box.label == label]
    kept = [box for box in imported if box.label not in drawn]
    return [box for box in kept + [box for boxes in drawn.values() for box in boxes] if labels.get(box.label) != 0]
