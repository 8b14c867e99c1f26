"""A round handed out as an import file, then a server connected (`radloop ls init`), against a fake Label
Studio (tests/ls_fake.py): the round's note names `radloop round push` (a rerun of `round start` only resumes),
a push replaces that note, `round finish` says the tasks are not in Label Studio yet, and a finished round is
not pushed again."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ls_fake import URL, FakeLabelStudio, bind_fake, use_fake
from rounds_workspace import build_rounds_catalog


@pytest.fixture
def unbound(tmp_path, test_catalog_url, monkeypatch):
    """24 real fracture radiographs, a random-init encoder, no Label Studio server configured (yet)."""
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    root = (tmp_path / "ws").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 24)
    yield catalog, FakeLabelStudio()
    catalog.dispose()


def _batch_notes(catalog, round_id) -> list[str]:
    from radloop.app.rounds import round_status

    report = next(report for report in round_status(catalog) if report.round_id == round_id)
    return [note for note in report.notes if note.startswith("batch ")]


def test_an_import_file_round_names_round_push_and_a_push_replaces_its_note(unbound, monkeypatch):
    from radloop.app.rounds import start_round
    from radloop.labeling import ls_sync

    catalog, fake = unbound
    started = start_round(catalog, strategy="random", budget=3, dataset="fracture")
    [written] = _batch_notes(catalog, started.round_id)
    assert written.startswith("batch written to rounds/round-001/label_studio_tasks.json"), written
    assert "`radloop round push --round 1`" in written and "round start" not in written

    bind_fake(catalog)  # `radloop ls init`, then `radloop round push --round 1`
    use_fake(monkeypatch, fake)
    assert ls_sync.push_round(catalog, fake, started.round_id, with_model=False)["imported"] == 3
    assert _batch_notes(catalog, started.round_id) == [f"batch pushed to Label Studio at {URL}"]


def test_finish_says_an_import_file_rounds_tasks_are_not_in_label_studio(unbound, monkeypatch):
    from radloop.app.rounds import RoundError, finish_round, start_round

    catalog, fake = unbound
    start_round(catalog, strategy="random", budget=3, dataset="fracture")
    bind_fake(catalog)
    use_fake(monkeypatch, fake)
    with pytest.raises(RoundError, match=r"^round 1: its 3 task\(s\) are not in Label Studio yet: push them with "
                                         r"`radloop round push --round 1` \(or finish with --simulate\)$"):
        finish_round(catalog)


def test_a_finished_round_is_not_pushed_again(unbound, monkeypatch):
    from radloop.app import cli_labelstudio
    from radloop.app.cli import build_app
    from radloop.app.rounds import finish_round, start_round
    from radloop.labeling import ls_sync

    catalog, fake = unbound
    start_round(catalog, strategy="random", budget=3, dataset="fracture", simulate=True)
    done = finish_round(catalog)
    assert done.state == "finished"
    bind_fake(catalog)
    with pytest.raises(ValueError, match=r"^round 1 is finished: its images are labelled; start a new round with "
                                         r"`radloop round start`$"):
        ls_sync.push_round(catalog, fake, done.round_id, with_model=False)
    monkeypatch.setattr(cli_labelstudio, "_client", lambda url, token: fake)
    result = CliRunner().invoke(build_app(), ["round", "push", "--round", "1", "--no-model", "--workspace",
                                              str(catalog.workspace.root)],
                                env={"RADLOOP_DATABASE_URL": catalog.workspace.database_url})
    assert result.exit_code != 0 and "round 1 is finished" in result.output, result.output
    assert fake.tasks == {}


def test_a_finished_rounds_deleted_task_is_still_imported_again_on_request(unbound, monkeypatch):
    """The finish note on tasks deleted in Label Studio advises `round push --recreate-deleted`: only those."""
    from radloop.app.rounds import finish_round, start_round
    from radloop.labeling import ls_sync

    catalog, fake = unbound
    bind_fake(catalog)
    use_fake(monkeypatch, fake)
    started = start_round(catalog, strategy="random", budget=3, dataset="fracture")
    answered, deleted, _waiting = sorted(fake.tasks)
    fake.annotate(answered, ["fracture"])
    assert finish_round(catalog).state == "finished"
    fake.tasks.pop(deleted)
    summary = ls_sync.push_round(catalog, fake, started.round_id, with_model=False, recreate_deleted=True)
    assert (summary["deleted_in_label_studio"], summary["imported"]) == (1, 1)


def test_a_round_keeps_one_batch_note_written_by_either_hand_out():
    """`round start` (app) and `round push` (labeling) replace the note through the same rule."""
    from radloop.labeling.ls_sync import with_batch_note

    notes = ["resumed round 2", "batch written to rounds/round-002/label_studio_tasks.json", "3 left out"]
    assert with_batch_note(notes, "batch pushed to Label Studio at http://ls") == [
        "resumed round 2", "3 left out", "batch pushed to Label Studio at http://ls"]
    assert with_batch_note(notes, None) == ["resumed round 2", "3 left out"]
    with pytest.raises(ValueError, match="batch note"):
        with_batch_note(notes, "pushed to Label Studio")  # would not be replaced by the next hand-out


def test_finish_without_a_token_says_an_import_file_round_was_never_pushed(unbound, monkeypatch):
    """The Streamlit page finishes without a token in its environment: the pull fails on the token, and the
    error says the batch never reached Label Studio (not only that a token is missing)."""
    from radloop.app.rounds import RoundError, finish_round, start_round

    catalog, _ = unbound
    start_round(catalog, strategy="random", budget=3, dataset="fracture")
    bind_fake(catalog)
    for name in ("LABEL_STUDIO_API_KEY", "RADLOOP_LS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RoundError) as raised:
        finish_round(catalog)
    message = str(raised.value)
    assert "no Label Studio API token" in message, message
    assert message.endswith("Round 1's batch went to an import file and was never pushed: push it with `radloop "
                            "round push --round 1` (or import the file into the project), or finish with --simulate")
