"""Walk 22m: annotations deleted in a REAL Label Studio 1.23 server reach the catalog through incremental pulls
and the pull before a round starts (the offline twin is tests/test_walk22m_deleted_annotations.py): the
project's annotation count (skipped ones included) and each task's count, as this server reports them, are
what the check compares."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from ls_catalog import add_round
from ls_live_rounds import choices, live_rounds
from ls_server import label_studio  # noqa: F401  (session fixture)
from sqlalchemy import select

from radloop.labeling.ls_sync import pull_round, push_round

pytestmark = pytest.mark.labelstudio


def test_deleted_annotations_are_withdrawn_without_a_full_pull(label_studio, test_catalog_url, monkeypatch):  # noqa: F811
    from radloop.core.schema import Annotation, Round

    live = live_rounds(label_studio, test_catalog_url, monkeypatch, "walk22m-deleted")
    catalog, first, image_ids = live.catalog, live.first_round, live.image_ids
    client, project_id, pull_before_start = live.client, live.project_id, live.pull_before_start

    def kinds(annotation_id: int) -> set[str]:
        with catalog.session() as session:
            return {row.kind for row in session.scalars(select(Annotation).where(
                Annotation.external_id == f"ls:{project_id}:{annotation_id}"))}

    try:
        rounds = [first, add_round(catalog, image_ids, number=2)]
        answers, tasks = {}, {}
        for round_id in rounds:
            push_round(catalog, client, round_id, with_model=False)
            for task in client.iter_tasks(project_id, round_id=round_id):
                key = (round_id, task["data"]["case_id"])
                tasks[key] = task["id"]
                skip = key == (rounds[1], image_ids[1])  # one skipped task: Label Studio counts it apart
                answers[key] = client.create_annotation(task["id"], [] if skip else choices("fracture"),
                                                        was_cancelled=skip)
        assert client.get_project(project_id)["annotation_number"] == 4  # skipped one included
        assert pull_before_start() == rounds
        assert pull_before_start() == []

        # Label Studio 1.23.2 bumps the task's updated_at when an annotation is deleted (one by one or by the
        # Data Manager's "Delete annotations" action); the check must not depend on it (another server version,
        # a deletion that lands inside the cursor margin): the marks are moved past the bump before each check
        def delete(key, *, action: bool = False) -> None:
            before = client.get_task(tasks[key])["updated_at"]
            if action:
                client.sdk.actions.create(id="delete_tasks_annotations", project=project_id,
                                          selected_items={"all": False, "included": [tasks[key]]})
            else:
                client.sdk.annotations.delete(id=answers[key])
            assert client.get_task(tasks[key])["updated_at"] > before  # measured on 1.23.2
            later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
            with catalog.session() as session:
                for row in session.scalars(select(Round).where(Round.id.in_(rounds))):
                    meta = dict(row.meta)
                    meta["ls_pull"] = {**meta["ls_pull"], "cursor": later}
                    meta["ls_seen"] = {**meta["ls_seen"], "through": later}
                    row.meta = meta

        delete((rounds[1], image_ids[0]))
        assert client.get_project(project_id)["annotation_number"] == 3
        assert pull_before_start() == [rounds[1]]
        assert kinds(answers[(rounds[1], image_ids[0])]) == {"withdrawn"}
        assert pull_before_start() == []

        delete((rounds[1], image_ids[1]), action=True)  # the skipped task
        assert client.get_project(project_id)["annotation_number"] == 2
        assert pull_before_start() == [rounds[1]]
        assert kinds(answers[(rounds[1], image_ids[1])]) == {"withdrawn"}
        assert pull_before_start() == []

        delete((rounds[0], image_ids[0]), action=True)
        summary = pull_round(catalog, client, rounds[0])  # incremental, not --full
        assert summary["incremental"] and summary["tasks_read"] == 1, summary
        assert summary["tasks_with_deleted_annotations"] == 1 and summary["withdrawn"] == 1, summary
        assert summary["answered"] == 1 and summary["pending"] == 1, summary
        assert kinds(answers[(rounds[0], image_ids[0])]) == {"withdrawn"}
        assert kinds(answers[(rounds[0], image_ids[1])]) == {"choice"}
    finally:
        live.close()
