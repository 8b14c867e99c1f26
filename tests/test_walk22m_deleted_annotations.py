"""Walk 22m: an annotation deleted in Label Studio is noticed by incremental pulls and by the check before a
round starts, not only by `round pull --full`.

Label Studio does not always bump a task's ``updated_at`` when one of its annotations is deleted (the fake of
tests/ls_fake.py never does), so an incremental pull did not read the task and the catalog kept training on
the deleted answer.  Now the pull compares each task's annotation count (``total_annotations`` +
``cancelled_annotations``, in the listing of the round's task ids it already makes) with the catalog's live
annotations, and the start's probe compares the project's annotation count.  Offline, against the fake.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ls_catalog import add_round, build_round_catalog
from ls_fake import FakeLabelStudio, bind_fake, use_fake


class CountingLabelStudio(FakeLabelStudio):
    """The fake with Label Studio's counts: the project's task and annotation numbers, each task's annotations
    (as Label Studio 1.23.2 reports them: skipped ones apart), and a log of the task listings asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.listings: list[tuple] = []

    def get_project(self, project_id: int) -> dict:
        annotations = sum(len(task["annotations"]) for task in self.tasks.values())
        return {**super().get_project(project_id), "task_number": len(self.tasks), "annotation_number": annotations}

    def iter_tasks(self, project_id: int, *, round_id=None, updated_after=None, with_annotations=True,
                   page_size=100) -> list[dict]:
        self.listings.append((round_id, updated_after, with_annotations))
        listed = super().iter_tasks(project_id, round_id=round_id, updated_after=updated_after,
                                    with_annotations=with_annotations, page_size=page_size)
        for task in listed:
            kept = self.tasks[task["id"]]["annotations"]
            task["cancelled_annotations"] = sum(1 for a in kept if a["was_cancelled"])
            task["total_annotations"] = len(kept) - task["cancelled_annotations"]
        return listed


@pytest.fixture
def answered(tmp_path, test_catalog_url, monkeypatch):
    """Three rounds of two cases, pushed to the fake, each task answered "fracture", all pulled."""
    from radloop.labeling.ls_sync import pull_round, push_round

    root = tmp_path / "ws"
    catalog, first, image_ids = build_round_catalog(root, n_images=2, database_url=test_catalog_url(root))
    round_ids = [first] + [add_round(catalog, image_ids, number=number) for number in (2, 3)]
    bind_fake(catalog)
    fake = CountingLabelStudio()
    use_fake(monkeypatch, fake)
    annotations = {}
    for round_id in round_ids:
        push_round(catalog, fake, round_id, with_model=False)
        for image_id in image_ids:
            annotations[(round_id, image_id)] = fake.annotate(fake.task_of(round_id, image_id), ["fracture"])
        pull_round(catalog, fake, round_id)
    yield catalog, fake, round_ids, image_ids, annotations
    catalog.dispose()


def _kinds(catalog, annotation_id: int) -> set[str]:
    from radloop.core.schema import Annotation

    with catalog.session() as session:
        return {row.kind for row in session.scalars(select(Annotation).where(
            Annotation.external_id.like(f"%:{annotation_id}")))}


def test_an_incremental_pull_withdraws_an_annotation_deleted_in_label_studio(answered):
    from radloop.labeling.ls_sync import pull_round

    catalog, fake, round_ids, (image, other), annotations = answered
    unchanged = pull_round(catalog, fake, round_ids[0])
    assert unchanged["tasks_with_deleted_annotations"] == 0  # (the newest task is re-read: cursor margin)
    fake.delete_annotation(annotations[(round_ids[0], image)])  # the older task: outside the cursor margin
    fake.listings.clear()
    summary = pull_round(catalog, fake, round_ids[0])  # incremental: the task's updated_at did not move
    assert summary["incremental"] and summary["tasks_with_deleted_annotations"] == 1, summary
    assert summary["withdrawn"] == 1 and summary["answered"] == 1 and summary["pending"] == 1, summary
    assert _kinds(catalog, annotations[(round_ids[0], image)]) == {"withdrawn"}
    assert _kinds(catalog, annotations[(round_ids[0], other)]) == {"choice"}
    assert len(fake.listings) == 3, fake.listings  # changed tasks, task ids (with counts), the one re-read
    again = pull_round(catalog, fake, round_ids[0])
    assert again["tasks_with_deleted_annotations"] == 0 and again["withdrawn"] == 0


def test_the_pull_before_a_start_notices_a_deleted_annotation(answered, monkeypatch):
    from radloop.app.round_pool import pull_late_answers
    from radloop.app.round_record import RoundConfig, no_progress
    from radloop.labeling import ls_sync

    catalog, fake, round_ids, (image, _), annotations = answered
    pulled: list[int] = []
    real = ls_sync.pull_round
    monkeypatch.setattr(ls_sync, "pull_round", lambda catalog, client, round_id, **kwargs: pulled.append(
        round_id) or real(catalog, client, round_id, **kwargs))

    def start() -> list[int]:
        pulled.clear()
        fake.listings.clear()
        pull_late_answers(catalog, RoundConfig(), no_progress)
        return list(pulled)

    start()  # the first probe marks every round
    assert start() == [] and len(fake.listings) == 1, fake.listings  # nothing changed: one probe listing
    fake.delete_annotation(annotations[(round_ids[1], image)])
    assert start() == [round_ids[1]]
    assert _kinds(catalog, annotations[(round_ids[1], image)]) == {"withdrawn"}
    assert start() == [] and len(fake.listings) == 1, fake.listings  # counts agree again: no listing
    # a new answer elsewhere moves the project's count too, but its task was updated: no listing for it
    fake.annotate(fake.task_of(round_ids[2], image), [], user=2)
    assert start() == [round_ids[2]]
    assert len([listing for listing in fake.listings if listing[1] is None and listing[0] is None]) == 0
    # a task imported and answered by hand (no radloop round): one listing, then its count is in the offset
    hand = fake.import_tasks(7, [{"data": {"image": "https://media.test/hand.png"}}])[0]
    fake.annotate(hand, [])
    assert start() == []
    assert start() == [] and len(fake.listings) == 1, fake.listings  # it is the newest task: re-read each time
