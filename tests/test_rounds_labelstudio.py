"""Rounds against a fake Label Studio (offline): pull then finish, pending tasks, late answers, conflicting
answers across rounds, deleted annotations, two pulls of a round at once, the server down.

The fake (tests/ls_fake.py) keeps tasks and annotations in memory and answers the few client calls push/pull
make, in Label Studio's JSON shapes.  The round-flow tests share one workspace and run in file order.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from ls_catalog import add_round, build_round_catalog
from ls_fake import FakeLabelStudio, bind_fake as _bind, use_fake as _use
from rounds_workspace import build_rounds_catalog


def _selected(catalog, round_id) -> list[str]:
    from radloop.core.schema import Selection

    with catalog.session() as session:
        return list(session.scalars(select(Selection.image_id).where(Selection.round_id == round_id)
                                    .order_by(Selection.rank)))


def _fracture_label(catalog, image_id):
    from radloop.core.targets import image_targets

    [targets] = image_targets(catalog, image_ids=[image_id])
    return targets.labels.get("fracture")


# --------------------------------------------------------------------------- pull-level (small catalog)
@pytest.fixture
def small(tmp_path, test_catalog_url):
    """Two cases selected by round 1 and again by round 2, both rounds pushed to a fake Label Studio."""
    from radloop.labeling.ls_sync import push_round

    root = tmp_path / "ws"
    catalog, round_one, image_ids = build_round_catalog(root, n_images=2, database_url=test_catalog_url(root))
    round_two = add_round(catalog, image_ids, number=2)
    _bind(catalog)
    fake = FakeLabelStudio()
    for round_id in (round_one, round_two):
        push_round(catalog, fake, round_id, with_model=False)
    yield catalog, fake, (round_one, round_two), image_ids
    catalog.dispose()


def test_conflicting_answers_across_rounds_are_flagged_not_last_pull_wins(small):
    from radloop.app.round_labels import labelled_image_ids
    from radloop.core.schema import Annotation
    from radloop.labeling.ls_sync import CONSENSUS_SOURCE, pull_round

    catalog, fake, (round_one, round_two), (image, _) = small
    fake.annotate(fake.task_of(round_one, image), ["fracture"])
    fake.annotate(fake.task_of(round_two, image), [])  # the same annotator, in the other round's task: absent
    assert pull_round(catalog, fake, round_one)["disagreements"] == 0
    assert _fracture_label(catalog, image) == 1
    second = pull_round(catalog, fake, round_two)
    assert second["disagreements"] >= 1
    # one vote per task and annotator: 1 against 0 is a tie -> uncertain, no label (not the last pull's 0)
    assert _fracture_label(catalog, image) is None
    assert image not in labelled_image_ids(catalog, "fracture", simulate=False)
    with catalog.session() as session:
        flag = session.scalars(select(Annotation).where(Annotation.source == CONSENSUS_SOURCE,
                                                        Annotation.label == "fracture")
                               .order_by(Annotation.id.desc())).first()
    assert flag.meta["status"] == "uncertain" and flag.meta["value"] is None
    assert sorted(flag.meta["votes"].values()) == [0, 1] and len(flag.meta["ls_task_ids"]) == 2
    # a third vote decides by majority
    fake.annotate(fake.task_of(round_two, image), ["fracture"], user=2)
    pull_round(catalog, fake, round_two)
    assert _fracture_label(catalog, image) == 1
    # pulling again without news adds no rows
    with catalog.session() as session:
        rows = len(session.scalars(select(Annotation.id)).all())
    pull_round(catalog, fake, round_one, full=True)
    pull_round(catalog, fake, round_two, full=True)
    with catalog.session() as session:
        assert len(session.scalars(select(Annotation.id)).all()) == rows


def test_full_pull_withdraws_annotations_deleted_in_label_studio(small):
    from radloop.app.round_labels import labelled_image_ids, round_progress
    from radloop.core.schema import Annotation, Round
    from radloop.labeling.ls_sync import pull_round

    catalog, fake, (round_one, round_two), (image, other) = small
    kept = fake.annotate(fake.task_of(round_one, image), ["fracture"])
    deleted = fake.annotate(fake.task_of(round_one, other), ["fracture"])
    assert pull_round(catalog, fake, round_one)["answered"] == 2
    assert set(labelled_image_ids(catalog, "fracture", simulate=False)) == {image, other}

    fake.delete_annotation(deleted)
    summary = pull_round(catalog, fake, round_one, full=True)
    assert summary["withdrawn"] == 1 and summary["answered"] == 1 and summary["pending"] == 1
    assert set(labelled_image_ids(catalog, "fracture", simulate=False)) == {image}  # not trained on any more
    assert _fracture_label(catalog, other) is None and _fracture_label(catalog, image) == 1
    with catalog.session() as session:
        rows = session.scalars(select(Annotation).where(Annotation.image_id == other)).all()
        assert rows and {row.kind for row in rows} == {"withdrawn"}
        assert {row.meta["withdrawn"]["kind"] for row in rows} == {"choice"}
        assert session.get(Round, round_one).labels_spent == 1
        assert all(row.meta["ls_annotation_id"] == kept for row in session.scalars(
            select(Annotation).where(Annotation.image_id == image, Annotation.kind == "choice")))
    assert round_progress(catalog, [round_one])[round_one]["pending"] == 1  # its task waits again

    # one vote of two withdrawn: the other task's answer is the label again
    fake.annotate(fake.task_of(round_two, image), [])
    pull_round(catalog, fake, round_two)
    assert _fracture_label(catalog, image) is None  # 1 against 0
    fake.delete_annotation(kept)
    pull_round(catalog, fake, round_one, full=True)
    assert _fracture_label(catalog, image) == 0


def _pull_rows(catalog) -> list[tuple]:
    from radloop.core.schema import Annotation

    with catalog.session() as session:
        return session.execute(select(Annotation.source, Annotation.kind, Annotation.external_id, Annotation.version,
                                      Annotation.label).order_by(Annotation.id)).all()


def test_two_pulls_of_a_round_at_once_store_each_annotation_once(small, monkeypatch):
    """The backend's pull before training and `radloop round finish` at once: the second waits for the first's
    lock, then reads what it stored (no row twice, no consensus row appended twice)."""
    import threading

    from radloop.labeling import ls_pull_store, ls_sync

    catalog, fake, (round_one, _), (image, _) = small
    fake.annotate(fake.task_of(round_one, image), ["fracture"])
    fake.annotate(fake.task_of(round_one, image), [], user=2)
    store_task, results, errors = ls_pull_store._store_task, {}, []

    def pull(name):
        try:
            results[name] = ls_sync.pull_round(catalog, fake, round_one)
        except Exception as error:  # reported by the assertion below, not lost in the thread
            errors.append(error)

    second = threading.Thread(target=pull, args=("second",))

    def first_between_read_and_insert(*args, **kwargs):
        if second.ident is None:  # the first pull's first task (the second pull's calls come later)
            second.start()  # it reads Label Studio, then waits for the round's lock ...
            second.join(timeout=1.0)  # ... (without the lock it would store the same rows meanwhile)
        return store_task(*args, **kwargs)

    monkeypatch.setattr(ls_pull_store, "_store_task", first_between_read_and_insert)
    pull("first")
    second.join(timeout=60)
    assert not second.is_alive() and not errors
    assert results["first"]["annotations_added"] == 2 and results["second"]["annotations_added"] == 0
    assert results["second"]["consensus_rows"] == 0
    rows = _pull_rows(catalog)
    assert len(rows) == len(set(rows)) and {row[3] for row in rows} == {1}
    assert len([row for row in rows if row[0] == "labelstudio:consensus"]) == results["first"]["consensus_rows"] > 0


def test_a_pull_that_read_label_studio_before_another_pull_stored_reads_it_again(small, monkeypatch):
    """An annotation made after this pull read Label Studio, pulled by another pull before this one stores:
    it must not be taken for deleted (withdrawn) by this pull's older read."""
    from radloop.labeling import ls_sync

    catalog, fake, (round_one, _), (image, other) = small
    fake.annotate(fake.task_of(round_one, image), ["fracture"])
    read, reads = ls_sync._read_label_studio, []
    late = {}

    def read_then_other_pull(*args, **kwargs):
        reads.append(read(*args, **kwargs))
        if len(reads) == 1:  # meanwhile: a new annotation, which another pull stores
            late["id"] = fake.annotate(fake.task_of(round_one, other), ["fracture"])
            monkeypatch.setattr(ls_sync, "_read_label_studio", read)
            ls_sync.pull_round(catalog, fake, round_one, full=True)
            monkeypatch.setattr(ls_sync, "_read_label_studio", read_then_other_pull)
        return reads[-1]

    monkeypatch.setattr(ls_sync, "_read_label_studio", read_then_other_pull)
    summary = ls_sync.pull_round(catalog, fake, round_one, full=True)
    assert summary["withdrawn"] == 0 and summary["annotations_added"] == 0
    assert len(reads) == 2  # it read Label Studio again, after the other pull
    assert _fracture_label(catalog, other) == 1 and _fracture_label(catalog, image) == 1
    assert {row[1] for row in _pull_rows(catalog)} == {"choice"}


