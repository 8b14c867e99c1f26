"""End-to-end ingest of the real DICOMs plus corrupt variants: errors, idempotency, de-identification, CLI."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from PIL import Image as PILImage
from sqlalchemy import func, select
from typer.testing import CliRunner

from conftest import data_path
from ingest_data import DICOM_DIR, PATIENT_VALUES, make_corrupt_dicoms
from radloop.app.cli import build_app
from radloop.core.catalog import Catalog
from radloop.core.ingest import ingest_paths
from radloop.core.schema import DuplicateSource, Image, IngestError, Study


def _inputs(tmp_path):
    source = data_path(*DICOM_DIR)
    folder = tmp_path / "archive"
    shutil.copytree(source, folder / "good")
    make_corrupt_dicoms(folder / "bad")
    png = data_path("iu_xray_images", "CXR3_IM-1384-1001.png")
    shutil.copy(png, folder / "good" / png.name)
    data = png.read_bytes()
    (folder / "bad" / "broken.png").write_bytes(data[: len(data) // 3])
    return folder


def test_ingest_records_every_bad_file_and_keeps_going(tmp_path, catalog):
    folder = _inputs(tmp_path)
    summary = ingest_paths(catalog, [folder], workers=2, progress=False)
    # 6 DICOMs + 1 PNG, of which RG3_UNCR has the pixels of RG3_J2KR (lossless J2K): one image, one duplicate
    assert summary.images_added == 6 and summary.images_skipped_duplicate == 1
    assert summary.errors == 7 and summary.failed
    assert summary.files_ignored == 2  # README.txt, LICENSE...txt
    with catalog.session() as session:
        errors = {row.path.rsplit("/", 1)[-1]: row for row in session.scalars(select(IngestError))}
        images = session.scalars(select(Image)).all()
        splits = {study.id: study.split for study in session.scalars(select(Study))}
    assert set(errors) == {"empty.dcm", "truncated_native.dcm", "truncated_j2k.dcm", "no_pixels.dcm",
                           "jpeg_ls.dcm", "notes.dcm", "broken.png"}
    assert "JPEG-LS" in errors["jpeg_ls.dcm"].reason and errors["jpeg_ls.dcm"].stage == "decode"
    assert "truncated" in errors["broken.png"].reason
    assert "empty" in errors["empty.dcm"].reason and errors["empty.dcm"].stage == "read"
    for image in images:
        assert image.id == "I-" + image.content_hash[:16] and image.study_id.startswith("S-")
        with PILImage.open(catalog.workspace.absolute(image.render_path)) as render:
            assert render.mode == "L" and render.size == (image.render_width, image.render_height)
            assert render.size == (image.width, image.height)  # all inputs <= 2048 px
        with PILImage.open(catalog.workspace.absolute(image.thumb_path)) as thumb:
            assert max(thumb.size) == 256
        assert splits[image.study_id] in ("train", "val", "test")
    by_name = {image.external_id: image for image in images}
    assert by_name["RG3_J2KR"].laterality == "R" and by_name["RG1_J2KI"].body_region == "chest"
    assert by_name["RG3_J2KR"].body_region == "leg"  # BodyPartExamined EXTREMITY, processing "LOWER LEG"
    assert by_name["RG1_J2KI"].bits_stored == 15 and by_name["RG3_J2KR"].bits_stored == 10
    # lossy RG3 is another image of the same DICOM study (same StudyInstanceUID pseudonym)
    assert by_name["RG3_J2KI"].study_id == by_name["RG3_J2KR"].study_id != by_name["RG1_J2KR"].study_id
    # the uncompressed RG3 is the same picture as the lossless one (the first by path is kept), its path kept
    assert "RG3_UNCR" not in by_name
    with catalog.session() as session:
        duplicates = session.scalars(select(DuplicateSource)).all()
    assert [(Path(d.source_path).name, d.image_id) for d in duplicates] == [("RG3_UNCR.dcm", by_name["RG3_J2KR"].id)]
    assert summary.duplicate_samples[0]["duplicate_of"] == by_name["RG3_J2KR"].id
    assert len(list(catalog.workspace.renders_dir.rglob("*.png"))) == 6  # the duplicate's render was removed


def test_reingest_is_idempotent(tmp_path, catalog):
    folder = _inputs(tmp_path)
    first = ingest_paths(catalog, [folder], workers=2, progress=False)
    renders = sorted(p.name for p in catalog.workspace.renders_dir.rglob("*.png"))
    second = ingest_paths(catalog, [folder, folder / "good" / "RG1_J2KI.dcm"], workers=1, progress=False)
    assert first.images_added == 6 and first.images_skipped_duplicate == 1
    # the recorded duplicate is skipped by its file hash like a catalogued file, without decoding it again
    assert second.images_added == 0 and second.images_skipped_existing == 7 and second.images_skipped_duplicate == 0
    assert second.studies_added == 0
    counts = catalog.counts()
    assert counts["images"] == 6 and counts["studies"] == first.studies_added
    assert sorted(p.name for p in catalog.workspace.renders_dir.rglob("*.png")) == renders
    with catalog.session() as session:
        assert session.scalar(select(func.count(func.distinct(Image.content_hash)))) == 6
        assert session.scalar(select(func.count(DuplicateSource.id))) == 1
        # the bad files still fail: their errors are the second run's, not counted twice
        assert session.scalar(select(func.count(IngestError.id))) == second.errors == first.errors == 7
        assert set(session.scalars(select(IngestError.run_id))) == {second.run_id}


def test_fixed_files_and_a_coco_json_without_its_images(tmp_path, catalog):
    """A COCO json whose images are not where it is read from gives one error that names --images; once the
    images are found (or a broken file is replaced) the catalog no longer counts the old errors."""
    coco = data_path("bone_fracture_xray_roboflow_v4", "coco", "train_annotations.coco.json")
    images = data_path("bone_fracture_xray_roboflow_v4", "yolo", "train", "images")
    wrong = ingest_paths(catalog, [coco], images_dir=tmp_path, progress=False, workers=1, limit=3)
    assert wrong.errors == 1 and "pass --images" in wrong.error_samples[0]["reason"]
    right = ingest_paths(catalog, [coco], images_dir=images, progress=False, workers=1, limit=3)
    assert right.errors == 0 and right.images_added == 3
    png = data_path("iu_xray_images", "CXR3_IM-1384-1001.png")
    broken = tmp_path / "scan.png"
    broken.write_bytes(png.read_bytes()[:2000])
    assert ingest_paths(catalog, [broken], progress=False, workers=1).errors == 1
    broken.write_bytes(png.read_bytes())
    assert ingest_paths(catalog, [broken], progress=False, workers=1).images_added == 1
    with catalog.session() as session:
        assert session.scalar(select(func.count(IngestError.id))) == 0


def test_no_patient_identifier_reaches_the_workspace(tmp_path, catalog):
    folder = _inputs(tmp_path)
    ingest_paths(catalog, [folder], workers=2, progress=False)
    import pydicom

    study_uids = {pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
                  for path in (folder / "good").glob("*.dcm")}
    catalog.dispose()
    with sqlite3.connect(catalog.workspace.root / "catalog.sqlite") as connection:  # fold the WAL into the file
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    needles = [value.encode() for value in (*PATIENT_VALUES, *study_uids)]
    files = [path for path in catalog.workspace.root.rglob("*") if path.is_file()]
    assert any(path.name == "catalog.sqlite" for path in files) and len(files) > 10
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle not in content, f"{needle!r} found in {path}"


def test_cli_ingest_json_summary_exit_codes_and_info(tmp_path):
    runner = CliRunner()
    app = build_app()
    workspace = tmp_path / "ws"
    good = data_path(*DICOM_DIR)
    result = runner.invoke(app, ["ingest", str(good), "--workspace", str(workspace), "--json", "--workers", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images_added"] == 5 and summary["images_skipped_duplicate"] == 1 and summary["errors"] == 0
    bad = tmp_path / "bad"
    make_corrupt_dicoms(bad)
    result = runner.invoke(app, ["ingest", str(bad), "--workspace", str(workspace), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"] == 6
    result = runner.invoke(app, ["info", "--workspace", str(workspace), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["counts"]["images"] == 5 and info["counts"]["ingest_errors"] == 6
    assert info["images_by_body_region"] == {"chest": 3, "leg": 2}  # RG3: EXTREMITY, "LOWER LEG" processing
    result = runner.invoke(app, ["ingest", str(tmp_path / "missing"), "--workspace", str(workspace)])
    assert result.exit_code == 2 and "no such file" in result.output


def test_limit_takes_the_first_images_by_path(tmp_path, catalog):
    summary = ingest_paths(catalog, [data_path(*DICOM_DIR)], workers=1, progress=False, limit=2)
    assert summary.images_added == 2
    with catalog.session() as session:
        names = sorted(session.scalars(select(Image.external_id)))
    assert names == ["RG1_J2KI", "RG1_J2KR"]


def test_same_catalog_reopened_sees_no_duplicates(tmp_path, workspace):
    first = Catalog.open(workspace)
    ingest_paths(first, [data_path(*DICOM_DIR)], workers=1, progress=False, limit=1)
    first.dispose()
    second = Catalog.open(workspace)
    summary = ingest_paths(second, [data_path(*DICOM_DIR)], workers=1, progress=False, limit=1)
    assert summary.images_skipped_existing == 1 and second.counts()["images"] == 1
    second.dispose()


def test_bench_ingest_json_keys(tmp_path, monkeypatch):
    # the benchmark's scratch catalog is SQLite whatever the site database is (this URL would fail to connect)
    monkeypatch.setenv("RADLOOP_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    folder = tmp_path / "bench"
    folder.mkdir()
    for name in ("RG3_J2KI.dcm", "siim_cr_chest_pa_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"):
        shutil.copy(data_path(*DICOM_DIR, name), folder / name)
    result = CliRunner().invoke(build_app(), ["bench", "ingest", str(folder), "--workers", "1", "--repeat", "1",
                                              "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["n_images"] == 2 and figures["images_added"] == 2 and figures["workers"] == 1
    assert figures["images_per_s"] > 0 and figures["decode_bound_per_s"] > 0
    assert abs(figures["ratio"] - figures["images_per_s"] / figures["decode_bound_per_s"]) < 0.01
    assert {"images_per_s_per_worker", "decode_bound_per_s_per_worker", "cpu_ratio"} <= set(figures)


def test_cli_path_mistakes_are_one_line_not_a_traceback(tmp_path):
    """The console script turns an unusable path (a file given as the workspace) into one error line."""
    import subprocess
    import sys

    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("x")
    png = data_path("iu_xray_images", "CXR3_IM-1384-1001.png")
    run = subprocess.run([sys.executable, "-m", "radloop.app.cli", "ingest", str(png), "-w", str(not_a_folder)],
                         capture_output=True, text=True, timeout=120)
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    assert "the workspace is a file, not a folder" in output and str(not_a_folder) in output
    assert "Traceback" not in output and not_a_folder.read_text() == "x"


def test_cli_ingest_of_an_empty_folder_says_nothing_was_found(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(build_app(), ["ingest", str(empty), "-w", str(tmp_path / "ws")])
    assert result.exit_code == 0 and "nothing to ingest was found" in result.output
