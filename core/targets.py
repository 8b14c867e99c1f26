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

from radloop.core.catalog import Catalog
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
    """
    with catalog.session() as session:
        query = select(Image, Study.split).join(Study, Study.id == Image.study_id)
        if dataset:
            query = query.where(Image.dataset == dataset)
        if split:
            query = query.where(Study.split == split)
        if image_ids is not None:
            query = query.where(Image.id.in_(image_ids))
        rows = session.execute(query.order_by(Image.id)).all()
        wanted = [image.id for image, _ in rows]
        boxes: dict[str, list[Box]] = defaultdict(list)
        choices: dict[str, dict[str, int]] = defaultdict(dict)
        for start in range(0, len(wanted), 5000):
            chunk = wanted[start:start + 5000]
            annotations = session.scalars(
                select(Annotation).where(Annotation.image_id.in_(chunk), Annotation.kind.in_(("box", "choice")))
                .order_by(Annotation.created_at, Annotation.id)).all()
            for annotation in annotations:
                if annotation.kind == "box" and None not in (annotation.x, annotation.y, annotation.w, annotation.h):
                    boxes[annotation.image_id].append(
                        Box(annotation.label, annotation.x, annotation.y, annotation.w, annotation.h))
                elif annotation.kind == "choice":
                    value = (annotation.meta or {}).get("value", 1)
                    if value is None:  # annotators disagreed (consensus "uncertain"): unknown again
                        choices[annotation.image_id].pop(annotation.label, None)
                    else:
                        choices[annotation.image_id][annotation.label] = int(bool(value))
    result = []
    for image, study_split in rows:
        labels: dict[str, int] = {}
        image_boxes = boxes.get(image.id, [])
        if (image.meta or {}).get("box_source"):
            present = {box.label for box in image_boxes}
            labels["fracture"] = int("fracture" in present)
        labels.update(choices.get(image.id, {}))
        result.append(ImageTargets(
            image_id=image.id, study_id=image.study_id, split=study_split, body_region=image.body_region,
            render_path=image.render_path, width=image.width, height=image.height, labels=labels,
            boxes=tuple(image_boxes)))
    return result
