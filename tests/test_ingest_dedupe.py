"""Ingest recognises the same image in another file: re-saved DICOMs (other VR / transfer syntax / header),
the same pixels under new UIDs, re-compressed PNGs; and reports a SOP Instance UID re-sent with other pixels.

Inputs are small synthetic DICOMs (pydicom) and PNGs (Pillow) written into ``tmp_path``.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, generate_uid
from sqlalchemy import delete, func, select, text

from radloop.core.catalog import SCHEMA_VERSION, Catalog
from radloop.core.deid import content_hash, image_id_for_hash, pixel_hash
from radloop.core.ingest import ingest_paths
from radloop.core.schema import Annotation, DuplicateSource, Image, IngestError


def _radiograph(seed: int = 0, shape=(40, 56)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, size=shape, dtype=np.uint16)


def _dicom(pixels: np.ndarray, *, sop_uid: str | None = None, study_uid: str | None = None,
           photometric: str = "MONOCHROME2", **attributes) -> Dataset:
    """A 12-bit DX instance around ``pixels`` (H, W) uint16, explicit VR little endian."""
    dataset = Dataset()
    dataset.preamble = b"\0" * 128  # a Part 10 file (DICM marker), as archives hold them
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid or generate_uid(), generate_uid()
    dataset.Modality, dataset.BodyPartExamined, dataset.PatientID = "DX", "HAND", "PAT-DEDUPE-1"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation, dataset.PixelRepresentation = 1, photometric, 0
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.WindowCenter, dataset.WindowWidth = 2048, 4096
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    for key, value in attributes.items():
        setattr(dataset, key, value)
    return dataset


def _implicit_copy(source, path) -> None:
    """``source`` re-saved with implicit VR little endian (other bytes, the same instance)."""
    copy = pydicom.dcmread(source)
    copy.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    pydicom.dcmwrite(path, copy, implicit_vr=True, little_endian=True)


def _image_count(catalog) -> int:
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(Image))


def _render_files(catalog) -> list[str]:
    root = catalog.workspace.root
    return sorted(str(path.relative_to(root)) for folder in ("renders", "thumbs")
                  for path in (root / folder).rglob("*.png"))


def _assert_renders_match_catalog(catalog) -> None:
    """No render or thumbnail is left behind for a file that did not become an image."""
    with catalog.session() as session:
        expected = sorted(path for image in session.scalars(select(Image)) for path in (image.render_path,
                                                                                        image.thumb_path))
    assert _render_files(catalog) == expected


def test_one_instance_re_saved_in_other_encodings_is_one_image(tmp_path, catalog):
    """Explicit VR, implicit VR, RLE lossless and an edited header: four files, one image (with 2 workers and
    one image per batch, so the copies are matched across batches and workers)."""
    folder = tmp_path / "archive"
    folder.mkdir()
    original = _dicom(_radiograph())
    original.save_as(folder / "a_explicit.dcm")
    _implicit_copy(folder / "a_explicit.dcm", folder / "b_implicit.dcm")
    compressed = pydicom.dcmread(folder / "a_explicit.dcm")
    compressed.compress(RLELossless)
    compressed.save_as(folder / "c_rle.dcm")
    edited = pydicom.dcmread(folder / "a_explicit.dcm")
    edited.WindowCenter, edited.WindowWidth, edited.BodyPartExamined = 1000, 500, "WRIST"
    edited.save_as(folder / "d_edited_header.dcm")
    files = sorted(folder.iterdir())
    assert len({path.read_bytes() for path in files}) == 4  # four different files

    summary = ingest_paths(catalog, [folder], workers=2, batch_size=1, progress=False)
    assert summary.images_found == 4 and summary.errors == 0 and summary.warnings == 0
    assert summary.images_added == 1 and summary.images_skipped_duplicate == 3
    assert _image_count(catalog) == 1
    with catalog.session() as session:
        image = session.scalars(select(Image)).one()
        duplicates = session.scalars(select(DuplicateSource)).all()
    assert image.pixel_hash == pixel_hash(_radiograph()) and image.sop_pseudonym.startswith("SOP-")
    paths = sorted([image.source_path, *(duplicate.source_path for duplicate in duplicates)])
    assert paths == [str(path) for path in files]  # nothing lost: every path is recorded
    assert {duplicate.image_id for duplicate in duplicates} == {image.id}
    assert {sample["duplicate_of"] for sample in summary.duplicate_samples} == {image.id}
    _assert_renders_match_catalog(catalog)
    log = json.loads((catalog.workspace.logs_dir / f"ingest-{summary.run_id}.json").read_text())
    assert log["images_skipped_duplicate"] == 3 and len(log["duplicate_samples"]) == 3


def test_lossless_jpeg_2000_re_encoding_is_the_same_image(tmp_path, catalog):
    from pydicom.pixels import get_encoder
    from pydicom.uid import JPEG2000Lossless

    if not get_encoder(JPEG2000Lossless).is_available:
        pytest.skip("no JPEG 2000 encoder installed (pylibjpeg-openjpeg)")
    original = _dicom(_radiograph(3))
    original.save_as(tmp_path / "uncompressed.dcm")
    compressed = pydicom.dcmread(tmp_path / "uncompressed.dcm")
    compressed.compress(JPEG2000Lossless)
    compressed.save_as(tmp_path / "j2k.dcm")
    first = ingest_paths(catalog, [tmp_path / "uncompressed.dcm"], workers=1, progress=False)
    second = ingest_paths(catalog, [tmp_path / "j2k.dcm"], workers=1, progress=False)
    assert first.images_added == 1 and second.images_added == 0 and second.images_skipped_duplicate == 1
    assert second.duplicate_samples[0]["original_path"] == str(tmp_path / "uncompressed.dcm")


def test_same_pixels_under_new_uids_is_a_duplicate(tmp_path, catalog):
    """An export under new SOP / study UIDs would be another study, possibly in another split: the pixels win."""
    _dicom(_radiograph(), sop_uid="1.2.826.0.1.3680043.2.1125.1.1").save_as(tmp_path / "first.dcm")
    _dicom(_radiograph(), sop_uid="1.2.826.0.1.3680043.2.1125.1.2",
           PatientID="ANON-7").save_as(tmp_path / "export.dcm")
    first = ingest_paths(catalog, [tmp_path / "first.dcm"], workers=1, progress=False)
    second = ingest_paths(catalog, [tmp_path / "export.dcm"], workers=1, progress=False)
    assert first.images_added == 1 and first.studies_added == 1
    assert second.images_added == 0 and second.studies_added == 0 and second.images_skipped_duplicate == 1
    assert second.warnings == 0 and not second.failed
    with catalog.session() as session:
        image_id = session.scalar(select(Image.id))
        assert session.scalar(select(DuplicateSource.image_id)) == image_id
    assert second.duplicate_samples == [{"path": str(tmp_path / "export.dcm"), "duplicate_of": image_id,
                                         "original_path": str(tmp_path / "first.dcm")}]


def test_same_sop_uid_with_other_pixels_keeps_the_first_and_warns_every_run(tmp_path, catalog):
    """A corrected re-send (same SOPInstanceUID, other pixels) is not silently dropped nor silently added: the
    catalogued image stays, and each run warns, naming both files and both ids; the UID itself is not stored."""
    uid = "1.2.826.0.1.3680043.2.1125.99.7"
    _dicom(_radiograph(1), sop_uid=uid).save_as(tmp_path / "sent.dcm")
    resent = _radiograph(1)
    resent[10:20, 10:20] = 0  # e.g. a burnt-in annotation removed
    _dicom(resent, sop_uid=uid).save_as(tmp_path / "resent.dcm")
    resent_id = image_id_for_hash(content_hash((tmp_path / "resent.dcm").read_bytes()))
    first = ingest_paths(catalog, [tmp_path / "sent.dcm"], workers=1, progress=False)
    for _ in range(2):
        again = ingest_paths(catalog, [tmp_path / "sent.dcm", tmp_path / "resent.dcm"], workers=1, progress=False)
        assert again.images_added == 0 and again.images_skipped_existing == 1
        assert again.images_skipped_conflict == 1 and again.images_skipped_duplicate == 0
        assert again.warnings == 1 and again.errors == 0 and not again.failed
        with catalog.session() as session:
            image = session.scalars(select(Image)).one()
            rows = session.scalars(select(IngestError)).all()
        assert [(row.path, row.stage, row.run_id) for row in rows] == [
            (str(tmp_path / "resent.dcm"), "duplicate", again.run_id)]  # one row, this run's
        reason = rows[0].reason
        assert reason.startswith("warning: same DICOM SOPInstanceUID")
        assert image.id in reason and str(tmp_path / "sent.dcm") in reason and resent_id in reason
        assert uid not in reason
    assert first.images_added == 1 and image.source_path == str(tmp_path / "sent.dcm")
    assert _image_count(catalog) == 1
    _assert_renders_match_catalog(catalog)
    if catalog.workspace.database_url.startswith("sqlite"):  # only the pseudonym is stored, never the UID
        with sqlite3.connect(catalog.workspace.root / "catalog.sqlite") as connection:
            assert uid not in "\n".join(connection.iterdump())


def test_png_re_saved_with_another_compression_level_is_one_image(tmp_path, catalog):
    pixels = np.random.default_rng(5).integers(0, 256, size=(48, 64), dtype=np.uint8)
    folder = tmp_path / "pngs"
    folder.mkdir()
    PILImage.fromarray(pixels).save(folder / "fast.png", compress_level=1)
    PILImage.fromarray(pixels).save(folder / "small.png", compress_level=9, optimize=True)
    PILImage.fromarray(pixels).convert("RGB").save(folder / "rgb_copy.png")  # grey saved as RGB: same picture
    other = pixels.copy()
    other[0, 0] ^= 1
    PILImage.fromarray(other).save(folder / "other.png")  # one pixel differs: another image
    assert len({path.read_bytes() for path in folder.iterdir()}) == 4
    summary = ingest_paths(catalog, [folder], workers=1, progress=False)
    assert summary.images_added == 2 and summary.images_skipped_duplicate == 2 and summary.errors == 0
    with catalog.session() as session:
        names = {image.source_path.rsplit("/", 1)[-1] for image in session.scalars(select(Image))}
    assert names == {"fast.png", "other.png"}  # the first by path is the original
    _assert_renders_match_catalog(catalog)


def test_different_images_stay_different(tmp_path, catalog):
    """Near-identical pixels, the same values under another photometric interpretation (MONOCHROME1 is
    shown inverted), another shape with the same values, and a PNG of other values stay separate images."""
    base = _radiograph(2)
    changed = base.copy()
    changed[0, 0] = (changed[0, 0] + 1) % 4096
    _dicom(base).save_as(tmp_path / "base.dcm")
    _dicom(changed).save_as(tmp_path / "one_pixel_changed.dcm")
    _dicom(base, photometric="MONOCHROME1").save_as(tmp_path / "monochrome1.dcm")
    _dicom(base.reshape(56, 40)).save_as(tmp_path / "reshaped.dcm")
    PILImage.fromarray((base >> 4).astype(np.uint8)).save(tmp_path / "base_8bit.png")
    summary = ingest_paths(catalog, [tmp_path], workers=2, progress=False)
    assert summary.images_added == 5 and summary.images_skipped_duplicate == 0 and summary.warnings == 0
    with catalog.session() as session:
        hashes = session.scalars(select(Image.pixel_hash)).all()
    assert len(set(hashes)) == 5 and all(hashes)


def test_re_run_is_idempotent_and_boxes_of_a_duplicate_go_to_the_original(tmp_path, catalog):
    """A second run skips every file by its content hash (duplicates included: no decode, nothing added); a
    detection set listing a re-saved copy of a catalogued image gives that image its boxes."""
    pixels = np.random.default_rng(9).integers(0, 256, size=(50, 60), dtype=np.uint8)
    plain = tmp_path / "plain"
    plain.mkdir()
    PILImage.fromarray(pixels).save(plain / "hand.png", compress_level=6)
    _dicom(_radiograph(4)).save_as(plain / "wrist.dcm")
    _implicit_copy(plain / "wrist.dcm", plain / "wrist_implicit.dcm")
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    (yolo / "data.yaml").write_text("names: ['fracture']\n")
    PILImage.fromarray(pixels).save(yolo / "images" / "hand_copy.png", compress_level=0)
    (yolo / "labels" / "hand_copy.txt").write_text("0 0.5 0.5 0.2 0.2\n")

    first = ingest_paths(catalog, [plain, yolo], workers=2, progress=False)
    assert first.images_found == 4 and first.images_added == 2 and first.images_skipped_duplicate == 2
    assert first.annotations_added == 1
    renders, counts = _render_files(catalog), catalog.counts()
    with catalog.session() as session:
        hand = session.scalar(select(Image).where(Image.source_path == str(plain / "hand.png")))
        box = session.scalars(select(Annotation)).one()
    assert box.image_id == hand.id and box.source == "yolo:yolo" and (box.w, box.h) == (12.0, 10.0)
    assert hand.meta.get("box_source") == "yolo:yolo"

    second = ingest_paths(catalog, [plain, yolo], workers=2, progress=False)
    assert second.images_added == 0 and second.images_skipped_duplicate == 0 and second.annotations_added == 0
    assert second.images_skipped_existing == 4 and second.pixel_hashes_backfilled == 0
    assert "decode" not in second.stage_seconds  # nothing decoded: every file is known by its bytes
    assert catalog.counts() == counts and _render_files(catalog) == renders
    _assert_renders_match_catalog(catalog)


def _downgrade_to_schema_1(catalog) -> None:
    """Turn a catalog into one made by radloop before schema version 2 (migration 1 alone): its tables
    without ``images.pixel_hash`` / ``images.sop_pseudonym`` and without ``duplicate_sources``."""
    with catalog.engine.begin() as connection:
        connection.execute(text("DROP TABLE duplicate_sources"))
        for column in ("pixel_hash", "sop_pseudonym"):
            connection.execute(text(f"DROP INDEX ix_images_{column}"))
            connection.execute(text(f"ALTER TABLE images DROP COLUMN {column}"))
        connection.execute(text("DELETE FROM schema_version WHERE version > 1"))


def test_catalog_of_schema_1_migrates_and_a_re_ingest_backfills_pixel_hashes(tmp_path, workspace):
    from sqlalchemy import inspect

    folder = tmp_path / "archive"
    folder.mkdir()
    _dicom(_radiograph(6)).save_as(folder / "knee.dcm")
    PILImage.fromarray(np.full((30, 40), 7, dtype=np.uint8)).save(folder / "flat.png")
    old = Catalog.open(workspace)
    assert ingest_paths(old, [folder], workers=1, progress=False).images_added == 2
    _downgrade_to_schema_1(old)
    assert old.schema_version() == 1 and "duplicate_sources" not in old.table_names()
    assert "pixel_hash" not in {column["name"] for column in inspect(old.engine).get_columns("images")}
    old.dispose()

    catalog = Catalog.open(workspace)  # migration 2 runs
    try:
        assert catalog.schema_version() == SCHEMA_VERSION
        inspector = inspect(catalog.engine)
        assert {"pixel_hash", "sop_pseudonym"} <= {column["name"] for column in inspector.get_columns("images")}
        assert {"ix_images_pixel_hash", "ix_images_sop_pseudonym"} <= {
            index["name"] for index in inspector.get_indexes("images")}
        assert catalog.counts()["images"] == 2 and catalog.counts()["duplicate_sources"] == 0
        with catalog.session() as session:
            assert session.scalars(select(Image.pixel_hash)).all() == [None, None]  # old rows: no keys yet
        # a re-saved copy next to the originals: the originals get their keys first (by path), then it matches
        _implicit_copy(folder / "knee.dcm", folder / "knee_resaved.dcm")
        summary = ingest_paths(catalog, [folder], workers=1, progress=False)
        assert summary.pixel_hashes_backfilled == 2 and summary.images_skipped_existing == 2
        assert summary.images_added == 0 and summary.images_skipped_duplicate == 1 and summary.warnings == 0
        with catalog.session() as session:
            images = {image.source_path.rsplit("/", 1)[-1]: image for image in session.scalars(select(Image))}
        assert images["knee.dcm"].pixel_hash == pixel_hash(_radiograph(6))
        assert images["knee.dcm"].sop_pseudonym.startswith("SOP-") and images["flat.png"].sop_pseudonym is None
        again = ingest_paths(catalog, [folder], workers=1, progress=False)
        assert again.pixel_hashes_backfilled == 0 and again.images_skipped_existing == 3
        assert "decode" not in again.stage_seconds
    finally:
        catalog.dispose()
    reopened = Catalog.open(workspace)  # migration 2 does not run twice
    assert reopened.schema_version() == SCHEMA_VERSION and reopened.counts()["duplicate_sources"] == 1
    reopened.dispose()


def test_twins_catalogued_before_schema_2_are_reported_when_backfilled(tmp_path, workspace):
    folder = tmp_path / "archive"
    folder.mkdir()
    _dicom(_radiograph(8)).save_as(folder / "a.dcm")
    _implicit_copy(folder / "a.dcm", folder / "b.dcm")
    old = Catalog.open(workspace)
    # what radloop before schema 2 did: both files became images (their keys are dropped by the downgrade)
    ingest_paths(old, [folder / "a.dcm"], workers=1, progress=False)
    with old.session() as session:
        session.execute(text("UPDATE images SET pixel_hash = NULL, sop_pseudonym = NULL"))
    assert ingest_paths(old, [folder / "b.dcm"], workers=1, progress=False).images_added == 1
    _downgrade_to_schema_1(old)
    old.dispose()
    catalog = Catalog.open(workspace)
    try:
        summary = ingest_paths(catalog, [folder], workers=1, progress=False)
        assert summary.pixel_hashes_backfilled == 2 and summary.warnings == 1 and not summary.failed
        assert "same pixels as" in summary.error_samples[0]["reason"] and catalog.counts()["images"] == 2
        for _ in range(2):  # both stay, so every run that reads them says so again (one row, this run's)
            again = ingest_paths(catalog, [folder], workers=1, progress=False)
            assert again.warnings == 1 and again.pixel_hashes_backfilled == 0 and "decode" not in again.stage_seconds
            with catalog.session() as session:
                rows = session.scalars(select(IngestError)).all()
            assert [(row.path, row.stage, row.run_id) for row in rows] == [
                (str(folder / "b.dcm"), "duplicate", again.run_id)]
    finally:
        catalog.dispose()


def _catalog_of_schema_1(workspace, *files) -> None:
    """A catalog made by radloop before schema 2 (and before the BurnedInAnnotation check), ``files`` ingested
    into it one run each, in that order; every one of them an image, as that radloop made them."""
    old = Catalog.open(workspace)
    for path in files:
        assert ingest_paths(old, [path], workers=1, progress=False).images_added == 1
        with old.session() as session:
            for image in session.scalars(select(Image)):
                image.pixel_hash = image.sop_pseudonym = None
                image.meta = {key: value for key, value in image.meta.items() if key != "burned_in_annotation"}
            session.execute(delete(IngestError))
    _downgrade_to_schema_1(old)
    old.dispose()


def test_younger_twin_read_before_its_original_got_its_keys_is_the_one_warned(tmp_path, workspace):
    """Twins from before schema 2, the younger one's file read first and each in its own batch: the warning
    still goes to the younger one (as in later runs), and once it is removed by hand it is a duplicate, no
    warning left."""
    folder = tmp_path / "archive"
    folder.mkdir()
    _dicom(_radiograph(8)).save_as(folder / "z_first.dcm")
    _implicit_copy(folder / "z_first.dcm", folder / "b_second.dcm")
    _catalog_of_schema_1(workspace, folder / "z_first.dcm", folder / "b_second.dcm")
    catalog = Catalog.open(workspace)
    try:
        with catalog.session() as session:
            ids = {image.source_path.rsplit("/", 1)[-1]: image.id for image in session.scalars(select(Image))}
        for batch_size in (1, 1, 64):
            summary = ingest_paths(catalog, [folder], workers=1, batch_size=batch_size, progress=False)
            with catalog.session() as session:
                rows = session.scalars(select(IngestError)).all()
            assert summary.warnings == 1 and len(rows) == 1 and rows[0].path == str(folder / "b_second.dcm")
            assert rows[0].reason.startswith(f"warning: {ids['b_second.dcm']}: same pixels as {ids['z_first.dcm']}")
        with catalog.session() as session:
            session.execute(delete(Image).where(Image.id == ids["b_second.dcm"]))
        summary = ingest_paths(catalog, [folder], workers=1, progress=False)
        assert summary.images_skipped_duplicate == 1 and summary.warnings == 0 and summary.images_added == 0
        assert catalog.counts()["ingest_errors"] == 0 and catalog.counts()["duplicate_sources"] == 1
    finally:
        catalog.dispose()


def test_a_re_send_catalogued_before_schema_2_is_warned_about_in_every_run(tmp_path, workspace):
    """Same SOPInstanceUID, other pixels, both catalogued by radloop before schema 2: the younger one (the
    re-send) is warned about, whichever file is read first and with one file per batch, in every run."""
    uid = "1.2.826.0.1.3680043.2.1125.99.8"
    _dicom(_radiograph(1), sop_uid=uid).save_as(tmp_path / "sent.dcm")
    resent = _radiograph(1)
    resent[10:20, 10:20] = 0
    _dicom(resent, sop_uid=uid).save_as(tmp_path / "resent.dcm")
    _catalog_of_schema_1(workspace, tmp_path / "sent.dcm", tmp_path / "resent.dcm")
    catalog = Catalog.open(workspace)
    try:
        with catalog.session() as session:
            ids = {image.source_path.rsplit("/", 1)[-1]: image.id for image in session.scalars(select(Image))}
        for _ in range(3):
            summary = ingest_paths(catalog, [tmp_path / "resent.dcm", tmp_path / "sent.dcm"], workers=1,
                                   batch_size=1, progress=False)
            with catalog.session() as session:
                rows = session.scalars(select(IngestError)).all()
            assert summary.warnings == 1 and [(row.path, row.stage) for row in rows] == [
                (str(tmp_path / "resent.dcm"), "duplicate")]
            assert rows[0].reason.startswith(
                f"warning: {ids['resent.dcm']}: same DICOM SOPInstanceUID as {ids['sent.dcm']}")
            assert uid not in rows[0].reason and catalog.counts()["images"] == 2
    finally:
        catalog.dispose()


@pytest.mark.parametrize(("workers", "batch_size"), [(1, 64), (1, 1), (2, 1)])
def test_new_copy_of_a_row_awaiting_its_backfill_is_its_duplicate(tmp_path, workspace, workers, batch_size):
    """A re-saved copy whose path sorts before the file of a row catalogued before schema 2, in the run that
    backfills that row: the row gets its keys first (in the copy's batch or an earlier one), so the copy is its
    duplicate, not a second image."""
    folder = tmp_path / "archive"
    folder.mkdir()
    _dicom(_radiograph(11)).save_as(folder / "knee.dcm")
    _catalog_of_schema_1(workspace, folder / "knee.dcm")
    _implicit_copy(folder / "knee.dcm", folder / "0_copy.dcm")
    catalog = Catalog.open(workspace)
    try:
        summary = ingest_paths(catalog, [folder], workers=workers, batch_size=batch_size, progress=False)
        assert summary.pixel_hashes_backfilled == 1 and summary.images_skipped_existing == 1
        assert summary.images_added == 0 and summary.images_skipped_duplicate == 1 and summary.warnings == 0
        with catalog.session() as session:
            image = session.scalars(select(Image)).one()
            duplicate = session.scalars(select(DuplicateSource)).one()
        assert image.source_path == str(folder / "knee.dcm") and image.pixel_hash == pixel_hash(_radiograph(11))
        assert (duplicate.image_id, duplicate.source_path) == (image.id, str(folder / "0_copy.dcm"))
        _assert_renders_match_catalog(catalog)
    finally:
        catalog.dispose()
