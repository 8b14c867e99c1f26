"""Privacy guards at ingest: burned-in annotations are flagged and kept out of rounds; workspaces are private."""

from __future__ import annotations

import stat

from sqlalchemy import select

from radloop.core.catalog import Catalog
from radloop.core.catalog_info import catalog_info
from radloop.core.ingest import ingest_paths
from radloop.core.schema import Image, IngestError
from test_ingest_dedupe import _catalog_of_schema_1, _dicom, _radiograph


def _flagged(catalog) -> tuple[dict[str, Image], IngestError]:
    """The images by file name and the one ingest warning, once ``burned.dcm`` is checked flagged and
    ``clean.dcm`` not."""
    with catalog.session() as session:
        images = {image.source_path.rsplit("/", 1)[-1]: image for image in session.scalars(select(Image))}
        warning = session.scalars(select(IngestError)).one()
    assert images["burned.dcm"].meta.get("burned_in_annotation") is True
    assert "burned_in_annotation" not in images["clean.dcm"].meta
    return images, warning


def _pooled(catalog) -> set[str]:
    """Image ids any round could select, whatever its pool split."""
    from radloop.app.rounds import RoundConfig, _pool

    return {image_id for name in ("train", "val", "test")
            for image_id in _pool(catalog, RoundConfig(pool_split=name,
                                                       eval_split="val" if name != "val" else "test"))[0]}


def test_burned_in_annotation_is_flagged_warned_and_kept_out_of_round_pools(tmp_path, catalog):
    folder = tmp_path / "archive"
    folder.mkdir()
    _dicom(_radiograph(1), BurnedInAnnotation="YES").save_as(folder / "burned.dcm", enforce_file_format=True)
    _dicom(_radiograph(2), BurnedInAnnotation="NO").save_as(folder / "clean.dcm", enforce_file_format=True)
    summary = ingest_paths(catalog, [folder], workers=1, progress=False)
    assert summary.images_added == 2 and summary.errors == 0 and summary.warnings == 1
    images, warning = _flagged(catalog)
    assert warning.stage == "privacy" and "BurnedInAnnotation" in warning.reason
    assert _pooled(catalog) == {images["clean.dcm"].id}
    assert catalog_info(catalog)["images_with_burned_in_annotation"] == 1


def test_the_burned_in_warning_stays_while_the_image_is_catalogued(tmp_path, catalog):
    """A re-ingest replaces what earlier runs said about a file: the warning is made again (one row, this run's),
    and a run that does not read the file leaves it as it is."""
    folder = tmp_path / "archive"
    folder.mkdir()
    _dicom(_radiograph(1), BurnedInAnnotation="YES").save_as(folder / "burned.dcm", enforce_file_format=True)
    _dicom(_radiograph(2)).save_as(folder / "clean.dcm", enforce_file_format=True)
    last_run = ingest_paths(catalog, [folder], workers=1, progress=False).run_id
    for paths in ([folder], [folder], [folder / "clean.dcm"]):
        again = ingest_paths(catalog, paths, workers=1, progress=False)
        assert again.images_added == 0 and "decode" not in again.stage_seconds
        assert again.warnings == (1 if paths == [folder] else 0)
        with catalog.session() as session:
            rows = session.scalars(select(IngestError)).all()
        assert [(row.path, row.stage, row.run_id) for row in rows] == [
            (str(folder / "burned.dcm"), "privacy", again.run_id if again.warnings else last_run)]
        last_run = again.run_id
        info = catalog_info(catalog)
        assert info["ingest_warnings_by_stage"] == {"privacy": 1} and info["images_with_burned_in_annotation"] == 1
        assert info["ingest_errors_by_stage"] == {} and info["recent_errors"] == []


def test_an_image_catalogued_before_the_burned_in_check_is_flagged_when_its_file_is_read_again(
        tmp_path, workspace):
    """A row from before the check (and before pixel hashes): the backfill decode also reads BurnedInAnnotation,
    so the image is flagged, warned about and out of the round pools from then on."""
    folder = tmp_path / "archive"
    folder.mkdir()
    _dicom(_radiograph(1), BurnedInAnnotation="YES").save_as(folder / "burned.dcm", enforce_file_format=True)
    _dicom(_radiograph(2)).save_as(folder / "clean.dcm", enforce_file_format=True)
    _catalog_of_schema_1(workspace, folder / "burned.dcm", folder / "clean.dcm")
    catalog = Catalog.open(workspace)
    try:
        assert len(_pooled(catalog)) == 2 and catalog_info(catalog)["images_with_burned_in_annotation"] == 0
        summary = ingest_paths(catalog, [folder], workers=1, progress=False)
        assert summary.pixel_hashes_backfilled == 2 and summary.images_added == 0 and summary.warnings == 1
        images, warning = _flagged(catalog)
        assert (warning.path, warning.stage) == (str(folder / "burned.dcm"), "privacy")
        assert warning.reason.startswith(f"warning: {images['burned.dcm'].id}: BurnedInAnnotation YES")
        assert _pooled(catalog) == {images["clean.dcm"].id}
        assert catalog_info(catalog)["images_with_burned_in_annotation"] == 1
    finally:
        catalog.dispose()


def test_a_new_workspace_is_private_to_its_owner(tmp_path):
    from radloop.core.workspace import Workspace, sqlite_url

    root = tmp_path / "new-ws"
    Workspace(root, sqlite_url(root)).ensure()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    existing = tmp_path / "shared-ws"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    Workspace(existing, sqlite_url(existing)).ensure()
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755  # an existing folder's permissions are the owner's call


def test_debug_logging_does_not_print_image_metadata(tmp_path):
    import os
    import subprocess
    import sys

    import numpy as np
    from PIL import Image as PILImage

    folder = tmp_path / "photos"
    folder.mkdir()
    exif = PILImage.Exif()
    exif[0x013B] = "DOE^JOHN MRN12345"  # Artist
    PILImage.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(folder / "x.jpg", exif=exif)
    env = {**os.environ, "RADLOOP_LOG_LEVEL": "DEBUG", "HF_HUB_OFFLINE": "1"}
    env.pop("RADLOOP_DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "radloop.app.cli", "ingest", str(folder), "-w",
                             str(tmp_path / "ws"), "--workers", "1"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "DEBUG" in result.stderr  # debug logging is on ...
    assert "MRN12345" not in result.stderr + result.stdout  # ... but not Pillow's metadata dump


def test_the_app_listens_on_this_machine_only_and_sends_no_usage_statistics():
    import subprocess

    from conftest import REPO_ROOT

    streamlit = REPO_ROOT / ".venv" / "bin" / "streamlit"
    if not streamlit.exists():
        import shutil

        streamlit = shutil.which("streamlit")
    shown = subprocess.run([str(streamlit), "config", "show"], cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=120).stdout
    assert 'address = "127.0.0.1"' in shown and "gatherUsageStats = false" in shown
    assert "maxUploadSize = 64" in shown  # megabytes per upload (Streamlit's default: 200)
