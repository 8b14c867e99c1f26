"""`radloop ls init` against a REAL Label Studio server (tests/ls_server.py): a project it creates and then
cannot configure is not left behind, unless another workspace bound to it meanwhile; a refused token is not
reported as serving switched off."""

from __future__ import annotations

import pytest
from ls_catalog import build_round_catalog
from ls_server import label_studio  # noqa: F401  (session fixture)

from radloop.labeling.ls_client import AuthenticationError, LabelStudioClient
from radloop.labeling.ls_project import binding_path, check_local_files, init_project, load_binding, media_dir

pytestmark = pytest.mark.labelstudio

TITLE = "radloop cleanup live"
RACE_TITLE = "radloop cleanup race live"


def test_a_refused_serving_check_leaves_no_project_behind(label_studio, test_catalog_url, monkeypatch):  # noqa: F811
    server = label_studio
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    root = (server.document_root / "ws-cleanup").resolve()
    catalog, _round_id, _ids = build_round_catalog(root, n_images=1, database_url=test_catalog_url(root))
    client = LabelStudioClient(server.url, server.token, retries=2, backoff=0.2)
    try:
        assert client.find_project(TITLE) is None
        # the workspace as an explicit root: Label Studio accepts the storage (under its real root), then the
        # probe shows it serves from its own root: ls init stops, and removes the project it had just created
        with pytest.raises(ValueError, match=f"serves local files from {server.document_root.resolve()}") as raised:
            init_project(client, catalog.workspace, title=TITLE, document_root=str(root))
        assert "the project it created was removed" in str(raised.value)
        assert client.find_project(TITLE) is None
        assert not binding_path(catalog.workspace).exists()

        # the same refusal for a project that existed keeps it
        kept = client.create_project(TITLE, "<View><Image name='image' value='$image'/></View>")
        with pytest.raises(ValueError, match="serves local files from") as raised:
            init_project(client, catalog.workspace, title=TITLE, document_root=str(root))
        assert "removed" not in str(raised.value) and client.find_project(TITLE) == kept

        # Label Studio refuses the local-files request of a wrong token too: said as such, not as serving off
        media = media_dir(catalog.workspace)
        with pytest.raises(AuthenticationError, match="not serving being switched off"):
            check_local_files(LabelStudioClient(server.url, "not-the-token", retries=0), media,
                              str(server.document_root), explicit=True)
        assert not list(media.glob(".radloop-serving-check*"))
    finally:
        project_id = client.find_project(TITLE)
        if project_id is not None:
            client.delete_project(project_id)
        catalog.dispose()


class _RacedClient(LabelStudioClient):
    """A client whose serving check lets another workspace's whole `ls init` run first, then finds serving off."""

    def __init__(self, *args, other_init, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.other_init = other_init
        self.other_summary: dict | None = None

    def local_file_status(self, relative: str) -> int:
        if self.other_summary is None:
            self.other_summary = self.other_init()
        return 403


def test_a_created_project_another_workspace_bound_to_meanwhile_is_kept(label_studio, monkeypatch):  # noqa: F811
    from radloop.core.workspace import resolve_workspace

    server = label_studio
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    first = resolve_workspace(server.document_root / "ws-race-first").ensure()
    second = resolve_workspace(server.document_root / "ws-race-second").ensure()
    client = LabelStudioClient(server.url, server.token, retries=2, backoff=0.2)
    raced = _RacedClient(server.url, server.token, retries=2, backoff=0.2,
                         other_init=lambda: init_project(client, second, title=RACE_TITLE))
    try:
        assert client.find_project(RACE_TITLE) is None
        with pytest.raises(ValueError, match=r"does not serve local files \(HTTP 403") as raised:
            init_project(raced, first, title=RACE_TITLE)
        project_id = raced.other_summary["project_id"]
        assert not raced.other_summary["created"] and load_binding(second).project_id == project_id
        assert f"the project it created was kept (Label Studio project {project_id}, {RACE_TITLE!r}) because it " \
               "has a storage this `ls init` did not add (import localfiles " in str(raised.value), str(raised.value)
        assert client.find_project(RACE_TITLE) == project_id and client.get_project(project_id)["task_number"] == 0
        assert [(storage["direction"], storage["type"]) for storage in client.list_storages(project_id)] == \
            [("import", "localfiles")] * 2
        assert not binding_path(first).exists()
    finally:
        project_id = client.find_project(RACE_TITLE)
        if project_id is not None:
            client.delete_project(project_id)


def test_storages_of_both_directions_are_listed_per_type(label_studio):  # noqa: F811
    """`list_storages` reads each storage type's own list (Label Studio's all-types list answers [] for a type
    whose listing fails): an export storage, and the import storage, of a real project are both found."""
    server = label_studio
    client = LabelStudioClient(server.url, server.token, retries=2, backoff=0.2)
    folder = (server.document_root / "ws-storage-list").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    project_id = client.create_project("radloop storage list live", "<View><Image name='image' value='$image'/></View>")
    http = client._sdk._client_wrapper.httpx_client
    try:
        assert client.list_storages(project_id) == []
        for route in ("api/storages/localfiles/", "api/storages/export/localfiles"):
            response = http.request(route, method="POST", json={"project": project_id, "path": str(folder),
                                                                 "title": "radloop test", "use_blob_urls": True})
            assert response.status_code == 201, response.text
        listed = client.list_storages(project_id)
        assert sorted((storage["direction"], storage["type"]) for storage in listed) == \
            [("export", "localfiles"), ("import", "localfiles")]
        assert all(isinstance(storage["id"], int) for storage in listed)
    finally:
        client.delete_project(project_id)
