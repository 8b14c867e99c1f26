"""`radloop ls init` is all or nothing for the project it creates: a later step that fails (storage refused,
serving check failed, binding not written) removes that project again, unless another workspace may have bound
to it meanwhile (tasks, another storage, a changed config); a project that existed before is never touched, nor
one left by Ctrl-C.  A fake client, in memory; tests/test_ls_init_cleanup_live.py does it for real."""

from __future__ import annotations

import itertools
import logging

import pytest

from radloop.labeling.ls_client import AuthenticationError, LabelStudioError, ProjectNotFoundError
from radloop.labeling.ls_project import ProjectBinding, binding_path, init_project, load_binding, save_binding

URL = "http://ls.test:8080"
TITLE = "radloop findings"


class FakeServer:
    """The client calls ``init_project`` makes, in memory.

    Args:
        serving: the local-files probe's HTTP status, or an exception it raises.
        storage_error: raised by ``ensure_local_storage``.
        delete_error: raised by ``delete_project``.
        list_error: raised by ``list_storages``.
        token_refused_after: ``whoami`` calls accepted before the token is refused (None: always accepted).
    """

    url = URL

    def __init__(self, *, serving: int | BaseException = 200, storage_error: Exception | None = None,
                 delete_error: Exception | None = None, list_error: Exception | None = None,
                 token_refused_after: int | None = None) -> None:
        self.projects: dict[int, dict] = {}
        self.storages: dict[int, tuple[int, str]] = {}
        self.tasks: dict[int, int] = {}  # project id -> task count
        self.deleted: list[int] = []
        self.serving = serving
        self.storage_error = storage_error
        self.delete_error = delete_error
        self.list_error = list_error
        self.token_refused_after = token_refused_after
        self.whoami_calls = 0
        self._ids = itertools.count(1)

    def whoami(self) -> dict:
        self.whoami_calls += 1
        if self.token_refused_after is not None and self.whoami_calls > self.token_refused_after:
            raise AuthenticationError(f"Label Studio at {URL} rejected the API token (HTTP 401) while trying to "
                                      "check the API token")
        return {"id": 1}

    def find_project(self, title: str) -> int | None:
        return min((key for key, project in self.projects.items() if project["title"] == title), default=None)

    def get_project(self, project_id: int) -> dict:
        if project_id not in self.projects:
            raise ProjectNotFoundError(f"Label Studio project {project_id} was not found")
        return {"id": project_id, **self.projects[project_id], "task_number": self.tasks.get(project_id, 0)}

    def create_project(self, title: str, label_config: str, description: str = "") -> int:
        project_id = next(self._ids)
        self.projects[project_id] = {"title": title, "label_config": label_config}
        return project_id

    def update_project(self, project_id: int, **fields) -> None:
        self.projects[project_id].update(fields)

    def delete_project(self, project_id: int) -> None:
        if self.delete_error is not None:
            raise self.delete_error
        if self.projects.pop(project_id, None) is None:
            raise ProjectNotFoundError(f"Label Studio project {project_id} was not found")
        self.storages = {key: value for key, value in self.storages.items() if value[0] != project_id}
        self.deleted.append(project_id)

    def ensure_local_storage(self, project_id: int, path: str) -> int:
        if self.storage_error is not None:
            raise self.storage_error
        storage_id = next(self._ids)
        self.storages[storage_id] = (project_id, path)
        return storage_id

    def list_storages(self, project_id: int) -> list[dict]:
        if self.list_error is not None:
            raise self.list_error
        return [{"direction": "import", "type": "localfiles", "id": storage_id}
                for storage_id, (project, _path) in self.storages.items() if project == project_id]

    def local_file_status(self, relative: str) -> int:
        if isinstance(self.serving, BaseException):
            raise self.serving
        return self.serving


@pytest.fixture(autouse=True)
def _no_document_root_variable(monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)


def _probe_files(workspace) -> list:
    return list((workspace.root / "labelstudio" / "media").glob(".radloop-serving-check*"))


def test_a_successful_init_keeps_the_project_it_created(workspace):
    server = FakeServer()
    summary = init_project(server, workspace)
    assert summary["created"] and server.projects.keys() == {summary["project_id"]} and not server.deleted
    assert load_binding(workspace).project_id == summary["project_id"]


