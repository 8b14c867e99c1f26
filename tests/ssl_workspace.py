"""Test workspaces for radloop.ssl: Study/Image rows whose render PNGs are written to tmp at test time.

Real fracture JPEGs from ../shared/data are re-encoded as PNG renders under the test workspace (never copied
into the repository); without the data, synthetic radiograph-like images are drawn instead.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

FRACTURE_IMAGES = Path("bone_fracture_xray_roboflow_v4") / "yolo" / "train" / "images"


def _synthetic(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    image = rng.normal(40, 8, (size, size))
    for _ in range(3):
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        radius = rng.uniform(0.05, 0.25) * size
        image += 150 * (((yy - cy) ** 2 + (xx - cx) ** 2) < radius ** 2)
    return np.clip(image, 0, 255).astype(np.uint8)


def build_workspace(catalog, count: int = 24, *, size: int = 64, real_dir: Path | None = None,
                    seed: int = 0, regions: tuple[str, ...] = ("wrist", "elbow", "shoulder")) -> list[str]:
    """Insert ``count`` images (one study each, splits cycling train/train/val/test) and return their ids."""
    from PIL import Image as PILImage

    from radloop.core.schema import Image, Study

    rng = np.random.default_rng(seed)
    sources = sorted(real_dir.iterdir())[:count] if real_dir is not None else []
    renders = catalog.workspace.renders_dir
    splits = ("train", "train", "train", "val", "test")
    ids = []
    with catalog.session() as session:
        for index in range(count):
            if index < len(sources):
                with PILImage.open(sources[index]) as source:
                    pixels = np.asarray(source.convert("L"))
            else:
                pixels = _synthetic(rng, size)
            digest = hashlib.sha256(pixels.tobytes() + str(index).encode()).hexdigest()
            image_id, study_id = f"I-{digest[:16]}", f"S-{digest[16:32]}"
            path = renders / f"{image_id}.png"
            PILImage.fromarray(pixels).save(path)
            region = regions[index % len(regions)]
            session.add(Study(id=study_id, dataset="test", body_region=region, split=splits[index % len(splits)]))
            session.flush()  # no ORM relationship: insert the study before its image
            session.add(Image(id=image_id, study_id=study_id, content_hash=digest, dataset="test",
                              source_path=str(path), source_format="png", render_path=catalog.workspace.relative(path),
                              thumb_path=catalog.workspace.relative(path), width=pixels.shape[1],
                              height=pixels.shape[0], render_width=pixels.shape[1], render_height=pixels.shape[0],
                              body_region=region, meta={}))
            ids.append(image_id)
    return ids


def save_random_encoder(folder: Path) -> str:
    """Save a random-init tiny ResNet encoder (32 px) into ``folder``, unregistered; returns its version."""
    from radloop.ssl.encoders import random_encoder, save_encoder

    bundle = random_encoder("test_resnet", 32)
    return save_encoder(bundle.model.backbone, folder, timm_name="test_resnet", image_size=32,
                        method="random").version


def embed_command(catalog, encoder_dir: Path, *options: str) -> list[str]:
    """``radloop embed`` of ``catalog`` with ``encoder_dir`` on the CPU in 2-image batches and 4-row shards."""
    return ["embed", "-e", str(encoder_dir), "-w", str(catalog.workspace.root), "--batch-size", "2",
            "--shard-size", "4", "--accelerator", "cpu", *options, "--json"]


def embed_environment(catalog) -> dict[str, str]:
    """The environment of an embedding subprocess: offline, one OpenMP thread, no warnings, the catalog's URL."""
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
            "RADLOOP_DATABASE_URL": catalog.workspace.database_url}
