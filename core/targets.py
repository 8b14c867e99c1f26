"""Image-level training targets derived from expert annotations in the catalog.

Contract with ingest (COCO / YOLO detection sets and Label Studio pulls):
- a box is an ``Annotation`` with ``kind="box"``, ``label`` from the vocabulary (``fracture``,
  ``foreign_body``), ``source_label`` the dataset's own class name, ``x, y, w, h`` in original pixels;
- an image-level expert label is an ``Annotation`` with ``kind="choice"``, ``label`` a finding name and
  ``meta["value"]`` 1 (present) or 0 (absent);
- an image whose boxes were annotated exhaustively (a detection set) carries
  ``Image.meta["box_source"]``: then "no fracture box" means "fracture absent".
- ``Image.body_region`` is the region (for the fracture set: from its boxes' class names).
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
    the newest version wins); detection-set images get ``fracture``/``foreign_body`` from their boxes.

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
            labels=_labels(box_source, image_boxes, choices.get(image_id)), boxes=tuple(image_boxes)))
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


def _labels(box_source, image_boxes: list[Box], choices: dict[str, int] | None) -> dict[str, int]:
    """An image's labels: ``fracture`` from the boxes of an exhaustively boxed set, then its expert answers."""
    labels: dict[str, int] = {}
    if box_source:
        labels["fracture"] = int("fracture" in {box.label for box in image_boxes})
    labels.update(choices or {})
    return labels


def _expert_annotations(session, image_ids, *, everything: bool = False
                        ) -> tuple[dict[str, list[Box]], dict[str, dict[str, int]]]:
    """(image id -> boxes, image id -> finding -> newest answer 1/0) of ``image_ids`` (every image with
    ``everything``), in annotation order (created, then id) so that the newest answer wins."""
    boxes: dict[str, list[Box]] = defaultdict(list)
    choices: dict[str, dict[str, int]] = defaultdict(dict)
    query = (select(Annotation.image_id, Annotation.kind, Annotation.label, Annotation.x, Annotation.y,
                    Annotation.w, Annotation.h, Annotation.meta)
             .where(Annotation.kind.in_(("box", "choice"))).order_by(Annotation.created_at, Annotation.id))
    if everything:
        found = session.execute(query)
    elif len(image_ids) <= IN_CHUNK:  # a few images: by the image index
        found = session.execute(query.where(Annotation.image_id.in_(list(image_ids)))) if image_ids else []
    else:  # most of the archive: one pass over the (far fewer) annotations, not thousands of IN lists
        wanted = set(image_ids)
        found = (row for row in session.execute(query) if row[0] in wanted)
    for image_id, kind, label, x, y, w, h, meta in found:
        if kind == "box" and None not in (x, y, w, h):
            boxes[image_id].append(Box(label, x, y, w, h))
        elif kind == "choice":
            value = (meta or {}).get("value", 1)
            if value is None:  # annotators disagreed (consensus "uncertain"): unknown again
                choices[image_id].pop(label, None)
            else:
                choices[image_id][label] = int(bool(value))
    return boxes, choices
