"""Test-time workspaces for the heads: real fracture radiographs rendered into a tmp workspace.

Rows are inserted the way ingest writes them (CONTRACTS "Catalog content"), from the real COCO file under
../shared/data; renders are written to the test's tmp workspace (nothing is copied into the repository).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from conftest import data_path

FRACTURE_SET = "bone_fracture_xray_roboflow_v4"
#: COCO class name -> body region (every class is a fracture box).
CLASS_REGIONS = {"elbow positive": "elbow", "fingers positive": "fingers", "forearm fracture": "forearm",
                 "humerus": "humerus", "humerus fracture": "humerus", "shoulder fracture": "shoulder",
                 "wrist positive": "wrist"}


def fracture_coco() -> tuple[dict, Path]:
    """The real COCO file (parsed) and the image folder; skips the test when the data is absent."""
    coco_file = data_path(FRACTURE_SET, "coco", "train_annotations.coco.json")
    images = data_path(FRACTURE_SET, "yolo", "train", "images")
    return json.loads(coco_file.read_text()), images


def fill_fracture_catalog(catalog, n_images: int = 24, *, seed: int = 0, render_size: int | None = None,
                          splits: tuple[str, ...] = ("train", "test")) -> list[str]:
    """Insert ``n_images`` real fracture images (half with boxes) with renders; returns their image ids.

    Splits alternate over studies in ``splits`` order so that every split gets both classes.
    """
    from PIL import Image as PILImage

    from radloop.core.schema import Annotation, Image, Study

    coco, image_dir = fracture_coco()
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    boxes: dict[int, list[dict]] = {}
    for annotation in coco["annotations"]:
        boxes.setdefault(annotation["image_id"], []).append(annotation)
    rng = np.random.default_rng(seed)
    entries = sorted(coco["images"], key=lambda e: e["id"])
    boxed = [e for e in entries if e["id"] in boxes]
    unboxed = [e for e in entries if e["id"] not in boxes]
    half = n_images // 2
    picked = [boxed[i] for i in rng.choice(len(boxed), half, replace=False)]
    picked += [unboxed[i] for i in rng.choice(len(unboxed), n_images - half, replace=False)]
    order = rng.permutation(len(picked))
    ids = []
    workspace = catalog.workspace
    with catalog.session() as session:
        for rank, index in enumerate(order):
            entry = picked[index]
            source = image_dir / entry["file_name"]
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
            image_id, study_id = f"I-{digest[:16]}", f"S-{digest[16:32]}"
            with PILImage.open(source) as handle:
                gray = handle.convert("L")
                width, height = gray.size
                if render_size:
                    gray = gray.resize((render_size, render_size * height // width))
                render = workspace.renders_dir / f"{image_id}.png"
                gray.save(render)
                render_width, render_height = gray.size
            entry_boxes = boxes.get(entry["id"], [])
            region = CLASS_REGIONS[categories[entry_boxes[0]["category_id"]]] if entry_boxes else None
            session.add(Study(id=study_id, dataset=FRACTURE_SET, split=splits[rank % len(splits)],
                              body_region=region))
            session.flush()  # no ORM relationships: parents must be inserted first
            session.add(Image(id=image_id, study_id=study_id, content_hash=digest, dataset=FRACTURE_SET,
                              external_id=entry["file_name"], source_path=str(source), source_format="jpeg",
                              render_path=workspace.relative(render), thumb_path=workspace.relative(render),
                              width=width, height=height, render_width=render_width,
                              render_height=render_height, body_region=region, modality="CR",
                              meta={"box_source": "coco:train_annotations.coco.json"}))
            session.flush()
            for box in entry_boxes:
                x, y, w, h = box["bbox"]
                session.add(Annotation(image_id=image_id, source="coco:train_annotations.coco.json", kind="box",
                                       label="fracture", source_label=categories[box["category_id"]],
                                       x=x, y=y, w=w, h=h))
            ids.append(image_id)
    return ids


def register_random_encoder(catalog, folder: Path) -> str:
    """Save a random-init tiny ResNet encoder (64 px) into ``folder`` and make it the current encoder."""
    from radloop.core.registry import register_model
    from radloop.ssl.encoders import random_encoder, save_encoder

    bundle = random_encoder("test_resnet", 64)
    saved = save_encoder(bundle.model.backbone, folder, timm_name="test_resnet", image_size=64, method="random")
    register_model(catalog, saved.version, kind="encoder", task="encoder", path=folder, make_current=True)
    return saved.version


def filled_catalog(catalog, encoder_folder: Path, n_images: int = 24, **fill):
    """``catalog`` with :func:`fill_fracture_catalog` (``fill``: its options) and a registered current encoder."""
    fill_fracture_catalog(catalog, n_images, **fill)
    register_random_encoder(catalog, encoder_folder)
    return catalog


def fresh_catalog(tmp_path_factory, test_catalog_url, name: str):
    """An empty catalog in a new temporary workspace ``<name>/ws`` on the test database."""
    from radloop.core.catalog import Catalog
    from radloop.core.workspace import Workspace

    root = (tmp_path_factory.mktemp(name) / "ws").resolve()
    return Catalog.open(Workspace(root=root, database_url=test_catalog_url(root)).ensure())


def train_job(name: str, head: str, *, batch_size: int, **sections):
    """A one-epoch training job without augmentation, warm-up or body regions; ``sections`` update its sections."""
    from radloop.ssl.finetune_config import TrainConfig

    base = {"name": name, "head": head, "data": {"body_region": False},
            "finetune": {"max_epochs": 1, "batch_size": batch_size, "augment": False, "warmup_steps": 0},
            "trainer": {"num_threads": 1}}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return TrainConfig.model_validate(base)
