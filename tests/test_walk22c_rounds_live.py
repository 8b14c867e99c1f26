"""Walk 22c: the pull before a round starts, against a REAL Label Studio 1.23 server: one probe per project
(its task count, its tasks updated since the rounds' mark) decides which rounds are pulled; an edited answer and
a deleted task are still noticed (the offline twin is tests/test_walk22c_late_pull_changes.py)."""

from __future__ import annotations

import pytest
from ls_catalog import add_round, build_round_catalog
from ls_server import label_studio  # noqa: F401  (session fixture)
from sqlalchemy import select

from radloop.labeling.ls_client import LabelStudioClient
from radloop.labeling.ls_project import init_project
from radloop.labeling.ls_sync import push_round

pytestmark = pytest.mark.labelstudio


def _choices(*values: str) -> list[dict]:
    return [{"from_name": "findings", "to_name": "image", "type": "choices", "value": {"choices": list(values)}}]


def test_only_changed_rounds_are_pulled_before_a_start(label_studio, test_catalog_url, monkeypatch):  # noqa: F811
    from radloop.app.round_pool import pull_late_answers
    from radloop.app.round_record import RoundConfig, no_progress
    from radloop.core.schema import Selection
    from radloop.labeling import ls_sync

    server = label_studio
    root = (server.document_root / "ws-walk22c-rounds").resolve()
    catalog, first, image_ids = build_round_catalog(root, n_images=2, database_url=test_catalog_url(root))
    client = LabelStudioClient(server.url, server.token, retries=2, backoff=0.2)
    project_id = init_project(client, catalog.workspace, title="walk22c rounds",
                              document_root=str(server.document_root))["project_id"]
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    pulled: list[int] = []
    real = ls_sync.pull_round
    monkeypatch.setattr(ls_sync, "pull_round", lambda catalog, client, round_id, **kwargs: pulled.append(
        round_id) or real(catalog, client, round_id, **kwargs))

    def pull_before_start() -> list[int]:
        pulled.clear()
        pull_late_answers(catalog, RoundConfig(), no_progress)
        return list(pulled)

    try:
        rounds = [first, add_round(catalog, image_ids, number=2), add_round(catalog, image_ids, number=3)]
        annotations = {}
        for round_id in rounds:
            push_round(catalog, client, round_id, with_model=False)
            for task in client.iter_tasks(project_id, round_id=round_id):
                annotations[(round_id, task["data"]["case_id"])] = (task["id"], client.create_annotation(
                    task["id"], _choices("normal")))
        assert pull_before_start() == rounds
        assert pull_before_start() == []  # nothing changed in Label Studio

        client.update_annotation(annotations[(rounds[1], image_ids[0])][1], _choices("fracture"))
        assert pull_before_start() == [rounds[1]]
        assert pull_before_start() == []

        client.delete_task(annotations[(rounds[2], image_ids[1])][0])
        assert pull_before_start() == [rounds[2]]
        with catalog.session() as session:
            gone = [s.image_id for s in session.scalars(select(Selection).where(Selection.round_id == rounds[2]))
                    if (s.meta or {}).get("ls", {}).get("deleted_at")]
        assert gone == [image_ids[1]]
        assert pull_before_start() == []
    finally:
        client.delete_project(project_id)
        catalog.dispose()
