"""An ingest killed with SIGKILL mid-run resumes without duplicates (subprocess, real CLI)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys

import pydicom
from pydicom.uid import generate_uid
from PIL import Image as PILImage

from ingest_data import committed_images, dicom_file, wait_for_images

N_FILES = 60


def _variants(folder):
    """Distinct images made from the real SIIM chest DICOM: each its own SOPInstanceUID and one pixel changed
    (same pixels would be one image: ingest recognises duplicates by their decoded pixels)."""
    folder.mkdir()
    dataset = pydicom.dcmread(dicom_file(
        "siim_cr_chest_pa_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"))
    dataset.decompress()
    pixels = dataset.pixel_array.copy()
    for number in range(N_FILES):
        variant = pixels.copy()
        variant[0, number] = 255 - variant[0, number]
        dataset.PixelData = variant.tobytes()
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.SeriesNumber = number + 1
        dataset.save_as(folder / f"copy_{number:03d}.dcm")


def _dead_pid() -> int:
    """The id of a process that has exited (a child that was started and waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_kill_9_mid_ingest_then_resume(tmp_path):
    folder = tmp_path / "dicoms"
    _variants(folder)
    workspace = tmp_path / "ws"
    database = workspace / "catalog.sqlite"
    command = [sys.executable, "-m", "radloop.app.cli", "ingest", str(folder), "--workspace", str(workspace),
               "--workers", "1", "--batch-size", "3", "--json"]
    env = {key: value for key, value in os.environ.items() if key != "RADLOOP_DATABASE_URL"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for_images(database, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = committed_images(database)
    assert 6 <= committed < N_FILES, f"the kill should land mid-run ({committed} of {N_FILES} committed)"
    stale = workspace / "renders" / "00" / f".I-00deadbeef000000.png.{_dead_pid()}.tmp"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a png")
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert finished.returncode == 0, finished.stderr
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT id, content_hash, render_path FROM images").fetchall()
        studies = connection.execute("SELECT count(*) FROM studies").fetchone()[0]
    assert len(rows) == N_FILES and len({row[1] for row in rows}) == N_FILES
    assert studies == 1  # every copy carries the same StudyInstanceUID
    # A half-written render of the killed run (or a stale one planted here) is cleaned up by the resume.
    assert not list(workspace.glob("renders/*/.*.tmp")) and not list(workspace.glob("thumbs/*/.*.tmp"))
    for _, _, render_path in rows:
        with PILImage.open(workspace / render_path) as render:
            render.verify()
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and '"images_added": 0' in again.stdout
