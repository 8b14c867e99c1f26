"""A re-ingest restores lost or damaged renders of catalogued images (walk 20f).

Before this, a render deleted (a disk clean-up, a workspace copied without ``renders/``) or damaged (a crash before
the data reached the disk) stayed lost: a re-run of the same inputs counted the images as catalogued and skipped
them.  Inputs: real fracture-set JPEGs with their COCO boxes (copied into ``tmp_path`` at test time) and a small
synthetic DICOM, so that both decoders restore.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select
from typer.testing import CliRunner

import radloop.core.ingest_worker as ingest_worker
from dicom_synthetic import dx_part10_file
from ingest_data import fracture_subset
from radloop.app.cli import build_app
from radloop.core.catalog_info import catalog_info
from radloop.core.ingest import ingest_paths
from radloop.core.render import render_problem
from radloop.core.schema import Annotation, Image, IngestError


def _inputs(tmp_path):
    """(COCO json, its images folder, a folder with one DICOM)."""
    yolo, coco = fracture_subset(tmp_path / "fracture", count=6)
    dicoms = tmp_path / "dicoms"
    dicoms.mkdir()
    dx_part10_file(dicoms / "hand.dcm", shape=(40, 56))
    return coco, yolo / "train" / "images", dicoms


def _ingest(catalog, coco, images, dicoms, **options):
    return ingest_paths(catalog, [coco, dicoms], images_dir=images, progress=False, **options)


def _rows(catalog) -> list[tuple]:
    with catalog.session() as session:
        return [tuple(row) for row in session.execute(
            select(Image.id, Image.content_hash, Image.pixel_hash, Image.study_id, Image.render_path, Image.thumb_path,
                   Image.width, Image.height, Image.render_width, Image.render_height, Image.source_path)
            .order_by(Image.id))]


def _files(catalog) -> dict[str, bytes]:
    """Every render and thumbnail file of the workspace, by workspace-relative path."""
    root = catalog.workspace.root
    return {str(path.relative_to(root)): path.read_bytes()
            for folder in ("renders", "thumbs") for path in sorted((root / folder).rglob("*.png"))}


def _annotation_count(catalog) -> int:
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(Annotation))


def test_rerun_restores_deleted_empty_and_cut_renders_without_touching_the_catalog(tmp_path, catalog):
    coco, images, dicoms = _inputs(tmp_path)
    first = _ingest(catalog, coco, images, dicoms, workers=1)
    assert first.images_added == 7 and first.errors == 0 and first.renders_restored == 0
    rows, files, boxes = _rows(catalog), _files(catalog), _annotation_count(catalog)
    assert len(files) == 14
    root = catalog.workspace.root
    dicom_row = next(row for row in rows if row[-1].endswith("hand.dcm"))
    jpeg_rows = [row for row in rows if row is not dicom_row]
    (root / dicom_row[4]).unlink()  # the DICOM's render deleted
    (root / jpeg_rows[0][5]).unlink()  # a thumbnail deleted
    (root / jpeg_rows[1][4]).write_bytes(b"")  # zero bytes (a crash before the data reached the disk)
    cut = root / jpeg_rows[2][4]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # an interrupted copy
    (root / jpeg_rows[3][4]).write_bytes(bytes(4096))  # zero-filled

    again = _ingest(catalog, coco, images, dicoms, workers=2)

    assert again.renders_restored == 5 and again.renders_not_restored == 0
    assert again.images_added == 0 and again.images_skipped_existing == 7 and again.errors == again.warnings == 0
    assert _rows(catalog) == rows and _annotation_count(catalog) == boxes  # ids, hashes, paths, boxes unchanged
    assert _files(catalog) == files  # the same bytes as the renders ingest made first
    with catalog.session() as session:
        assert session.scalar(select(func.count()).select_from(IngestError)) == 0
    log = json.loads((root / "logs" / f"ingest-{again.run_id}.json").read_text())
    assert log["renders_restored"] == 5


def test_rerun_with_whole_renders_rewrites_and_decodes_nothing(tmp_path, catalog):
    coco, images, dicoms = _inputs(tmp_path)
    _ingest(catalog, coco, images, dicoms, workers=1)
    root = catalog.workspace.root
    times = {path: (root / path).stat().st_mtime_ns for path in _files(catalog)}
    again = _ingest(catalog, coco, images, dicoms, workers=1)
    assert again.renders_restored == again.renders_not_restored == 0
    assert "decode" not in again.stage_seconds and "render" not in again.stage_seconds
    assert "render_check" in again.stage_seconds  # the check's cost is reported
    assert {path: (root / path).stat().st_mtime_ns for path in times} == times


def test_render_whose_source_is_gone_is_reported_and_the_run_does_not_fail(tmp_path, catalog):
    coco, images, dicoms = _inputs(tmp_path)
    _ingest(catalog, coco, images, dicoms, workers=1)
    rows = {row[-1]: row for row in _rows(catalog)}
    root = catalog.workspace.root
    dicom_path = str(dicoms / "hand.dcm")
    gone = rows[dicom_path]
    (root / gone[4]).unlink()
    os.remove(dicom_path)  # the source is gone too
    kept = next(row for path, row in rows.items() if path != dicom_path)
    (root / kept[4]).unlink()

    result = CliRunner().invoke(build_app(), [
        "ingest", str(coco), str(dicoms), "--images", str(images), "--workspace", str(root), "--json",
        "--workers", "1"])

    assert result.exit_code == 0, result.output  # a warning, not a failure
    summary = json.loads(result.stdout)
    assert summary["renders_restored"] == 1 and summary["renders_not_restored"] == 1
    assert summary["errors"] == 0 and summary["warnings"] == 1
    sample = summary["error_samples"][0]
    assert (sample["path"], sample["stage"], sample["severity"]) == (dicom_path, "render", "warning")
    assert gone[0] in sample["reason"] and "missing" in sample["reason"] and "its file is gone" in sample["reason"]
    assert render_problem(root / kept[4]) is None and render_problem(root / gone[4]) == "missing"
    # every run says it again, replacing what the one before said (one row per image, not one per run)
    again = _ingest(catalog, coco, images, dicoms, workers=1)
    assert again.renders_not_restored == 1 and again.errors == 0
    with catalog.session() as session:
        warnings = session.scalars(select(IngestError).where(IngestError.stage == "render")).all()
    assert [(row.path, row.run_id) for row in warnings] == [(dicom_path, again.run_id)]
    assert warnings[0].reason.startswith("warning: ")
    info = catalog_info(catalog, check_renders=True)
    assert info["images_with_render_problem"] == 1 and gone[0] in info["render_problem_samples"][0]
    assert info["ingest_warnings_by_stage"] == {"render": 1}


def test_image_not_among_the_inputs_is_named_with_what_to_do(tmp_path, catalog):
    coco, images, dicoms = _inputs(tmp_path)
    _ingest(catalog, coco, images, dicoms, workers=1)
    jpegs = sorted((row for row in _rows(catalog) if row[-1].endswith(".jpg")), key=lambda row: row[-1])
    (catalog.workspace.root / jpegs[1][4]).unlink()  # the second file by path: --limit 1 does not read it
    partial = ingest_paths(catalog, [images], dataset="subset", progress=False, workers=1, limit=1)
    assert partial.images_skipped_existing == 1 and partial.renders_restored == 0
    assert partial.renders_not_restored == 1 and partial.errors == 0
    reason = partial.error_samples[0]["reason"]
    assert jpegs[1][0] in reason and "not among this run's inputs (ingest it to restore the render)" in reason
    full = _ingest(catalog, coco, images, dicoms, workers=1)
    assert full.renders_restored == 1 and full.renders_not_restored == 0 and full.warnings == 0
    with catalog.session() as session:  # the warning is gone with the problem (its path was read again)
        assert session.scalar(select(func.count()).select_from(IngestError)) == 0


def test_render_of_a_file_changed_or_unreadable_is_named_so(tmp_path, catalog):
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(5)
    PILImage.fromarray(rng.integers(0, 256, size=(48, 64), dtype=np.uint8)).save(folder / "a.png")
    ingest_paths(catalog, [folder], progress=False, workers=1)
    (old,) = _rows(catalog)
    (catalog.workspace.root / old[4]).unlink()
    PILImage.fromarray(rng.integers(0, 256, size=(48, 64), dtype=np.uint8)).save(folder / "a.png")  # overwritten
    again = ingest_paths(catalog, [folder], progress=False, workers=1)
    assert again.images_added == 1 and again.renders_restored == 0 and again.renders_not_restored == 1
    assert "its file has changed since it was catalogued" in again.error_samples[0]["reason"]
    (folder / "a.png").write_bytes(b"")  # now it cannot be read at all
    unreadable = ingest_paths(catalog, [folder], progress=False, workers=1)
    assert unreadable.errors == 1 and unreadable.renders_not_restored == 1
    reasons = [sample["reason"] for sample in unreadable.error_samples if sample["stage"] == "render"]
    assert len(reasons) == 1 and old[0] in reasons[0] and "could not be read in this run" in reasons[0]


def test_verify_renders_finds_damage_inside_a_file_that_the_quick_check_misses(tmp_path, catalog):
    coco, images, dicoms = _inputs(tmp_path)
    _ingest(catalog, coco, images, dicoms, workers=1)
    files = _files(catalog)
    relative = next(path for path in files if path.startswith("renders/"))
    damaged = bytearray(files[relative])
    damaged[len(damaged) // 2] ^= 0x10  # one bit flipped inside the pixel data
    (catalog.workspace.root / relative).write_bytes(bytes(damaged))
    quick = _ingest(catalog, coco, images, dicoms, workers=1)
    assert quick.renders_restored == 0  # the ends of the file are whole
    result = CliRunner().invoke(build_app(), [
        "ingest", str(coco), str(dicoms), "--images", str(images), "--workspace", str(catalog.workspace.root),
        "--json", "--workers", "1", "--verify-renders"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["renders_restored"] == 1
    assert _files(catalog) == files


def test_recorded_duplicate_file_gets_no_render_of_its_own(tmp_path, catalog):
    folder = tmp_path / "pngs"
    folder.mkdir()
    pixels = np.random.default_rng(3).integers(0, 256, size=(48, 64), dtype=np.uint8)
    PILImage.fromarray(pixels).save(folder / "a.png", compress_level=1)
    PILImage.fromarray(pixels).save(folder / "b.png", compress_level=9)  # other bytes, the same pixels
    first = ingest_paths(catalog, [folder], progress=False, workers=1)
    assert first.images_added == 1 and first.images_skipped_duplicate == 1
    files = _files(catalog)
    again = ingest_paths(catalog, [folder], progress=False, workers=1)
    assert again.renders_restored == 0 and _files(catalog) == files  # none made for the duplicate's own id


def test_restore_writes_to_the_catalog_paths_and_sizes(tmp_path, catalog):
    coco, images, dicoms = _inputs(tmp_path)
    _ingest(catalog, coco, images, dicoms, workers=1)
    root = catalog.workspace.root
    row = _rows(catalog)[0]
    with catalog.session() as session:
        image = session.get(Image, row[0])
        # a row whose files live elsewhere (moved by hand) and whose render size is stale
        image.render_path, image.thumb_path = "renders/moved/render.png", "thumbs/moved/thumb.png"
        image.render_width = 1
    for relative in (row[4], row[5]):
        (root / relative).unlink()
    again = _ingest(catalog, coco, images, dicoms, workers=2)
    assert again.renders_restored == 1
    assert render_problem(root / "renders/moved/render.png", decode=True) is None
    assert render_problem(root / "thumbs/moved/thumb.png", decode=True) is None
    assert not (root / row[4]).exists()  # not at the path the catalog does not name
    with catalog.session() as session:
        assert session.get(Image, row[0]).render_width == row[8]


def test_render_that_cannot_be_made_again_is_an_error(tmp_path, catalog, monkeypatch):
    coco, images, dicoms = _inputs(tmp_path)
    _ingest(catalog, coco, images, dicoms, workers=1)
    row = _rows(catalog)[0]
    (catalog.workspace.root / row[4]).unlink()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ingest_worker, "render_files", full_disk)
    again = _ingest(catalog, coco, images, dicoms, workers=1)
    assert again.errors == 1 and again.errors_by_stage == {"render": 1} and again.renders_restored == 0
    assert row[0] in again.error_samples[0]["reason"] and "No space left" in again.error_samples[0]["reason"]
    assert again.images_skipped_existing == 7 and again.images_added == 0


def test_info_counts_missing_renders_only_when_asked(tmp_path, catalog):
    coco, images, dicoms = _inputs(tmp_path)
    _ingest(catalog, coco, images, dicoms, workers=1)
    assert "images_with_render_problem" not in catalog_info(catalog)
    assert catalog_info(catalog, check_renders=True)["images_with_render_problem"] == 0
    row = _rows(catalog)[0]
    (catalog.workspace.root / row[5]).write_bytes(b"")
    runner = CliRunner()
    result = runner.invoke(build_app(), ["info", "--check-renders", "--json", "--workspace",
                                         str(catalog.workspace.root)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["images_with_render_problem"] == 1
    assert info["render_problem_samples"] == [f"{row[0]}: {row[5]} empty (0 bytes) (source {row[-1]})"]
    result = runner.invoke(build_app(), ["info", "--check-renders", "--workspace", str(catalog.workspace.root)])
    assert result.exit_code == 0 and "empty (0 bytes)" in result.output


def test_a_new_folder_added_to_a_dataset_does_not_check_the_other_folders_renders(tmp_path, catalog):
    """A daily batch ingested into a large dataset (`--dataset archive`) must not look at every render the
    dataset already has: only images catalogued from under the run's own input folders are checked."""
    rng = np.random.default_rng(11)
    first, second = tmp_path / "day1", tmp_path / "day2"
    for folder in (first, second):
        folder.mkdir()
        PILImage.fromarray(rng.integers(0, 256, size=(48, 64), dtype=np.uint8)).save(folder / "a.png")
    ingest_paths(catalog, [first], dataset="archive", progress=False, workers=1)
    (old,) = _rows(catalog)
    (catalog.workspace.root / old[4]).unlink()  # day 1's render lost, its file gone too
    (first / "a.png").unlink()
    added = ingest_paths(catalog, [second], dataset="archive", progress=False, workers=1)
    assert added.images_added == 1 and added.renders_not_restored == 0 and added.warnings == 0
    again = ingest_paths(catalog, [first], dataset="archive", progress=False, workers=1)  # day 1's folder again
    assert again.renders_not_restored == 1 and "its file is gone" in again.error_samples[0]["reason"]