# ------------------------------------------------------------------- round flow (encoder, real images)
@pytest.fixture(scope="module")
def loop(tmp_path_factory, test_catalog_url):
    """40 real fracture radiographs, a random-init encoder, the workspace bound to a fake Label Studio."""
    root = (tmp_path_factory.mktemp("rounds-ls") / "ws").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 40)
    _bind(catalog)
    yield catalog, FakeLabelStudio()
    catalog.dispose()


def test_pull_then_finish_counts_the_rounds_answers_and_reports_pending(loop, monkeypatch):
    from radloop.app.rounds import RoundError, finish_round, round_status, start_round
    from radloop.labeling.ls_sync import pull_round

    catalog, fake = loop
    _use(monkeypatch, fake)
    started = start_round(catalog, strategy="random", budget=3, dataset="fracture")
    assert started.state == "pushed" and started.pending == 3 and len(fake.tasks) == 3
    with pytest.raises(RoundError, match=r"no annotations yet in Label Studio \(3 task"):
        finish_round(catalog)
    first, second, waiting = _selected(catalog, started.round_id)
    fake.annotate(fake.task_of(started.round_id, first), ["fracture"])
    fake.annotate(fake.task_of(started.round_id, second), [])
    pulled = pull_round(catalog, fake, started.round_id)  # `radloop round pull`, then `radloop round finish`
    assert pulled["annotations_added"] == 2 and pulled["answered"] == 2 and pulled["pending"] == 1

    done = finish_round(catalog)
    assert done.state == "finished" and done.labels_spent == 2 and done.answered == 2 and done.pending == 1
    pull_hint = f"`radloop round pull --round {started.number}` collects late answers"
    assert any("1 of 3 Label Studio task(s) still unanswered" in note and pull_hint in note for note in done.notes)
    with pytest.raises(RoundError, match="no open round.*" + pull_hint.replace("`", ".")):
        finish_round(catalog)
    status = round_status(catalog)[-1]
    assert (status.answered, status.pending, status.labels_spent) == (2, 1, 2)


