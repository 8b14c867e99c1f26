"""Walk 22c: the pull before a round starts reads what changed in Label Studio, not every earlier round.

`round start` pulled every earlier Label Studio round (each: the project, its changed tasks, the list of all
its task ids, the users), fine for tens of rounds, not hundreds.  Now each project is asked once which rounds
changed since they were last read (tasks updated since the rounds' mark; the project's task count for deleted
tasks) and only those are pulled; an answer edited after its round finished still comes in.  Offline, against
the fake Label Studio of tests/ls_fake.py, with the project's task count that Label Studio reports.
"""

from __future__ import annotations

import pytest

from ls_catalog import add_round, build_round_catalog
from ls_fake import FakeLabelStudio, bind_fake, use_fake

ROUNDS = 6


class CountingLabelStudio(FakeLabelStudio):
    """The fake, with the project's ``task_number`` and a count of the task listings asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.listings: list[tuple] = []

    def get_project(self, project_id: int) -> dict:
        return {**super().get_project(project_id), "task_number": len(self.tasks)}

    def iter_tasks(self, project_id: int, *, round_id=None, updated_after=None, with_annotations=True,
                   page_size=100) -> list[dict]:
        self.listings.append((round_id, updated_after, with_annotations))
        return super().iter_tasks(project_id, round_id=round_id, updated_after=updated_after,
                                  with_annotations=with_annotations, page_size=page_size)


@pytest.fixture
def many(tmp_path, test_catalog_url, monkeypatch):
    """Six rounds of two cases each, pushed to the fake and answered, the workspace bound to it."""
    from radloop.labeling.ls_sync import push_round

    root = tmp_path / "ws"
    catalog, first, image_ids = build_round_catalog(root, n_images=2, database_url=test_catalog_url(root))
    round_ids = [first] + [add_round(catalog, image_ids, number=number) for number in range(2, ROUNDS + 1)]
    bind_fake(catalog)
    fake = CountingLabelStudio()
    use_fake(monkeypatch, fake)
    for round_id in round_ids:
        push_round(catalog, fake, round_id, with_model=False)
    for task_id in list(fake.tasks):
        fake.annotate(task_id, [])
    yield catalog, fake, round_ids, image_ids
    catalog.dispose()


def _pull_before_start(catalog, monkeypatch) -> tuple[list[str], list[int]]:
    """``pull_late_answers`` as `round start` calls it; returns its notes and the round ids it pulled."""
    from radloop.app.round_pool import pull_late_answers
    from radloop.app.round_record import RoundConfig, no_progress
    from radloop.labeling import ls_sync

    pulled: list[int] = []
    real = ls_sync.pull_round
    monkeypatch.setattr(ls_sync, "pull_round", lambda catalog, client, round_id, **kwargs: pulled.append(
        round_id) or real(catalog, client, round_id, **kwargs))
    notes = pull_late_answers(catalog, RoundConfig(), no_progress)
    monkeypatch.setattr(ls_sync, "pull_round", real)
    return notes, pulled


def test_only_rounds_changed_since_the_last_start_are_pulled(many, monkeypatch):
    from radloop.app.round_labels import labelled_image_ids

    catalog, fake, round_ids, (image, _) = many
    notes, pulled = _pull_before_start(catalog, monkeypatch)
    assert pulled == round_ids  # first start: nothing was read yet
    assert notes[0].startswith(f"pulled {2 * ROUNDS} late answer(s)"), notes

    fake.listings.clear()
    notes, pulled = _pull_before_start(catalog, monkeypatch)
    assert (pulled, notes) == ([], [])  # nothing changed: no round pulled
    # one probe: the tasks updated since the rounds' mark, without annotations (and no listing of every task)
    assert len(fake.listings) == 1 and fake.listings[0][0] is None and fake.listings[0][1], fake.listings

    # an answer corrected in round 3 after it was read: round 3 only, and the correction counts
    fake.annotate(fake.task_of(round_ids[2], image), ["fracture"])
    notes, pulled = _pull_before_start(catalog, monkeypatch)
    assert pulled == [round_ids[2]]
    assert notes == ["pulled 1 late answer(s) from Label Studio before selecting (round 3: 1)"], notes
    assert labelled_image_ids(catalog, "fracture", simulate=False)[image] is not None
    assert _pull_before_start(catalog, monkeypatch)[1] == []


def test_a_task_deleted_in_label_studio_is_still_noticed(many, monkeypatch):
    """Deleting a task does not bump any task's updated_at: the project's task count says a round lost one."""
    from sqlalchemy import select

    from radloop.core.schema import Selection

    catalog, fake, round_ids, (image, _) = many
    _pull_before_start(catalog, monkeypatch)
    assert _pull_before_start(catalog, monkeypatch)[1] == []
    del fake.tasks[fake.task_of(round_ids[3], image)]
    assert _pull_before_start(catalog, monkeypatch)[1] == [round_ids[3]]
    with catalog.session() as session:
        deleted = [selection.image_id for selection in session.scalars(select(Selection).where(
            Selection.round_id == round_ids[3])) if (selection.meta or {})["ls"].get("deleted_at")]
    assert deleted == [image]
    fake.listings.clear()
    assert _pull_before_start(catalog, monkeypatch)[1] == []
    assert len(fake.listings) == 1, fake.listings  # the count matches again: no listing of every task
