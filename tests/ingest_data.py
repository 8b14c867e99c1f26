"""Test inputs for the ingest tests, made at test time from the real data (never copied into the repo)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import data_path

DICOM_DIR = ("dicom_radiographs",)
FRACTURE_DIR = ("bone_fracture_xray_roboflow_v4",)
#: Identifiers inside the real test DICOMs (NEMA WG04 and SIIM); none may reach the catalog or renders.
PATIENT_VALUES = ("CompressedSamples^RG1", "CompressedSamples^RG3", "9RG1", "11RG3", "19400305", "19790408",
                  "FUJI95706", "Philips Medical Systems Hamburg", "N.C.C. HIGASHI",
                  "16d7f894-55d7-4d95-8957-d18987f0e981")


def dicom_file(name: str) -> Path:
    return data_path(*DICOM_DIR, name)


def make_corrupt_dicoms(folder: Path) -> dict[str, Path]:
    """Corrupt variants of the real DICOMs: zero-byte, truncated, pixel data removed, JPEG-LS, text."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    folder.mkdir(parents=True, exist_ok=True)
    source = dicom_file("RG3_UNCR.dcm")
    variants = {name: folder / name for name in
                ("empty.dcm", "truncated_native.dcm", "truncated_j2k.dcm", "no_pixels.dcm", "jpeg_ls.dcm",
                 "notes.dcm")}
    variants["empty.dcm"].write_bytes(b"")
    data = source.read_bytes()
    variants["truncated_native.dcm"].write_bytes(data[: len(data) // 2])
    j2k = dicom_file("RG1_J2KI.dcm").read_bytes()
    variants["truncated_j2k.dcm"].write_bytes(j2k[: len(j2k) // 2])
    dataset = pydicom.dcmread(source)
    del dataset.PixelData
    dataset.save_as(variants["no_pixels.dcm"])
    dataset = pydicom.dcmread(source)
    dataset.file_meta.TransferSyntaxUID = JPEGLSLossless
    dataset.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(64)])
    dataset["PixelData"].VR = "OB"
    dataset.save_as(variants["jpeg_ls.dcm"])
    variants["notes.dcm"].write_text("ward round notes, not an image\n" * 20)
    return variants


def fracture_subset(target: Path, count: int = 20) -> tuple[Path, Path]:
    """Copy ``count`` fracture-set JPEGs with COCO boxes (some with YOLO polygons) into a YOLO + COCO layout.

    Returns (yolo_root, coco_json); the COCO json lists the copied images only.
    """
    root = data_path(*FRACTURE_DIR)
    coco = json.loads((root / "coco" / "train_annotations.coco.json").read_text())
    boxed = {annotation["image_id"] for annotation in coco["annotations"] if annotation["category_id"] != 0}
    labels_dir = root / "yolo" / "train" / "labels"
    chosen = []
    for image in sorted(coco["images"], key=lambda entry: entry["file_name"]):
        label = labels_dir / Path(image["file_name"]).with_suffix(".txt").name
        if image["id"] in boxed and label.is_file() and label.read_text().strip():
            chosen.append(image)
        if len(chosen) == count - 2:
            break
    chosen += [image for image in sorted(coco["images"], key=lambda entry: entry["file_name"])
               if image["id"] not in boxed][:2]  # two images without boxes
    yolo = target / "yolo"
    (yolo / "train" / "images").mkdir(parents=True)
    (yolo / "train" / "labels").mkdir(parents=True)
    shutil.copy(root / "yolo" / "data.yaml", yolo / "data.yaml")
    for image in chosen:
        shutil.copy(root / "yolo" / "train" / "images" / image["file_name"], yolo / "train" / "images")
        label = labels_dir / Path(image["file_name"]).with_suffix(".txt").name
        if label.is_file():
            shutil.copy(label, yolo / "train" / "labels")
    ids = {image["id"] for image in chosen}
    subset = dict(coco, images=chosen, annotations=[a for a in coco["annotations"] if a["image_id"] in ids])
    coco_path = target / "subset.coco.json"
    coco_path.write_text(json.dumps(subset))
    return yolo, coco_path


def committed_images(database: Path) -> int:
    """The images a SQLite catalog holds now, read without a lock (0 while it cannot be read yet)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_for_images(database: Path, process, at_least: int = 6, timeout: float = 60) -> None:
    """Wait until the catalog holds ``at_least`` images, ``process`` (a running ingest) ends, or ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while committed_images(database) < at_least and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