@pytest.mark.parametrize("failure", ["serving off", "storage refused", "binding not written"])
def test_the_project_created_is_removed_when_a_later_step_fails(workspace, monkeypatch, failure):
    from radloop.labeling import ls_project

    server = FakeServer(serving=403 if failure == "serving off" else 200)
    expected: type[Exception] = ValueError
    if failure == "storage refused":
        server.storage_error = LabelStudioError("Label Studio refused to create local-files storage (HTTP 400): "
                                                "Path /x must start with LOCAL_FILES_DOCUMENT_ROOT")
        expected = LabelStudioError
    if failure == "binding not written":
        def full_disk(*args, **kwargs):
            raise OSError("No space left on device")

        monkeypatch.setattr(ls_project, "save_binding", full_disk)
        expected = OSError
    with pytest.raises(expected) as raised:
        init_project(server, workspace)
    assert type(raised.value) is expected  # the caller (the CLI) still sees the error it knows
    message = str(raised.value)
    assert "the project it created was removed (Label Studio project 1, 'radloop findings')" in message, message
    assert {"serving off": "serving is switched off", "storage refused": "LOCAL_FILES_DOCUMENT_ROOT",
            "binding not written": "No space left"}[failure] in message
    assert server.projects == {} and server.storages == {} and server.deleted == [1]
    assert not binding_path(workspace).exists() and not _probe_files(workspace)


@pytest.mark.parametrize("found_by", ["title", "binding"])
def test_a_project_that_existed_is_never_removed(workspace, found_by):
    server = FakeServer(serving=403)
    if found_by == "title":
        existing = server.create_project(TITLE, "<View/>")
    else:  # bound under another title (kept: no --project), then init fails
        existing = server.create_project("an older title", "<View/>")
        save_binding(workspace, ProjectBinding(url=URL, project_id=existing, title="an older title",
                                               config_digest="d"))
    before = binding_path(workspace).read_text() if found_by == "binding" else None
    with pytest.raises(ValueError, match="serving is switched off") as raised:
        init_project(server, workspace)
    assert "removed" not in str(raised.value)
    assert existing in server.projects and not server.deleted
    assert (binding_path(workspace).read_text() if found_by == "binding" else None) == before


def test_a_failed_removal_keeps_the_error_and_names_the_project(workspace):
    server = FakeServer(serving=403, delete_error=LabelStudioError(
        "Label Studio refused to delete project 1 (HTTP 500): Server Error"))
    with pytest.raises(ValueError) as raised:
        init_project(server, workspace)
    message = str(raised.value)
    assert message.startswith(f"Label Studio at {URL} does not serve local files (HTTP 403"), message
    assert "the project it created could not be removed (Label Studio refused to delete project 1" in message
    assert "delete Label Studio project 1 ('radloop findings') by hand" in message
    assert 1 in server.projects and not binding_path(workspace).exists()


def test_an_interrupted_init_deletes_nothing_and_binds_nothing(workspace, caplog):
    server = FakeServer(serving=KeyboardInterrupt())
    with caplog.at_level(logging.WARNING, logger="radloop.labeling.ls_project"), pytest.raises(KeyboardInterrupt):
        init_project(server, workspace)
    assert 1 in server.projects and not server.deleted
    assert not binding_path(workspace).exists() and not _probe_files(workspace)
    assert "project 1 ('radloop findings'), created by this `ls init`, is kept" in caplog.text


def test_a_probe_refused_for_the_token_is_not_reported_as_serving_off(workspace):
    """Label Studio answers 403 to unauthenticated requests too: the token is checked again to tell which."""
    server = FakeServer(serving=403, token_refused_after=1)  # the token is revoked after init's first check
    with pytest.raises(AuthenticationError, match="rejected the API token") as raised:
        init_project(server, workspace)
    assert "HTTP 403 was this refusal, not serving being switched off" in str(raised.value)
    assert "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED" not in str(raised.value)


def test_a_probe_answered_401_with_an_accepted_token_names_a_proxy(workspace):
    from radloop.labeling.ls_project import check_local_files, media_dir

    media = media_dir(workspace)
    media.mkdir(parents=True)
    with pytest.raises(ValueError, match="HTTP 401.*accepts the API token.*proxy"):
        check_local_files(FakeServer(serving=401), media, str(workspace.root), explicit=True)
    assert not _probe_files(workspace)


class RacingServer(FakeServer):
    """Another workspace's ``ls init`` (or use) happens while this one checks serving, which then fails.

    Args:
        meanwhile: what the other workspace does to the project created here: ``bind`` (its whole ``ls init``),
            ``tasks`` (tasks appear), ``config`` (its ``ls init`` with another report setting rewrites the config).
    """

    def __init__(self, other_workspace, meanwhile: str, **kwargs) -> None:
        super().__init__(serving=403, **kwargs)
        self.other_workspace = other_workspace
        self.meanwhile = meanwhile
        self.other_summary: dict | None = None
        self._raced = False

    def local_file_status(self, relative: str) -> int:
        if self.meanwhile == "tasks":
            self.tasks[1] = 2
        elif not self._raced:
            self._raced = True
            self.serving = 200  # the other workspace's own serving check (a call back into here) passes
            report_text = "none" if self.meanwhile == "config" else None
            self.other_summary = init_project(self, self.other_workspace, report_text=report_text)
            self.serving = 403
        return super().local_file_status(relative)


