"""A small catalog for Label Studio tests: real fracture radiographs rendered to 8-bit PNGs at test time.

Study/Image/Report/WeakLabel/Round/Selection rows are inserted directly (the ingest and round code are
other parts); renders are written into the test's workspace, never into the repository.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from conftest import data_path

FRACTURE_IMAGES = ("bone_fracture_xray_roboflow_v4", "yolo", "train", "images")


def build_round_catalog(workspace_root: Path, n_images: int = 4, *, scale_first: int = 2, round_number: int = 1,
                        database_url: str | None = None):
    """A catalog with ``n_images`` cases, one report per study (with weak labels) and one round selecting all.

    The first image pretends its original was ``scale_first`` times larger than its render (as ingest does
    for > 2048 px originals), to check that percent boxes map to original pixels.

    ``database_url`` overrides the catalog's URL (default: as the CLI resolves it).

    Returns:
        (catalog, round_id, image_ids)
    """
    from PIL import Image as PILImage

    from radloop.core.catalog import Catalog
    from radloop.core.schema import Image, Report, Round, Selection, Study, WeakLabel
    from radloop.core.workspace import Workspace, resolve_workspace

    sources = sorted(data_path(*FRACTURE_IMAGES).glob("*.jpg"))[:n_images]
    workspace = resolve_workspace(workspace_root)
    if database_url:
        workspace = Workspace(root=workspace.root, database_url=database_url)
    workspace.ensure()
    catalog = Catalog.open(workspace)
    image_ids = []
    with catalog.session() as session:
        round_row = Round(number=round_number, strategy="uncertainty", budget=n_images, task="findings", state="selected")
        session.add(round_row)
        session.flush()
        for index, source in enumerate(sources):
            content = source.read_bytes()
            digest = hashlib.sha256(content).hexdigest()
            image_id, study_id = f"I-{digest[:16]}", f"S-{digest[16:32]}"
            render = workspace.renders_dir / f"{image_id}.png"
            with PILImage.open(source) as original:
                gray = original.convert("L")
                gray.save(render)
                render_w, render_h = gray.size
            scale = scale_first if index == 0 else 1
            session.add(Study(id=study_id, dataset="test-fracture", body_region="elbow", modality="DX", split="train"))
            session.flush()  # the tables have foreign keys but no relationships: insert parents first
            session.add(Image(id=image_id, study_id=study_id, content_hash=digest, dataset="test-fracture",
                              external_id=source.stem, source_path=str(source), source_format="jpeg",
                              render_path=workspace.relative(render), thumb_path=workspace.relative(render),
                              width=render_w * scale, height=render_h * scale, render_width=render_w,
                              render_height=render_h, body_region="elbow", modality="DX"))
            report_id = f"R-{digest[32:48]}"
            text = ("FINDINGS: Transverse fracture of the distal humerus. No dislocation." if index % 2 == 0
                    else "FINDINGS: No acute fracture. Orthopedic hardware in place.")
            session.add(Report(id=report_id, study_id=study_id, content_hash=digest[:32], dataset="test", text=text,
                               sections={"FINDINGS": text.split(": ", 1)[1]}))
            session.flush()
            if index % 2 == 0:
                session.add(WeakLabel(report_id=report_id, finding="fracture", status="positive",
                                      rules_version="test-rules-1", evidence="fracture"))
                session.add(WeakLabel(report_id=report_id, finding="dislocation", status="negative",
                                      rules_version="test-rules-1", evidence="No dislocation"))
            else:
                session.add(WeakLabel(report_id=report_id, finding="fracture", status="negative",
                                      rules_version="test-rules-1", evidence="No acute fracture"))
                session.add(WeakLabel(report_id=report_id, finding="device", status="positive",
                                      rules_version="test-rules-1", evidence="hardware"))
            session.add(Selection(round_id=round_row.id, image_id=image_id, rank=index, score=0.9 - 0.1 * index,
                                  strategy="uncertainty", reason="test"))
            image_ids.append(image_id)
        round_id = round_row.id
    return catalog, round_id, image_ids


def add_round(catalog, image_ids: list[str], number: int) -> int:
    """Another round selecting ``image_ids`` (already in the catalog)."""
    from radloop.core.schema import Round, Selection

    with catalog.session() as session:
        round_row = Round(number=number, strategy="random", budget=len(image_ids), task="findings", state="selected")
        session.add(round_row)
        session.flush()
        for rank, image_id in enumerate(image_ids):
            session.add(Selection(round_id=round_row.id, image_id=image_id, rank=rank, score=None,
                                  strategy="random", reason="test"))
        return round_row.id
