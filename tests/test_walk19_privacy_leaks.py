"""Walk 19 privacy review: identifiers that reached the console/log or Label Studio.

- pydicom validates header values as they are read and warns *and logs* an invalid one with its value ("Invalid
  value for VR DA: '2023-04-17 Quixote'"): ingest reads the study date, patient id and SOPInstanceUID (only to
  hash them), so a malformed one was echoed to the console and the ``pydicom`` log.
- Report sign-off lines without "by" ("Signed: Hortensia Blotch MD") kept the clinician's name in the text sent to
  Label Studio.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from dicom_synthetic import synthetic_dataset

from radloop.core.dicom_io import read_dicom
from radloop.core.ingest_sources import ImageTask
from radloop.core.ingest_worker import WorkerContext, file_pixel_hash, process_task
from radloop.labeling.ls_tasks import task_report
from radloop.labeling.redact import redact_report

NAME, MRN = "Quixote", "MRN99887766"


def _malformed_header_dicom(path) -> str:
    """A DICOM whose dates and UIDs are invalid and carry identifiers (pydicom warns about an invalid UID as it
    reads it, with the value)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns when the test writes the invalid values
        dataset = synthetic_dataset(np.tile(np.arange(64, dtype=np.uint16) * 60, (64, 1)), PatientID=MRN,
                                    StudyDate=f"2023-04-17 {NAME}", PatientBirthDate=f"12.03.1947 {NAME}",
                                    ContentDate=f"{NAME} 17.04.2023")
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.{NAME}"
        dataset.StudyInstanceUID = f"1.2.4.{NAME}"
        dataset.save_as(path, enforce_file_format=True)
    return str(path)


def _echoed(caught, caplog) -> list[str]:
    texts = [str(item.message) for item in caught] + [record.getMessage() for record in caplog.records]
    return [text for text in texts if NAME in text or "1947" in text or "2023" in text]


def test_ingest_does_not_echo_invalid_header_values(tmp_path, caplog):
    path = _malformed_header_dicom(tmp_path / "malformed.dcm")
    task = ImageTask(path=path, dataset="walk", external_id="malformed", study_namespace="file", study_key="x")
    caplog.set_level(logging.DEBUG)
    caplog.clear()  # what pydicom logged while the test wrote the file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = process_task(0, task, WorkerContext(workspace_root=tmp_path / "ws", pseudonym_key=b"k" * 32))
        file_pixel_hash((tmp_path / "malformed.dcm").read_bytes())
    assert outcome.status == "added" and outcome.sop_pseudonym and outcome.study_id
    assert _echoed(caught, caplog) == []


def test_read_dicom_does_not_echo_invalid_header_values(tmp_path, caplog):
    path = _malformed_header_dicom(tmp_path / "malformed.dcm")
    caplog.set_level(logging.DEBUG)
    caplog.clear()  # what pydicom logged while the test wrote the file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_dicom(path)
    assert image.metadata.study_instance_uid == f"1.2.4.{NAME}"  # still read (ingest only hashes it)
    assert _echoed(caught, caplog) == []


REPORT = ("FINDINGS: No fracture. Mr Quixote tolerated the exam. Signed: Hortensia Blotch MD 2023-04-17.\n"
          "Dictated: Roe, Jane, M.D.\nELECTRONICALLY SIGNED: ROE, JANE")


@pytest.mark.parametrize("text, gone", [
    ("Signed: Hortensia Blotch MD 2023-04-17.", ("Hortensia", "Blotch")),
    ("Dictated: Roe, Jane", ("Roe", "Jane")),
    ("ELECTRONICALLY SIGNED: ROE, JANE", ("ROE", "JANE")),
    ("Final report. Hortensia Blotch, MD", ("Hortensia", "Blotch")),
    ("Roe, Jane, M.D.", ("Roe", "Jane")),
    ("Nurse note reviewed. Jo Pimpernel RN", ("Pimpernel",)),
])
def test_sign_off_names_are_redacted(text, gone):
    redacted = redact_report(text).text
    assert "[NAME]" in redacted and not [word for word in gone if word in redacted]


@pytest.mark.parametrize("text", ["Findings MD", "Emergency MD notified", "Staff MD aware", "signed: no change",
                                  "Chest PA and lateral. Left ankle."])
def test_words_before_a_credential_or_after_signed_stay(text):
    assert redact_report(text).text == text


def test_label_studio_report_field_has_no_sign_off_name():
    field = task_report([REPORT], "redacted")
    assert not [word for word in ("Hortensia", "Blotch", "Roe", "ROE", "Jane", "JANE", "Quixote") if word in field]
    assert "No fracture" in field


def test_header_values_stay_unchecked_while_another_thread_still_reads():
    """Pretraining's image cache reads DICOMs in threads: one thread leaving the context while another is
    still inside must not switch pydicom's value check (which echoes invalid values) back on, and the last one
    out restores the caller's setting."""
    import threading

    import pydicom

    from radloop.core.dicom_io import header_values_unlogged

    settings = pydicom.config.settings
    before = (settings.reading_validation_mode, settings.writing_validation_mode)
    inside, left, seen = threading.Event(), threading.Event(), []

    def reader() -> None:
        with header_values_unlogged():
            inside.set()
            left.wait(5)
            seen.append(settings.reading_validation_mode)

    thread = threading.Thread(target=reader)
    with header_values_unlogged():
        thread.start()
        assert inside.wait(5)
    left.set()  # the first reader has left; the second is still reading
    thread.join(5)
    assert seen == [pydicom.config.IGNORE]
    assert (settings.reading_validation_mode, settings.writing_validation_mode) == before
