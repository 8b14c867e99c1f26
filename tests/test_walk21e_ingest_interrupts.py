"""Walk 21e: an archive operator's Ctrl-C, a second ingest in another shell, a kill -9.

- Two ingests of one folder into one workspace at once: the second read the catalog's hashes when it started,
  so it took every image the first had just written for a duplicate of itself (1,200 of 1,200 images of the
  fracture set counted ``images_skipped_duplicate``, 1,200 ``duplicate_sources`` rows naming the file they
  copy).  Now an ingest holds the workspace's ingest lock; a second one stops at once, naming the pid of the
  first (exit code 3), and a killed holder leaves no stale lock.
- Ctrl-C printed nothing (exit 130, no summary, no log), and each worker printed a KeyboardInterrupt traceback.
  Now the CLI says what was written and that the same command resumes; workers ignore SIGINT.
- The counts of a batch rolled back by the interrupt stayed in the summary: it said 511 images were added when
  496 were, and the re-run added 704 of 1,200 "again".  Now a rolled-back batch takes its counts back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from typer.testing import CliRunner

from ingest_data import committed_images, wait_for_images
from radloop.app.cli import build_app
from radloop.core.ingest import IngestInterrupted, IngestLockedError, ingest_paths
from radloop.core.ingest_lock import ingest_lock
from radloop.core.ingest_writer import CatalogWriter
from radloop.core.schema import DuplicateSource, Image


def _pngs(folder, count: int, size: int = 48):
    """``count`` distinct seeded grey PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for number in range(count):
        pixels = rng.integers(0, 256, size=(size, size), dtype=np.uint8)
        PILImage.fromarray(pixels).save(folder / f"image_{number:03d}.png")
    return folder


def _images(catalog) -> int:
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(Image))


def _environment():
    return {key: value for key, value in os.environ.items() if key != "RADLOOP_DATABASE_URL"}


def test_a_second_ingest_stops_at_once_naming_the_first(tmp_path, catalog):
    folder = _pngs(tmp_path / "pngs", 4)
    with ingest_lock(catalog.workspace.root, "20260101T000000-abcdef"):
        with pytest.raises(IngestLockedError, match=rf"another ingest is running in this workspace \(pid "
                                                    rf"{os.getpid()} on .*run 20260101T000000-abcdef"):
            ingest_paths(catalog, [folder], workers=1, progress=False)
        assert _images(catalog) == 0  # it read nothing and wrote nothing
    summary = ingest_paths(catalog, [folder], workers=1, progress=False)  # the lock is free again
    assert summary.images_added == 4 and _images(catalog) == 4
    again = ingest_paths(catalog, [folder], workers=1, progress=False)
    assert (again.images_skipped_existing, again.images_skipped_duplicate) == (4, 0)
    with catalog.session() as session:
        assert session.scalar(select(func.count()).select_from(DuplicateSource)) == 0


def test_the_cli_says_another_ingest_is_running_and_exits_3(tmp_path):
    folder = _pngs(tmp_path / "pngs", 2)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with ingest_lock(workspace, "the-first-run"):
        result = subprocess.run([sys.executable, "-m", "radloop.app.cli", "ingest", str(folder), "--workspace",
                                 str(workspace), "--workers", "1"], capture_output=True, text=True,
                                env=_environment(), timeout=120)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 3, output
    assert f"another ingest is running in this workspace (pid {os.getpid()}" in output
    assert "Traceback" not in output


def test_a_killed_ingest_leaves_no_stale_lock(tmp_path, catalog):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from radloop.core.ingest_lock import ingest_lock\n"
        f"with ingest_lock({str(catalog.workspace.root)!r}, 'killed'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(IngestLockedError, match=f"pid {holder.pid} "):
        ingest_paths(catalog, [_pngs(tmp_path / "pngs", 1)], workers=1, progress=False)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert ingest_paths(catalog, [tmp_path / "pngs"], workers=1, progress=False).images_added == 1


def test_an_interrupted_run_counts_only_what_it_committed(tmp_path, catalog, monkeypatch):
    folder = _pngs(tmp_path / "pngs", 12)
    write_images, flushes = CatalogWriter._write_images, []

    def interrupted_on_the_third_batch(writer, session):
        write_images(writer, session)  # counts the batch, then Ctrl-C lands before the commit
        flushes.append(1)
        if len(flushes) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(CatalogWriter, "_write_images", interrupted_on_the_third_batch)
    with pytest.raises(IngestInterrupted) as raised:
        ingest_paths(catalog, [folder], workers=1, progress=False, batch_size=3)
    summary = raised.value.summary
    assert summary.interrupted and summary.images_found == 12
    assert summary.images_added == _images(catalog) == 6  # two batches committed, the third rolled back
    log = json.loads((catalog.workspace.logs_dir / f"ingest-{summary.run_id}.json").read_text())
    assert log["interrupted"] is True and log["images_added"] == 6
    monkeypatch.setattr(CatalogWriter, "_write_images", write_images)
    resumed = ingest_paths(catalog, [folder], workers=1, progress=False, batch_size=3)
    assert (resumed.images_added, resumed.images_skipped_existing, resumed.interrupted) == (6, 6, False)
    assert _images(catalog) == 12


def test_the_cli_says_what_an_interrupted_run_wrote(tmp_path, monkeypatch):
    from radloop.core import ingest
    from radloop.core.ingest import IngestSummary

    def interrupted(*args, **kwargs):
        raise IngestInterrupted(IngestSummary(run_id="20260101T000000-abcdef", images_found=300,
                                              images_added=128, images_skipped_existing=16, interrupted=True))

    monkeypatch.setattr(ingest, "ingest_paths", interrupted)
    folder = _pngs(tmp_path / "pngs", 1)
    monkeypatch.delenv("RADLOOP_DATABASE_URL", raising=False)
    result = CliRunner().invoke(build_app(), ["ingest", str(folder), "--workspace", str(tmp_path / "ws")])
    output = " ".join(result.output.split())
    assert result.exit_code == 130, output
    assert ("ingest 20260101T000000-abcdef interrupted: of 300 image(s) found, 128 were added and 16 were already "
            "catalogued before it stopped") in output
    assert "Run the same command again to resume" in output


def test_ctrl_c_mid_run_says_so_without_worker_tracebacks_and_the_rerun_adds_the_rest(tmp_path):
    count = 150
    folder = _pngs(tmp_path / "pngs", count, size=256)
    workspace = tmp_path / "ws"
    command = [sys.executable, "-m", "radloop.app.cli", "ingest", str(folder), "--workspace", str(workspace),
               "--workers", "2", "--batch-size", "3", "--json"]
    # a session of its own: Ctrl-C at a terminal reaches the whole process group, workers included
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_environment(), start_new_session=True)
    wait_for_images(workspace / "catalog.sqlite", process)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    committed = committed_images(workspace / "catalog.sqlite")
    assert 6 <= committed < count, f"the interrupt should land mid-run ({committed} of {count} committed)"
    output = " ".join((stdout + stderr).split())
    assert process.returncode == 130, output
    assert f"interrupted: of {count} image(s) found, {committed} were added" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    resumed = subprocess.run(command, capture_output=True, text=True, env=_environment(), timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert (result["images_added"], result["images_skipped_existing"]) == (count - committed, committed)
    assert committed_images(workspace / "catalog.sqlite") == count
