"""Walk 22c: the pull before a round starts, against a REAL Label Studio 1.23 server: one probe per project
(its task count, its tasks updated since the rounds' mark) decides which rounds are pulled; an edited answer and
a deleted task are still noticed (the offline twin is tests/test_walk22c_late_pull_changes.py)."""

from __future__ import annotations

import pytest
from ls_catalog import add_round
from ls_live_rounds import choices, live_rounds
from ls_server import label_studio  # noqa: F401  (session fixture)
from sqlalchemy import select

from radloop.labeling.ls_sync import push_round

pytestmark = pytest.mark.labelstudio


def test_only_changed_rounds_are_pulled_before_a_start(label_studio, test_catalog_url, monkeypatch):  # noqa: F811
    from radloop.core.schema import Selection

    live = live_rounds(label_studio, test_catalog_url, monkeypatch, "walk22c-rounds")
    catalog, first, image_ids = live.catalog, live.first_round, live.image_ids
    client, project_id, pull_before_start = live.client, live.project_id, live.pull_before_start
    try:
        rounds = [first, add_round(catalog, image_ids, number=2), add_round(catalog, image_ids, number=3)]
        annotations = {}
        for round_id in rounds:
            push_round(catalog, client, round_id, with_model=False)
            for task in client.iter_tasks(project_id, round_id=round_id):
                annotations[(round_id, task["data"]["case_id"])] = (task["id"], client.create_annotation(
                    task["id"], choices("normal")))
        assert pull_before_start() == rounds
        assert pull_before_start() == []  # nothing changed in Label Studio

        client.update_annotation(annotations[(rounds[1], image_ids[0])][1], choices("fracture"))
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
        live.close()
