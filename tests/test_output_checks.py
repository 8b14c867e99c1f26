"""Output paths and document roots the CLI refuses in one clear line.

`--out` naming a folder is refused before any work (`ls export`, `label-reports`, `eval-reports
--disagreements`); a write that fails midway leaves no temporary file beside the output; a document root that
does not contain the workspace's staged images is named as such (`ls export`, `round push`, ``image_url``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from ls_catalog import build_round_catalog
from typer.testing import CliRunner

from radloop.app.cli import build_app


@pytest.fixture()
def round_catalog(tmp_path, test_catalog_url):
    root = tmp_path / "ws"
    catalog, round_id, image_ids = build_round_catalog(root, n_images=2, database_url=test_catalog_url(root))
    yield catalog, round_id, image_ids
    catalog.dispose()


def _cli(catalog, *args: str):
    env = {"RADLOOP_DATABASE_URL": catalog.workspace.database_url}
    return CliRunner().invoke(build_app(), [*args, "--workspace", str(catalog.workspace.root)], env=env)


def _media(catalog) -> list[str]:
    folder = catalog.workspace.root / "labelstudio" / "media"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


# ---------------------------------------------------------------------------------------------- --out a folder
def test_ls_export_refuses_an_out_folder_before_any_work(round_catalog, tmp_path):
    catalog, _round_id, _ids = round_catalog
    folder = tmp_path / "somedir"
    folder.mkdir()
    result = _cli(catalog, "ls", "export", "--out", str(folder))
    assert result.exit_code == 2
    assert _one_line(result.output) == f"error: --out {folder} is a folder: give a file path"
    assert not folder.with_name("somedir.tmp").exists() and not list(folder.iterdir())
    assert _media(catalog) == []  # nothing staged either


def test_export_tasks_json_leaves_no_temporary_file(round_catalog, tmp_path, monkeypatch):
    from radloop.labeling.ls_tasks import export_tasks_json

    catalog, round_id, _ids = round_catalog
    folder = tmp_path / "somedir"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="somedir is a folder: give a file path"):
        export_tasks_json(catalog, round_id, folder, with_model=False)
    assert not (tmp_path / "somedir.tmp").exists() and _media(catalog) == []
    # a write that fails at the end (disk full): the previous file is kept whole, no partial one beside it
    out = tmp_path / "tasks.json"
    out.write_text("[]")
    rename = os.replace

    def full_disk(source, target):
        if Path(target) == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        rename(source, target)

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export_tasks_json(catalog, round_id, out, with_model=False)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["somedir", "tasks.json", "ws"]
    assert out.read_text() == "[]"


def test_label_reports_refuses_an_out_folder_before_any_work(tmp_path):
    source = tmp_path / "small.csv"
    source.write_text('report_id,text\nr1,"No fracture."\n')
    folder = tmp_path / "somedir"
    folder.mkdir()
    result = CliRunner().invoke(build_app(), ["label-reports", str(source), "--out", str(folder)])
    assert result.exit_code == 2
    assert _one_line(result.output) == f"error: --out {folder} is a folder: give a file path"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["small.csv", "somedir"]


def test_label_reports_removes_its_partial_file_when_the_rename_fails(tmp_path, monkeypatch):
    source = tmp_path / "small.csv"
    source.write_text('report_id,text\nr1,"No fracture."\n')
    out = tmp_path / "labels.jsonl"
    rename = Path.replace

    def full_disk(self, target):
        if Path(target) == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return rename(self, target)

    monkeypatch.setattr(Path, "replace", full_disk)
    result = CliRunner().invoke(build_app(), ["label-reports", str(source), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert _one_line(result.output) == f"error: cannot write --out {out}: No space left on device"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["small.csv"]


def test_eval_reports_refuses_a_disagreements_folder(tmp_path):
    folder = tmp_path / "somedir"
    folder.mkdir()
    result = CliRunner().invoke(build_app(), ["eval-reports", "--reports", str(tmp_path),
                                              "--disagreements", str(folder)])
    assert result.exit_code == 2
    assert _one_line(result.output) == f"error: --disagreements {folder} is a folder: give a file path"


# ---------------------------------------------------------------------------- a document root without the images
def test_ls_export_names_a_document_root_without_the_workspace(round_catalog, tmp_path):
    catalog, _round_id, _ids = round_catalog
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "x.json"
    result = _cli(catalog, "ls", "export", "--out", str(out), "--document-root", str(elsewhere))
    assert result.exit_code == 2
    line = _one_line(result.output)
    media = catalog.workspace.root / "labelstudio" / "media"
    assert line.startswith(f"error: the Label Studio document root {elsewhere} does not contain the workspace's "
                           f"staged images ({media})"), line
    assert "subpath" not in line and "--media-url" in line
    assert not out.exists() and _media(catalog) == []  # checked once, before staging any image


def test_image_url_names_both_folders(workspace, tmp_path):
    from radloop.labeling.ls_project import ProjectBinding, image_url

    staged = workspace.root / "labelstudio" / "media" / "I-1.png"
    assert image_url(None, staged, document_root=str(workspace.root)) == \
        "/data/local-files/?d=labelstudio/media/I-1.png"
    binding = ProjectBinding(url="http://ls:8080", project_id=1, title="t", config_digest="d",
                             document_root=str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match=r"document root .*elsewhere does not contain the workspace's staged "
                                         r"images \(.*labelstudio/media\)"):
        image_url(binding, staged)


def test_round_push_names_a_bound_document_root_without_the_workspace(round_catalog, tmp_path, monkeypatch):
    from ls_fake import URL, FakeLabelStudio

    from radloop.app import cli_labelstudio
    from radloop.labeling.ls_project import ProjectBinding, save_binding

    catalog, _round_id, _ids = round_catalog
    save_binding(catalog.workspace, ProjectBinding(url=URL, project_id=7, title="radloop findings",
                                                   config_digest="d", document_root=str(tmp_path / "elsewhere")))
    fake = FakeLabelStudio()
    monkeypatch.setattr(cli_labelstudio, "_client", lambda url, token: fake)
    result = _cli(catalog, "round", "push", "--no-model")
    assert result.exit_code == 2
    assert "does not contain the workspace's staged images" in _one_line(result.output)
    assert fake.tasks == {}
