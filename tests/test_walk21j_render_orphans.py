"""Walk 21j: a stopped ingest leaves no render that the catalog does not name, and its workers go quietly.

- Renders were written in place by the workers before their batch was committed: the renders of a batch rolled
  back by Ctrl-C, and of the images the workers had rendered but not handed over, stayed on disk, named by no
  catalog row; if their files were never ingested again they were orphans for good.  Now a new image's renders
  are written under pending names and renamed into place once its batch is committed
  (:mod:`radloop.core.ingest_renders`); what a stopped run leaves under pending names is swept.
- A Ctrl-C landing just after a batch's COMMIT took the committed batch's counts back (and, with the above,
  would have deleted its renders): a commit and its follow-up now let a Ctrl-C wait until they are done.
- After ``kill -9`` of an ingest, each pool worker printed a BrokenPipeError traceback when it handed over its
  next result, and went on rendering the tasks already queued.  Now workers end with their parent, quietly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import event, func, select

from radloop.core.ingest import IngestInterrupted, ingest_paths
from radloop.core.ingest_renders import pending_paths, remove_stale_temporaries
from radloop.core.ingest_writer import CatalogWriter
from radloop.core.schema import Image


def _pngs(folder, count: int, size: int = 48, seed: int = 0):
    """``count`` distinct seeded grey PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for number in range(count):
        PILImage.fromarray(rng.integers(0, 256, size=(size, size), dtype=np.uint8)).save(
            folder / f"image_{number:03d}.png")
    return folder


def _files(catalog) -> list[str]:
    """Every file under the workspace's renders/ and thumbs/ (pending and temporary ones included)."""
    root = catalog.workspace.root
    return sorted(str(path.relative_to(root)) for folder in ("renders", "thumbs")
                  for path in (root / folder).rglob("*") if path.is_file())


def _catalogued(catalog) -> list[str]:
    with catalog.session() as session:
        return sorted(path for image in session.scalars(select(Image))
                      for path in (image.render_path, image.thumb_path))


def _images(catalog) -> int:
    with catalog.session() as session:
        return session.scalar(select(func.count()).select_from(Image))


def test_the_renders_of_a_rolled_back_batch_are_not_left_on_disk(tmp_path, catalog, monkeypatch):
    folder = _pngs(tmp_path / "pngs", 12)
    write_images, flushes = CatalogWriter._write_images, []

    def interrupted_on_the_third_batch(writer, session):
        write_images(writer, session)
        flushes.append(1)
        if len(flushes) == 3:
            raise KeyboardInterrupt  # Ctrl-C before the commit: the batch is rolled back

    monkeypatch.setattr(CatalogWriter, "_write_images", interrupted_on_the_third_batch)
    with pytest.raises(IngestInterrupted):
        ingest_paths(catalog, [folder], workers=1, progress=False, batch_size=3)
    assert _images(catalog) == 6
    assert _files(catalog) == _catalogued(catalog)  # 6 images' renders and thumbnails, nothing else
    monkeypatch.undo()
    for path in sorted(folder.iterdir())[6:]:  # the files of the rolled-back batch are never ingested again
        path.unlink()
    again = ingest_paths(catalog, [folder], workers=1, progress=False, batch_size=3)
    assert (again.images_added, again.images_skipped_existing, again.renders_restored) == (0, 6, 0)
    assert _files(catalog) == _catalogued(catalog)


