"""Walk 21e: what else lies in a hospital archive's folders beside the images, each one line, never a crash.

- Structured reports, presentation states and encapsulated PDFs (normal beside the images of a PACS export)
  were ingest *errors*: every run of an archive folder "failed" (exit code 1, "N input(s) failed"), the
  operator could not tell them from damaged images.  Now they are skipped with a warning (stage ``skip``,
  ``files_not_images``), again in every run that reads them, replacing the last run's.
- Two symbolic links pointing at each other were "broken symbolic link (its target loopa does not exist)",
  although ``loopa`` is there: now "symbolic link loop".
- Still errors, one line each: a zero-byte file, an image object whose pixels are gone, an unreadable file;
  a DICOMDIR is ignored; a multi-frame image is ingested (its first frame; ``number_of_frames`` kept).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from dicom_synthetic import synthetic_dataset

from radloop.core.dicom_io import read_dicom
from radloop.core.ingest import ingest_paths
from radloop.core.input_errors import NoPixelDataError, NotAnImageObjectError
from radloop.core.schema import Image, IngestError

WORDS = np.tile(np.arange(32, dtype=np.uint16) * 100, (32, 1))
NOT_IMAGES = {"sr.dcm": ("1.2.840.10008.5.1.4.1.1.88.22", "Enhanced SR Storage"),
              "pr.dcm": ("1.2.840.10008.5.1.4.1.1.11.1", "Grayscale Softcopy Presentation State Storage"),
              "pdf.dcm": ("1.2.840.10008.5.1.4.1.1.104.1", "Encapsulated PDF Storage"),
              "kos.dcm": ("1.2.840.10008.5.1.4.1.1.88.59", "Key Object Selection Document Storage")}
IMAGE_MODULE = ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                "SamplesPerPixel", "PhotometricInterpretation")


def _dataset(seed: int):
    return synthetic_dataset(WORDS + seed, StudyInstanceUID=generate_uid())


def _without_pixels(dataset, sop_class: str):
    for keyword in IMAGE_MODULE:
        delattr(dataset, keyword)
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = sop_class
    return dataset


def _archive(root: Path) -> Path:
    root.mkdir()
    _dataset(1).save_as(root / "image.dcm", enforce_file_format=True)
    for seed, (name, (sop_class, _)) in enumerate(NOT_IMAGES.items(), start=2):
        dataset = _without_pixels(_dataset(seed), sop_class)
        if name == "pdf.dcm":
            dataset.MIMETypeOfEncapsulatedDocument, dataset.EncapsulatedDocument = "application/pdf", b"%PDF-1.4\n"
        dataset.save_as(root / name, enforce_file_format=True)
    frames = synthetic_dataset(np.concatenate([WORDS, WORDS + 7]), StudyInstanceUID=generate_uid())
    frames.Rows, frames.NumberOfFrames = 32, 2
    frames.save_as(root / "multiframe.dcm", enforce_file_format=True)
    _without_pixels(_dataset(9), "1.2.840.10008.5.1.4.1.1.1.1").save_as(root / "stripped.dcm",
                                                                          enforce_file_format=True)
    (root / "zero.dcm").write_bytes(b"")
    (root / "DICOMDIR").write_bytes(b"\0" * 132)
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    _dataset(10).save_as(root / "locked.dcm", enforce_file_format=True)
    (root / "locked.dcm").chmod(0)
    return root


@pytest.fixture
def unreadable(monkeypatch):
    """``locked.dcm`` cannot be read, also for root (who reads a chmod 000 file)."""
    read_bytes = Path.read_bytes

    def guarded(path):
        if path.name == "locked.dcm":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", guarded)


def _rows(catalog) -> dict[str, tuple[str, str]]:
    with catalog.session() as session:
        return {Path(row.path).name: (row.stage, row.reason) for row in session.scalars(select(IngestError))}


def test_an_archive_folder_of_odd_objects_is_skipped_or_recorded_one_line_each(tmp_path, catalog, unreadable):
    folder = _archive(tmp_path / "archive")
    summary = ingest_paths(catalog, [folder], workers=1, progress=False)
    assert summary.images_added == 2 and summary.files_ignored == 1  # image + multi-frame; the DICOMDIR
    assert summary.files_not_images == 4 and summary.warnings == 4
    assert summary.errors == 5 and summary.errors_by_stage == {"read": 4, "decode": 1}
    rows = _rows(catalog)
    for name, (_, class_name) in NOT_IMAGES.items():
        assert rows[name] == ("skip", f"warning: DICOM object has no pixel data element (SOP Class {class_name}): "
                                      "not an image object")
    assert rows["zero.dcm"] == ("read", "file is empty (0 bytes)")
    assert rows["stripped.dcm"][0] == "decode" and "the file is truncated or damaged" in rows["stripped.dcm"][1]
    assert rows["locked.dcm"][0] == "read" and "Permission denied" in rows["locked.dcm"][1]
    for name, other in (("loop_a", "loop_b"), ("loop_b", "loop_a")):
        assert rows[name] == ("read", f"symbolic link loop (it leads through {other} back to a link, never to "
                                      "a file)")
    assert all("\n" not in reason for _, reason in rows.values())
    with catalog.session() as session:
        frames = session.scalars(select(Image).where(Image.external_id == "multiframe")).one()
    assert frames.meta["dicom"]["number_of_frames"] == 2
    again = ingest_paths(catalog, [folder], workers=1, progress=False)  # the warnings are said again, not doubled
    assert (again.files_not_images, again.images_skipped_existing, again.errors) == (4, 2, 5)
    assert len(_rows(catalog)) == len(rows)


def test_the_cli_does_not_fail_for_reports_beside_the_images(tmp_path, workspace):
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    folder = tmp_path / "study"
    folder.mkdir()
    _dataset(1).save_as(folder / "image.dcm", enforce_file_format=True)
    _without_pixels(_dataset(2), NOT_IMAGES["sr.dcm"][0]).save_as(folder / "sr.dcm", enforce_file_format=True)
    result = CliRunner().invoke(build_app(), ["ingest", str(folder), "--workspace", str(workspace.root)])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, output
    assert "warning skip:" in output and "(SOP Class Enhanced SR Storage): not an image object" in output


def test_a_non_image_object_raises_the_skip_error_and_an_image_without_pixels_does_not(tmp_path):
    _without_pixels(_dataset(1), NOT_IMAGES["pr.dcm"][0]).save_as(tmp_path / "pr.dcm", enforce_file_format=True)
    with pytest.raises(NotAnImageObjectError):
        read_dicom(tmp_path / "pr.dcm")
    _without_pixels(_dataset(2), "1.2.840.10008.5.1.4.1.1.1.1").save_as(tmp_path / "dx.dcm",
                                                                         enforce_file_format=True)
    with pytest.raises(NoPixelDataError) as raised:
        read_dicom(tmp_path / "dx.dcm")
    assert not isinstance(raised.value, NotAnImageObjectError)
