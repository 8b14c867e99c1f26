"""Commands and hints that must work as documented from any folder, and a rerun of `ls init` that changes only
what it was asked to: ``serve-backend --train-config configs/...`` falls back to radloop's shipped configs,
``ls init`` without --project keeps the bound project's title and reports a config change only when the
labelling config changed, and the demo's closing hint opens the app from anywhere."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
from test_ls_init_cleanup import FakeServer

from radloop.labeling.ls_project import DEFAULT_PROJECT_TITLE, init_project, load_binding


class RecordingServer(FakeServer):
    """:class:`FakeServer` that records what each project update sent."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.updates: list[dict] = []

    def update_project(self, project_id: int, **fields) -> None:
        self.updates.append(fields)
        super().update_project(project_id, **fields)


@pytest.fixture(autouse=True)
def _no_document_root_variable(monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)


# --------------------------------------------------------------------------------- serve-backend --train-config
def _serve_backend(monkeypatch, catalog, *arguments):
    """Run ``serve-backend`` without serving: returns (result, the settings it would serve with)."""
    import uvicorn
    from typer.testing import CliRunner

    from radloop.app import backend
    from radloop.app.cli import build_app

    seen = []
    real_create_app = backend.create_app

    def create_app(catalog, *, settings=None, **kwargs):
        seen.append(settings)
        return real_create_app(catalog, settings=settings, **kwargs)

    monkeypatch.setattr(backend, "create_app", create_app)
    monkeypatch.setattr(uvicorn, "run", lambda app, **_kwargs: None)
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    result = CliRunner().invoke(build_app(), ["serve-backend", "--workspace", str(catalog.workspace.root),
                                              "--threads", "1", *arguments])
    return result, (seen[-1] if seen else None)


def test_serve_backend_finds_the_shipped_training_config_from_another_folder(catalog, monkeypatch, tmp_path):
    """The documented `serve-backend --train-config configs/finetune/probe_cpu.yaml` outside the repository."""
    from radloop.core.config import shipped_configs

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result, settings = _serve_backend(monkeypatch, catalog, "--train-config", "configs/finetune/probe_cpu.yaml")
    assert result.exit_code == 0, result.output
    assert Path(settings.train_config).is_absolute()  # training runs later, whatever the server's folder then
    assert Path(settings.train_config) == (shipped_configs() / "finetune" / "probe_cpu.yaml").resolve()


def test_serve_backend_refuses_a_missing_training_config(catalog, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    result, settings = _serve_backend(monkeypatch, catalog, "--train-config", "configs/finetune/no_such.yaml")
    assert result.exit_code != 0 and settings is None
    assert "training config file not found: configs/finetune/no_such.yaml" in " ".join(result.output.split())


# ------------------------------------------------------------------------------------------- ls init --project
def test_ls_init_without_project_keeps_the_bound_projects_title(workspace):
    server = RecordingServer()
    first = init_project(server, workspace, title="fracture study A")
    assert first["created"] and first["title"] == "fracture study A"
    again = init_project(server, workspace)
    assert again["project_id"] == first["project_id"] and again["title"] == "fracture study A"
    assert not again["config_updated"] and not again["title_updated"] and server.updates == []
    assert server.projects[first["project_id"]]["title"] == "fracture study A"
    assert load_binding(workspace).title == "fracture study A"


def test_ls_init_keeps_a_title_changed_in_label_studio(workspace):
    server = RecordingServer()
    project_id = init_project(server, workspace)["project_id"]
    server.projects[project_id]["title"] = "renamed in the UI"
    again = init_project(server, workspace)
    assert again["title"] == "renamed in the UI" and not again["title_updated"] and server.updates == []
    assert load_binding(workspace).title == "renamed in the UI"


def test_ls_init_with_project_renames_and_reports_only_what_changed(workspace):
    server = RecordingServer()
    project_id = init_project(server, workspace)["project_id"]
    assert server.projects[project_id]["title"] == DEFAULT_PROJECT_TITLE
    renamed = init_project(server, workspace, title="fracture study B")
    assert renamed["title_updated"] and not renamed["config_updated"]
    assert [update["title"] for update in server.updates] == ["fracture study B"]
    assert server.projects[project_id]["title"] == "fracture study B"
    reconfigured = init_project(server, workspace, report_text="none")
    assert reconfigured["config_updated"] and not reconfigured["title_updated"]
    assert server.updates[-1]["title"] == "fracture study B" and reconfigured["title"] == "fracture study B"
    assert "Report (not sent" in server.projects[project_id]["label_config"]


def test_ls_init_cli_leaves_the_title_to_the_binding(workspace, monkeypatch):
    """The CLI's --project default is no title (not "radloop findings"), so a rerun does not rename."""
    from typer.testing import CliRunner

    from radloop.app import cli_labelstudio
    from radloop.app.cli import build_app

    server = RecordingServer()
    monkeypatch.setattr(cli_labelstudio, "_client", lambda url, token: server)
    arguments = ["ls", "init", "--workspace", str(workspace.root), "--json"]
    first = CliRunner().invoke(build_app(), [*arguments, "--project", "fracture study A"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(build_app(), arguments)
    assert again.exit_code == 0, again.output
    assert '"title": "fracture study A"' in again.output and '"config_updated": false' in again.output
    assert server.updates == []


# ------------------------------------------------------------------------------------------ demo explore hint
def test_demo_explore_hint_works_from_any_folder(tmp_path, monkeypatch):
    """The hint runs Streamlit with this interpreter (``streamlit`` may not be on PATH) on the app's main.py
    by absolute path (not ``app/main.py``, which exists only from the repository root)."""
    from radloop.app.cli_demo import explore_command

    monkeypatch.delenv("RADLOOP_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    words = shlex.split(explore_command(Path("ws")))
    assert words[0] == f"RADLOOP_WORKSPACE={(tmp_path / 'ws').resolve()}"
    assert words[1:5] == [sys.executable, "-m", "streamlit", "run"]
    main = Path(words[5])
    assert main.is_absolute() and main.is_file() and main.name == "main.py"
    assert "st.set_page_config" in main.read_text()
