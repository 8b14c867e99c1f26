"""Walk 19: what users hand to ``radloop ingest`` by mistake or by habit, each one line, nothing silently lost.

- A folder walked with ``Path.rglob`` skipped symbolic links to folders (an archive of dated folders linked from
  other volumes ingested nothing, without an error), broken links and folders it could not list, all without a
  word.  Now linked folders are walked (each real folder once: a link loop ends), and the other two are ``read``
  errors.
- A DICOMDIR in a disc's folder was a decode error ("no pixel data element"): it is an index, skipped like the
  other non-image files of a folder; named explicitly, its error says what it is.  Other objects without pixels
  name their SOP class, and an image header cut before Rows/Columns says the file is truncated.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid
from sqlalchemy import select

from dicom_synthetic import synthetic_dataset

from radloop.core.dicom_io import read_dicom
from radloop.core.ingest import ingest_paths
from radloop.core.ingest_sources import discover
from radloop.core.input_errors import NoPixelDataError
from radloop.core.schema import IngestError

WORDS = np.tile(np.arange(32, dtype=np.uint16) * 100, (32, 1))


def _dicom(path: Path, seed: int = 0, **attributes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_dataset(WORDS + seed, **attributes).save_as(path, enforce_file_format=True)
    return path


def _names(found) -> list[str]:
    return [Path(task.path).name for task in found.image_tasks]


def test_symlinked_folders_are_walked_once_and_a_loop_ends(tmp_path):
    _dicom(tmp_path / "volume2" / "2023" / "b.dcm", seed=1)
    archive = tmp_path / "archive"
    _dicom(archive / "2022" / "a.dcm")
    os.symlink(tmp_path / "volume2" / "2023", archive / "2023")  # a dated folder on another volume
    os.symlink("..", archive / "2022" / "up")  # a loop back to the archive
    os.symlink(archive / "2022", archive / "again")  # a second link to a folder already walked
    found = discover([archive])
    assert sorted(_names(found)) == ["a.dcm", "b.dcm"] and found.errors == []
    assert str(archive / "2023" / "b.dcm") in [task.path for task in found.image_tasks]  # the path as given


def test_a_broken_link_is_one_read_error_and_the_batch_goes_on(tmp_path, catalog):
    archive = tmp_path / "archive"
    _dicom(archive / "a.dcm")
    os.symlink(tmp_path / "moved" / "b.dcm", archive / "b.dcm")
    summary = ingest_paths(catalog, [archive], workers=1, progress=False)
    assert summary.images_added == 1 and summary.errors == 1
    with catalog.session() as session:
        row = session.scalars(select(IngestError)).one()
    assert row.path == str(archive / "b.dcm") and row.stage == "read" and "broken symbolic link" in row.reason


def test_a_folder_that_cannot_be_listed_is_one_read_error(tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    _dicom(archive / "a.dcm")
    _dicom(archive / "locked" / "b.dcm", seed=1)
    real_scandir = os.scandir

    def scandir(path="."):  # chmod 000 does not stop root, who runs these tests in CI containers
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = discover([archive])
    assert _names(found) == ["a.dcm"]
    assert [(path, stage) for path, stage, _ in found.errors] == [(str(archive / "locked"), "read")]
    assert "Permission denied" in found.errors[0][2] and "not ingested" in found.errors[0][2]


def _dicomdir_folder(root: Path) -> Path:
    fileset = FileSet()
    fileset.add(synthetic_dataset(WORDS, PatientID="P1", PatientName="A^B", StudyInstanceUID=generate_uid(),
                                  SeriesInstanceUID=generate_uid(), StudyDate="20200101", StudyTime="1200",
                                  StudyID="1", SeriesNumber=1, InstanceNumber=1, AccessionNumber="1"))
    fileset.write(root)
    return root / "DICOMDIR"


def test_a_dicomdir_in_a_folder_is_skipped_and_its_images_ingested(tmp_path, catalog):
    dicomdir = _dicomdir_folder(tmp_path / "disc")
    summary = ingest_paths(catalog, [tmp_path / "disc"], workers=1, progress=False)
    assert summary.images_added == 1 and summary.errors == 0 and summary.files_ignored == 1
    with pytest.raises(NoPixelDataError, match="it is a DICOMDIR .* not an image; ingest the folder"):
        read_dicom(dicomdir)


def test_objects_without_pixels_say_what_they_are(tmp_path):
    report = synthetic_dataset(WORDS)
    for keyword in ("PixelData", "Rows", "Columns"):
        delattr(report, keyword)
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    report.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    with pytest.raises(NoPixelDataError, match=r"\(SOP Class Basic Text SR Storage\): not an image object"):
        read_dicom(tmp_path / "sr.dcm")
    data = _dicom(tmp_path / "image.dcm").read_bytes()
    cut = data[:data.index(b"\x28\x00\x10\x00")]  # just before Rows: the header ends early, at an element
    with pytest.raises(NoPixelDataError, match="nor Rows/Columns although its SOP Class is Digital X-Ray Image "
                                               "Storage.*: the file is truncated"):
        read_dicom(cut)