def test_ctrl_c_just_after_a_commit_keeps_the_batch_its_counts_and_its_renders(tmp_path, catalog, monkeypatch,
                                                                               sigint_restored):
    """SIGINT between the database's COMMIT and the code that knows of it: the batch is committed, so the
    summary counts it and its renders go into place (they were taken back, and would have been deleted)."""
    folder = _pngs(tmp_path / "pngs", 9)
    write_images, batches = CatalogWriter._write_images, []

    def ctrl_c_after_the_second_commit(writer, session):
        write_images(writer, session)
        batches.append(1)
        if len(batches) == 2:
            event.listen(session, "after_commit", lambda _: os.kill(os.getpid(), signal.SIGINT), once=True)

    monkeypatch.setattr(CatalogWriter, "_write_images", ctrl_c_after_the_second_commit)
    with pytest.raises(IngestInterrupted) as raised:
        ingest_paths(catalog, [folder], workers=1, progress=False, batch_size=3)
    assert raised.value.summary.images_added == _images(catalog) == 6
    assert _files(catalog) == _catalogued(catalog)


def test_files_that_do_not_become_images_leave_no_render(tmp_path, catalog):
    folder = _pngs(tmp_path / "pngs", 3)
    (folder / "copy.png").write_bytes((folder / "image_000.png").read_bytes())  # the same bytes twice in a run
    PILImage.open(folder / "image_001.png").save(folder / "resaved.png", optimize=True)  # the same pixels
    summary = ingest_paths(catalog, [folder], workers=2, progress=False, batch_size=2)
    assert (summary.images_added, summary.images_skipped_existing, summary.images_skipped_duplicate) == (3, 1, 1)
    assert _files(catalog) == _catalogued(catalog)


def test_pending_renders_of_a_process_that_is_gone_are_swept(tmp_path):
    root = tmp_path / "ws"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = int(gone.stdout)
    pending = pending_paths(("renders/ab/I-ab01.png", "thumbs/ab/I-ab01.png"), 7)
    mine = [root / path for path in pending]
    theirs = [path.with_name(path.name.replace(f".{os.getpid()}.", f".{dead}.")) for path in mine]
    half_written = root / "renders" / "ab" / f".{mine[0].name}.{dead}.tmp"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = root / "renders" / "ab" / f".I-ab02.png.{live.pid}.3.pending"  # a writer still running
        for path in [*mine, *theirs, half_written, busy]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"png")
        remove_stale_temporaries(root)
        assert [path for path in [*mine, *theirs, half_written, busy] if path.exists()] == [busy]
        remove_stale_temporaries(root, exclusive=True)  # under the ingest lock no other writer can be alive
        assert not busy.exists()
    finally:
        live.kill()
        live.wait()


def _environment():
    """The test's catalog (PostgreSQL under RADLOOP_TEST_DATABASE=postgres) for the command run in a subprocess."""
    return dict(os.environ)


def test_kill_9_leaves_no_orphan_render_and_no_worker_traceback(tmp_path, catalog):
    count = 200
    folder = _pngs(tmp_path / "pngs", count, size=384)
    command = [sys.executable, "-m", "radloop.app.cli", "ingest", str(folder), "--workspace",
               str(catalog.workspace.root), "--workers", "2", "--batch-size", "3"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_environment())
    deadline = time.monotonic() + 120
    while _images(catalog) < 6 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, stderr = process.communicate(timeout=120)  # returns once the workers, which share stderr, are gone
    assert time.monotonic() - killed < 10, "the workers went on after their parent was killed"
    committed = _images(catalog)
    assert 6 <= committed < count, f"the kill should land mid-run ({committed} of {count} committed)"
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr[-2000:]
    visible = [path for path in _files(catalog) if not os.path.basename(path).startswith(".")]
    # no render that the catalog does not name (killed between a commit and its renames, an image may lack its
    # render for now: the next run that reads its file makes it again)
    assert set(visible) <= set(_catalogued(catalog))
    with catalog.session() as session:
        catalogued = {os.path.basename(path) for path in session.scalars(select(Image.source_path))}
    for name in sorted(os.listdir(folder)):  # the files not catalogued are never ingested again
        if name not in catalogued:
            (folder / name).unlink()
    again = ingest_paths(catalog, [folder], workers=2, progress=False)
    assert (again.images_added, again.images_skipped_existing) == (0, committed)
    assert _files(catalog) == _catalogued(catalog)  # the killed run's pending renders are swept