def test_next_round_leaves_pending_images_out_and_late_answers_count(loop, monkeypatch):
    from radloop.app.round_labels import pending_images
    from radloop.app.rounds import round_status, start_round
    from radloop.labeling.ls_sync import pull_round

    catalog, fake = loop
    _use(monkeypatch, fake)
    earlier = round_status(catalog)[-1]
    first, second, waiting = _selected(catalog, earlier.round_id)
    assert list(pending_images(catalog)) == [waiting]
    nxt = start_round(catalog, strategy="random", budget=1000, dataset="fracture")  # the whole pool
    picked = set(_selected(catalog, nxt.round_id))
    assert picked and not picked & {first, second, waiting}  # the pending image is not in a second task
    assert any(note.startswith("1 image(s) left out of the pool") and
               f"round {earlier.number} (`radloop round pull --round {earlier.number}`)" in note
               for note in nxt.notes), nxt.notes

    fake.annotate(fake.task_of(earlier.round_id, waiting), ["fracture"])  # a late answer
    assert pull_round(catalog, fake, earlier.round_id)["answered"] == 3
    late = next(r for r in round_status(catalog) if r.round_id == earlier.round_id)
    assert (late.state, late.labels_spent, late.pending) == ("finished", 3, 0)
    assert waiting not in pending_images(catalog)


def test_label_studio_down_start_and_finish_fail_cleanly_and_resume(loop, monkeypatch):
    from typer.testing import CliRunner

    from radloop.app.cli import build_app
    from radloop.core.schema import Round

    catalog, fake = loop
    _use(monkeypatch, fake)
    env = {"RADLOOP_DATABASE_URL": catalog.workspace.database_url, "COLUMNS": "200"}
    where = ["--workspace", str(catalog.workspace.root)]
    open_round = next(r for r in _rounds(catalog) if r.state != "finished")
    tasks_before = len(fake.tasks)
    fake.down = True
    finish = CliRunner().invoke(build_app(), ["round", "finish", *where], env=env)
    assert finish.exit_code == 2 and "Traceback" not in finish.output, finish.output
    assert "unreachable" in finish.output and "Nothing was lost" in finish.output
    assert "rerun `radloop round finish`" in finish.output and len(finish.output.splitlines()) < 12
    with catalog.session() as session:  # as if the push had failed: the selection is saved, not pushed
        session.get(Round, open_round.id).state = "selected"
    start = CliRunner().invoke(build_app(), ["round", "start", *where], env=env)
    assert start.exit_code == 2 and "Traceback" not in start.output, start.output
    assert "Nothing was lost" in start.output and "rerun `radloop round start`" in start.output

    fake.down = False
    resumed = CliRunner().invoke(build_app(), ["round", "start", "--json", *where], env=env)
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["round_id"] == open_round.id and len(fake.tasks) == tasks_before
    status = CliRunner().invoke(build_app(), ["round", "status", *where], env=env)
    assert status.exit_code == 0 and "pending" in status.output


def _rounds(catalog):
    from radloop.core.schema import Round

    with catalog.session() as session:
        return list(session.scalars(select(Round).order_by(Round.number)))
