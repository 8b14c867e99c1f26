"""A synthetic hospital-archive catalog for measuring the catalog-side paths at scale (`radloop bench catalog`).

The rows are what an ingest of a radiograph archive writes (see :mod:`radloop.core.ingest_writer`): two
images per study (DICOM columns, ``meta["dicom"]``, a few flagged ``burned_in_annotation``), the study's split
from :func:`radloop.core.splits.split_for_study`, reports with sections for most studies and their weak labels,
an exhaustively boxed detection subset (``meta["box_source"]``, fracture boxes on some of it), image-level
expert choices for a fraction, ingest warnings and errors, and one embedding per image for one registered
encoder, written through :func:`radloop.core.embeddings.write_shard` (the writer ``radloop embed`` uses).
Rows go in through SQLAlchemy Core bulk inserts into the catalog's own tables (no pixels are read or
rendered: the image files do not exist), so a 300k-image catalog takes minutes, not the days of a real
ingest.  Everything is seeded: the same arguments give the same catalog.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from radloop.core.catalog import Catalog
from radloop.core.ingest_worker import render_relative_paths
from radloop.core.schema import Annotation, Image, IngestError, Report, Study, WeakLabel
from radloop.core.splits import split_for_study

__all__ = ["SYNTH_ENCODER", "build_synthetic_catalog"]

#: version the synthetic catalog's encoder is registered (and its embeddings stored) under
SYNTH_ENCODER = "enc-synth-test_efficientnet-64"
#: timm architecture of that encoder: tiny (100k weights), 256-dimensional embeddings
SYNTH_ARCH = "test_efficientnet"
#: body regions of the archive and their shares (chest dominates a general hospital's radiographs)
REGIONS = {"chest": 0.5, "hand": 0.07, "wrist": 0.07, "knee": 0.06, "spine": 0.06, "shoulder": 0.05,
           "ankle": 0.05, "pelvis": 0.04, "foot": 0.04, "elbow": 0.03, "skull": 0.02, None: 0.01}
REPORT_FINDINGS = ("fracture", "effusion", "cardiomegaly", "pneumothorax", "nodule", "device", "atelectasis",
                   "consolidation", "edema", "dislocation")
STATUSES = ("positive", "negative", "uncertain")
CHUNK = 10_000


def _hex(prefix: str, seed: int, index: int, length: int = 16) -> str:
    return prefix + hashlib.sha256(f"{seed}:{prefix}:{index}".encode()).hexdigest()[:length]


def _insert(connection, table, rows: list[dict]) -> None:
    """One executemany of ``rows`` (every row gets every key any row has: NULL where it has none)."""
    if rows:
        keys = dict.fromkeys(key for row in rows for key in row)
        connection.execute(insert(table.__table__), [{key: row.get(key) for key in keys} for row in rows])


def build_synthetic_catalog(catalog: Catalog, images: int, *, seed: int = 0, dim: int | None = None,
                            report_share: float = 0.6, detection_share: float = 0.1, choice_share: float = 0.05,
                            burned_in_share: float = 0.005, embed: bool = True, encoder: bool = True,
                            renders: bool = True, progress=None) -> dict:
    """Fill an empty catalog with ``images`` synthetic images (``images // 2`` studies) and their rows.

    Args:
        catalog: an empty catalog (its workspace folder receives the embedding shards and the encoder).
        images: number of images (even: two per study).
        dim: embedding dimension of the stored vectors (default: the encoder's, 256; another dimension only
            without ``encoder``: a round's hand-out embeds its batch with the encoder and compares).
        report_share: studies with a report (each with 1-3 weak labels).
        detection_share: images of the exhaustively boxed detection subset (a third of them with 1-2 boxes).
        choice_share: images with an image-level expert answer for ``fracture`` (ingested labels).
        burned_in_share: images flagged ``burned_in_annotation`` (kept out of rounds).
        embed / encoder: store the embeddings / register a small random ResNet-18 as the current encoder.
        renders: give every image a render and a thumbnail file (hard links to one small grey PNG: handing
            a round's batch to annotators stages the renders of its images).

    Returns:
        Counts of what was written and the seconds each part took.
    """
    say = progress or (lambda _message: None)
    rng = np.random.default_rng(seed)
    regions = list(REGIONS)
    region_p = np.array(list(REGIONS.values()), dtype=float)
    region_p /= region_p.sum()
    started = time.perf_counter()
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    counts = {"studies": 0, "images": 0, "reports": 0, "weak_labels": 0, "annotations": 0, "ingest_errors": 0}
    ids: list[str] = []
    studies = images // 2
    for start in range(0, studies, CHUNK // 2):
        study_rows, image_rows, report_rows, label_rows, note_rows, errors = [], [], [], [], [], []
        for s in range(start, min(studies, start + CHUNK // 2)):
            study_id = _hex("S-", seed, s)
            region = regions[int(rng.choice(len(regions), p=region_p))]
            created = base + timedelta(seconds=s)
            study_rows.append({"id": study_id, "dataset": "archive", "body_region": region, "modality": "DX",
                               "split": split_for_study(study_id), "meta": {}, "created_at": created})
            for view_index, view in enumerate(("PA", "LAT") if region == "chest" else ("AP", "LAT")):
                i = 2 * s + view_index
                image_id = _hex("I-", seed, i)
                meta: dict = {"dicom": {"body_part": (region or "").upper(), "transfer_syntax": "1.2.840.10008.1.2.1",
                                        "window_source": "voi_lut", "number_of_frames": 1, "bits_allocated": 16}}
                if rng.random() < burned_in_share:
                    meta["burned_in_annotation"] = True
                    errors.append({"run_id": "synthetic", "path": f"/archive/{image_id}.dcm", "stage": "privacy",
                                   "reason": f"warning: {image_id}: BurnedInAnnotation YES", "created_at": created})
                boxed = rng.random() < detection_share
                if boxed:
                    meta["box_source"] = "coco:fractures.coco.json"
                width, height = int(rng.integers(1800, 3000)), int(rng.integers(1800, 3000))
                render_path, thumb_path = render_relative_paths(image_id)
                image_rows.append({
                    "id": image_id, "study_id": study_id, "content_hash": _hex("", seed, i, 64),
                    "dataset": "archive", "external_id": f"IMG{i:08d}",
                    "source_path": f"/archive/{2015 + s % 10}/{s % 997:03d}/{image_id}.dcm",
                    "source_format": "dicom", "render_path": render_path, "thumb_path": thumb_path, "width": width, "height": height,
                    "render_width": 1024, "render_height": int(1024 * height / width), "body_region": region,
                    "modality": "DX", "view": view, "laterality": None if region == "chest" else "L",
                    "pixel_spacing_row": 0.14, "pixel_spacing_col": 0.14, "pixel_spacing_source": "imager",
                    "bits_stored": 12, "photometric": "MONOCHROME2", "pixel_hash": _hex("", seed + 1, i, 64),
                    "sop_pseudonym": _hex("P-", seed, i, 32), "meta": meta, "created_at": created})
                ids.append(image_id)
                if boxed and rng.random() < 1 / 3:
                    for _ in range(int(rng.integers(1, 3))):
                        x, y = float(rng.uniform(0, width - 200)), float(rng.uniform(0, height - 200))
                        note_rows.append({"image_id": image_id, "source": "coco:fractures.coco.json", "kind": "box",
                                          "label": "fracture", "source_label": "fracture", "x": x, "y": y,
                                          "w": 150.0, "h": 120.0, "version": 1, "meta": {}, "created_at": created})
                if rng.random() < choice_share:
                    note_rows.append({"image_id": image_id, "source": "csv:labels.csv", "kind": "choice",
                                      "label": "fracture", "annotator": "site", "version": 1,
                                      "meta": {"value": int(rng.random() < 0.3)}, "created_at": created})
            if rng.random() < report_share:
                report_id = _hex("R-", seed, s, 12)
                findings = "No acute osseous abnormality. Soft tissues unremarkable. " * int(rng.integers(1, 4))
                impression = "No acute fracture." if rng.random() < 0.7 else "Nondisplaced fracture."
                report_rows.append({"id": report_id, "study_id": study_id, "content_hash": _hex("", seed + 2, s, 64),
                                    "dataset": "archive", "text": f"FINDINGS: {findings}\nIMPRESSION: {impression}",
                                    "sections": {"FINDINGS": findings, "IMPRESSION": impression},
                                    "expert_codes": [], "image_external_ids": [], "meta": {}, "created_at": created})
                for finding in rng.choice(REPORT_FINDINGS, size=int(rng.integers(1, 4)), replace=False):
                    label_rows.append({"report_id": report_id, "finding": str(finding),
                                       "status": STATUSES[int(rng.choice(3, p=[0.3, 0.6, 0.1]))],
                                       "temporality": "unspecified", "evidence": impression, "start": 0,
                                       "end": len(impression), "section": "IMPRESSION",
                                       "rules_version": "rules-synthetic-1", "created_at": created})
        if start % 5000 == 0 and rng.random() < 0.5:
            errors.append({"run_id": "synthetic", "path": f"/archive/broken-{start}.dcm", "stage": "decode",
                           "reason": "pixel data truncated", "created_at": base})
        with catalog.engine.begin() as connection:  # one transaction per chunk, parents first
            for table, rows, name in ((Study, study_rows, "studies"), (Image, image_rows, "images"),
                                      (Report, report_rows, "reports"), (WeakLabel, label_rows, "weak_labels"),
                                      (Annotation, note_rows, "annotations"),
                                      (IngestError, errors, "ingest_errors")):
                _insert(connection, table, rows)
                counts[name] += len(rows)
        say(f"catalog rows: {counts['images']:,} / {images:,} images")
    seconds = {"rows": round(time.perf_counter() - started, 1)}
    if renders:
        clock = time.perf_counter()
        _link_renders(catalog, ids)
        seconds["renders"] = round(time.perf_counter() - clock, 1)
    if encoder:
        clock = time.perf_counter()
        encoder_dim = _register_encoder(catalog)
        if dim not in (None, encoder_dim):
            raise ValueError(f"dim {dim}: the synthetic encoder embeds in {encoder_dim} dimensions")
        dim = encoder_dim
        seconds["encoder"] = round(time.perf_counter() - clock, 1)
    if embed:
        clock = time.perf_counter()
        counts["embeddings"] = _store_embeddings(catalog, ids, dim or 256, seed, say)
        seconds["embeddings"] = round(time.perf_counter() - clock, 1)
    return {"counts": counts, "seconds": seconds, "encoder": SYNTH_ENCODER if encoder else None, "dim": dim}


def _link_renders(catalog: Catalog, ids: list[str]) -> None:
    """The render and the thumbnail of every image, at ingest's paths: hard links to one 64 x 64 grey PNG per
    folder (no disk per image; one file per folder keeps each file's links under the file system's limit). With
    both present, ``radloop info --check-renders`` finds nothing missing."""
    import os

    from PIL import Image as PILImage

    sources: dict[Path, Path] = {}
    for image_id in ids:
        for relative in render_relative_paths(image_id):
            path = catalog.workspace.absolute(relative)
            if path.parent not in sources:
                path.parent.mkdir(parents=True, exist_ok=True)
                sources[path.parent] = path.parent / "synthetic.png"
                PILImage.new("L", (64, 64), 128).save(sources[path.parent])
            os.link(sources[path.parent], path)


def _register_encoder(catalog: Catalog) -> int:
    """A random-init :data:`SYNTH_ARCH` (64 px) saved in the workspace and registered current as
    :data:`SYNTH_ENCODER`; returns its embedding dimension.

    Every image is embedded already, so it only runs on what is not in the catalog (a query file) and on a round's
    batch (the pre-annotations handed out with it); a round and `radloop embed` load the current encoder."""
    from radloop.ssl.encoders import random_encoder, save_encoder
    from radloop.ssl.pretrain import register_encoder

    bundle = random_encoder(SYNTH_ARCH, 64, seed=0)
    folder = catalog.workspace.models_dir / "encoder-synth"
    saved = save_encoder(bundle.model.backbone, folder, timm_name=SYNTH_ARCH, image_size=64, method="random",
                         version=SYNTH_ENCODER)
    register_encoder(catalog, folder, saved.version, saved.config.model_dump(), {}, make_current=True)
    return int(saved.config.embed_dim)


def _store_embeddings(catalog: Catalog, ids: list[str], dim: int, seed: int, say, shard: int = 4096) -> int:
    """Clustered unit vectors (the shape of real embeddings) in shards of ``shard`` rows, via ``write_shard``."""
    from radloop.core.embeddings import next_shard_index, shard_number, write_shard

    rng = np.random.default_rng(seed + 7)
    index = next_shard_index(catalog, SYNTH_ENCODER)  # then counted here: no lookup per shard
    centres = rng.standard_normal((256, dim)).astype(np.float32)
    for start in range(0, len(ids), shard):
        chunk = ids[start:start + shard]
        vectors = centres[rng.integers(0, len(centres), len(chunk))] + 0.6 * rng.standard_normal(
            (len(chunk), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        path = write_shard(catalog, SYNTH_ENCODER, chunk, vectors.astype(np.float32), normalized=True, index=index)
        index = shard_number(path) + 1
        if (start // shard) % 10 == 0:
            say(f"embeddings: {start + len(chunk):,} / {len(ids):,}")
    return len(ids)


def synthetic_workspace(root: str | Path):
    """A local (SQLite) workspace at ``root`` for the synthetic catalog (never a site's database)."""
    from radloop.core.workspace import local_workspace

    return local_workspace(root)
