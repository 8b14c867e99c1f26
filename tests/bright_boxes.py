"""A stand-in detector and images it can be checked on: a bright rectangle on black, boxed in whatever pixels the
detector is given (as Faster R-CNN returns boxes in its input tensor's pixels), inside radloop's own
:class:`DetectorPredictor`, so the render -> original scaling around it is the real one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from torch import nn

from radloop.ssl.detection import DetectorPredictor


class BrightRectangle(nn.Module):
    """Boxes the pixels above half brightness, in the pixels of the tensor it is given, with score ``score``."""

    def __init__(self, score: float = 0.9):
        super().__init__()
        self.score = score

    def forward(self, images):
        outputs = []
        for image in images:
            rows, columns = torch.nonzero(image[0] > 0.5, as_tuple=True)
            corners = [[columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]]
            outputs.append({"boxes": torch.tensor(corners, dtype=torch.float32), "labels": torch.tensor([1]),
                            "scores": torch.tensor([self.score])})
        return outputs


def bright_detector(version: str = "det-test-1", score: float = 0.9) -> DetectorPredictor:
    """A fracture "detector" boxing the bright rectangle."""
    return DetectorPredictor(BrightRectangle(score), {"labels": ["fracture"]}, model_version=version)


def write_bright_images(folder: Path, true_boxes: dict[tuple[int, int], tuple[int, int, int, int]]) -> Path:
    """One PNG per ``(width, height) -> (x, y, w, h)`` of ``true_boxes`` (``bright_<w>x<h>.png``), white inside the
    rectangle; ``folder``, created."""
    folder.mkdir(parents=True, exist_ok=True)
    for (width, height), (x, y, w, h) in true_boxes.items():
        pixels = np.zeros((height, width), dtype=np.uint8)
        pixels[y:y + h, x:x + w] = 255
        PILImage.fromarray(pixels).save(folder / f"bright_{width}x{height}.png")
    return folder


def bright_round(catalog, folder: Path, true_boxes: dict, *, dataset: str, first_meta: dict | None = None) -> int:
    """The images of :func:`write_bright_images` ingested and all selected by round 1 (``labelling``, fracture), in
    image id order; the first selection's ``meta`` is ``first_meta``.  Returns the round's id."""
    from sqlalchemy import select

    from radloop.core.ingest import ingest_paths
    from radloop.core.schema import Image, Round, Selection

    folder = write_bright_images(folder, true_boxes)
    assert ingest_paths(catalog, [folder], dataset=dataset, workers=1, progress=False).images_added == len(true_boxes)
    with catalog.session() as session:
        images = list(session.scalars(select(Image).order_by(Image.id)))
        round_row = Round(number=1, state="labelling", strategy="random", budget=len(images), task="fracture")
        session.add(round_row)
        session.flush()
        for rank, image in enumerate(images, start=1):
            session.add(Selection(round_id=round_row.id, image_id=image.id, rank=rank, strategy="random",
                                  meta=(first_meta or {}) if rank == 1 else {}))
        return round_row.id
