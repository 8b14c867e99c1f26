"""Walkthrough 23j (storage): ingest once the renders' disk is full (or over quota, or read-only) stops at the first
render it cannot write, with one line naming the folder and the cause, instead of recording the same error for
every later image (thousands of error rows); the images committed before stay and a rerun continues."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import numpy as np
import pytest

from radloop.app import cli
from radloop.core import render
from radloop.core.catalog import Catalog
from radloop.core.ingest import ingest_paths
from radloop.core.schema import Image, IngestError


def _inputs(folder: Path, count: int) -> Path:
    from PIL import Image as PILImage

    folder.mkdir()
    for index in range(count):
        pixels = np.random.default_rng(index).integers(0, 255, (40, 40), dtype=np.uint8)
        PILImage.fromarray(pixels).save(folder / f"xray{index}.png")
    return folder


def _refuse_renders_after(monkeypatch, fitting: int, code: int = errno.ENOSPC) -> list[Path]:
    """Render writes fail with ``code`` once ``fitting`` files (render + thumbnail = 2 per image) were written."""
    real_save_png = render._save_png
    written: list[Path] = []

    def save_png(pixels, path):
        if len(written) >= fitting:
            raise OSError(code, "refused")
        written.append(path)
        return real_save_png(pixels, path)

    monkeypatch.setattr(render, "_save_png", save_png)
    return written


def _rows(workspace) -> tuple[int, int]:
    catalog = Catalog.open(workspace)
    try:
        with catalog.session() as session:
            return session.query(Image).count(), session.query(IngestError).count()
    finally:
        catalog.dispose()


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "No space left on device (disk full)"),
                                         (errno.EDQUOT, "Disk quota exceeded"),
                                         (errno.EROFS, "Read-only file system")])
def test_a_full_renders_disk_stops_ingest_at_the_first_image_and_a_rerun_continues(workspace, tmp_path,
                                                                                  monkeypatch, code, cause):
    """Before: every image after the disk filled became an error row and the run went on to the end.  Now an
    OSError naming the renders folder and the cause after the first such image, the 2 images that fit committed,
    no error row, and a rerun with room adds the other 4."""
    inputs = _inputs(tmp_path / "inputs", 6)
    _refuse_renders_after(monkeypatch, fitting=4, code=code)
    catalog = Catalog.open(workspace)
    try:
        with pytest.raises(OSError) as caught:
            ingest_paths(catalog, [inputs], workers=1, progress=False, batch_size=64)
    finally:
        catalog.dispose()
    error = caught.value
    assert (error.errno, error.filename) == (code, str(workspace.renders_dir))
    assert error.strerror.startswith(f"ingest stopped: {cause}: could not write the render; the 2 image(s)")
    assert "run the same command again to continue" in error.strerror and "\n" not in error.strerror
    assert _rows(workspace) == (2, 0)
    assert [path for path in workspace.root.rglob("*") if path.name.endswith((".tmp", ".pending"))] == []

    monkeypatch.undo()
    catalog = Catalog.open(workspace)
    try:
        summary = ingest_paths(catalog, [inputs], workers=1, progress=False)
    finally:
        catalog.dispose()
    assert (summary.images_added, summary.images_skipped_existing, summary.errors) == (4, 2, 0)


def test_a_full_renders_disk_stops_a_run_of_several_workers(workspace, tmp_path, monkeypatch):
    """The stop crosses the worker pool (the error pickles) and the run ends instead of hanging."""
    inputs = _inputs(tmp_path / "inputs", 8)
    _refuse_renders_after(monkeypatch, fitting=0)  # each forked worker inherits the full disk
    catalog = Catalog.open(workspace)
    try:
        with pytest.raises(OSError) as caught:
            ingest_paths(catalog, [inputs], workers=2, progress=False)
    finally:
        catalog.dispose()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(workspace.renders_dir)
    assert _rows(workspace) == (0, 0)


def test_the_cli_prints_the_stop_as_one_line(workspace, tmp_path, monkeypatch, capsys):
    """`radloop ingest` prints the stop as one error line (exit 2), no traceback."""
    inputs = _inputs(tmp_path / "inputs", 3)
    _refuse_renders_after(monkeypatch, fitting=2)
    monkeypatch.setattr(sys, "argv", ["radloop", "ingest", str(inputs), "-w", str(workspace.root), "-j", "1"])
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ingest stopped: No space left on device (disk full): could not write the "
                               "render; the 1 image(s) added before stay catalogued")
    assert lines[0].endswith(f": {workspace.renders_dir}"), lines


def test_a_lost_render_that_cannot_be_made_again_on_a_full_disk_stops_the_run_too(workspace, tmp_path, monkeypatch):
    """Restoring a catalogued image's lost render meets the same full disk: the run stops there too (before, one
    warning for each such image), naming the renders folder; the catalogued images stay."""
    inputs = _inputs(tmp_path / "inputs", 3)
    catalog = Catalog.open(workspace)
    try:
        ingest_paths(catalog, [inputs], workers=1, progress=False)
        lost = min(workspace.renders_dir.rglob("*.png"))
        lost.unlink()
        _refuse_renders_after(monkeypatch, fitting=0)
        with pytest.raises(OSError) as caught:
            ingest_paths(catalog, [inputs], workers=1, progress=False)
    finally:
        catalog.dispose()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(workspace.renders_dir)
    assert _rows(workspace) == (3, 0)
