"""A rounds workspace for tests: real fracture radiographs and a small random-init encoder registered as current."""

from __future__ import annotations

from conftest import data_path


def build_rounds_catalog(root, database_url: str, count: int):
    """``count`` fracture radiographs of the Roboflow COCO set ingested into ``root`` and an untrained ResNet-18
    (64 px) registered as the current encoder; returns the open catalog (the caller disposes of it)."""
    from radloop.core.catalog import Catalog
    from radloop.core.ingest import ingest_paths
    from radloop.core.workspace import Workspace
    from radloop.ssl.encoders import random_encoder, save_encoder
    from radloop.ssl.pretrain import register_encoder

    coco = data_path("bone_fracture_xray_roboflow_v4", "coco", "train_annotations.coco.json")
    images = data_path("bone_fracture_xray_roboflow_v4", "yolo", "train", "images")
    workspace = Workspace(root=root, database_url=database_url)
    catalog = Catalog.open(workspace)
    ingest_paths(catalog, [coco], images_dir=images, dataset="fracture", workers=1, limit=count, progress=False)
    bundle = random_encoder("resnet18", 64, seed=0)
    folder = workspace.models_dir / "encoder"
    saved = save_encoder(bundle.model.backbone, folder, timm_name="resnet18", image_size=64, method="random",
                         version="enc-test-resnet18")
    register_encoder(catalog, folder, saved.version, saved.config.model_dump(), {}, make_current=True)
    return catalog