@pytest.mark.parametrize("meanwhile, reason", [
    ("bind", "because it has a storage this `ls init` did not add (import localfiles 3)"),
    ("tasks", "because it has 2 task(s)"),
    ("config", "because its title or labelling config was changed"),
])
def test_a_created_project_another_workspace_took_up_meanwhile_is_kept(workspace, tmp_path, meanwhile, reason):
    from radloop.core.workspace import resolve_workspace

    other = resolve_workspace(tmp_path / "other").ensure()
    server = RacingServer(other, meanwhile)
    with pytest.raises(ValueError, match="serving is switched off") as raised:
        init_project(server, workspace)
    message = str(raised.value)
    assert f"the project it created was kept (Label Studio project 1, 'radloop findings') {reason}: another " \
           "workspace's `ls init` may have bound to it meanwhile" in message, message
    assert "removed" not in message
    assert 1 in server.projects and not server.deleted and not binding_path(workspace).exists()
    if meanwhile != "tasks":
        assert server.other_summary["project_id"] == 1 and not server.other_summary["created"]
        assert load_binding(other).project_id == 1  # the other binding still points at a live project


def test_a_created_project_whose_state_cannot_be_read_is_kept(workspace):
    server = FakeServer(serving=403, list_error=LabelStudioError(
        "Label Studio refused to list the import storages of project 1 (HTTP 500): Server Error"))
    with pytest.raises(ValueError, match="serving is switched off") as raised:
        init_project(server, workspace)
    assert "the project it created was kept (Label Studio project 1, 'radloop findings') because whether it is " \
           "untouched could not be checked (Label Studio refused to list the import storages" in str(raised.value)
    assert 1 in server.projects and not server.deleted


def test_a_created_project_deleted_meanwhile_is_reported_gone(workspace):
    class Server(FakeServer):
        def local_file_status(self, relative: str) -> int:
            self.projects.clear()  # deleted in Label Studio's UI while the check ran
            return 403

    with pytest.raises(ValueError, match="serving is switched off") as raised:
        init_project(Server(), workspace)
    assert "the project it created was removed (Label Studio project 1" in str(raised.value)
    assert "kept" not in str(raised.value)


def test_an_os_error_with_a_file_name_carries_the_removal_as_a_note(workspace):
    """OSError(errno, strerror, filename) prints its attributes, not its args: the removal is a PEP 678 note
    (tracebacks show it; `ls init` prints it, below)."""
    (workspace.root / "labelstudio" / "project.tmp").mkdir(parents=True)  # save_binding's temporary name
    server = FakeServer()
    with pytest.raises(IsADirectoryError) as raised:
        init_project(server, workspace)
    temporary = str(workspace.root / "labelstudio" / "project.tmp")
    assert str(raised.value) == f"[Errno 21] Is a directory: {temporary!r}"
    assert raised.value.__notes__ == ["the project it created was removed (Label Studio project 1, 'radloop "
                                      "findings'): fix the cause and rerun `radloop ls init`"]
    assert raised.value.errno == 21 and server.deleted == [1]


def test_ls_init_reports_an_unwritable_binding_without_a_traceback(workspace, monkeypatch):
    from typer.testing import CliRunner

    from radloop.app import cli_labelstudio
    from radloop.app.cli import build_app

    (workspace.root / "labelstudio" / "project.tmp").mkdir(parents=True)
    server = FakeServer()
    monkeypatch.setattr(cli_labelstudio, "_client", lambda url, token: server)
    result = CliRunner().invoke(build_app(), ["ls", "init", "--url", URL, "--workspace", str(workspace.root)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    output = " ".join(result.output.split())
    assert "error: [Errno 21] Is a directory" in output, output
    assert "the project it created was removed (Label Studio project 1, 'radloop findings')" in output
    assert server.deleted == [1]


def test_ls_init_prints_the_notes_of_an_error(workspace, monkeypatch):
    from typer.testing import CliRunner

    from radloop.app import cli_labelstudio
    from radloop.app.cli import build_app
    from radloop.labeling import ls_project

    def refused(*args, **kwargs):
        error = PermissionError(13, "Permission denied")
        error.add_note("a note from further down")
        raise error

    monkeypatch.setattr(ls_project, "init_project", refused)
    monkeypatch.setattr(cli_labelstudio, "_client", lambda url, token: FakeServer())
    result = CliRunner().invoke(build_app(), ["ls", "init", "--url", URL, "--workspace", str(workspace.root)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error: [Errno 13] Permission denied; a note from further down" in " ".join(result.output.split())
