"""The round lifecycle against a fake Label Studio (tests/ls_fake.py), offline: `round start` pulls late answers
first (and goes on when Label Studio is down), images answered "cannot tell" or skipped stay out of later pools,
round updates and pulls do not lose each other's keys, and `--round N` is the round number."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import event, select

from ls_catalog import build_round_catalog
from ls_fake import URL, FakeLabelStudio, bind_fake, use_fake
from rounds_workspace import build_rounds_catalog


@pytest.fixture
def fresh(tmp_path, test_catalog_url):
    """24 real fracture radiographs, a random-init encoder, the workspace bound to a fresh fake Label Studio."""
    root = (tmp_path / "ws").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 24)
    bind_fake(catalog)
    yield catalog, FakeLabelStudio()
    catalog.dispose()


def _selected(catalog, round_id) -> list[str]:
    from radloop.core.schema import Selection

    with catalog.session() as session:
        return list(session.scalars(select(Selection.image_id).where(Selection.round_id == round_id)
                                    .order_by(Selection.rank)))


def _status(catalog, round_id):
    from radloop.app.rounds import round_status

    return next(report for report in round_status(catalog) if report.round_id == round_id)


# ------------------------------------------------------------------------ round start pulls first
def test_start_pulls_late_answers_of_earlier_rounds_first(fresh, monkeypatch):
    """An answer given in Label Studio after the last pull counts in the next round: its image is labelled,
    not left out as waiting, and the earlier round's labels spent include it."""
    from radloop.app.rounds import finish_round, start_round

    catalog, fake = fresh
    use_fake(monkeypatch, fake)
    first = start_round(catalog, strategy="random", budget=3, dataset="fracture")
    answered, late, waiting = _selected(catalog, first.round_id)
    fake.annotate(fake.task_of(first.round_id, answered), ["fracture"])
    assert finish_round(catalog).pending == 2
    fake.annotate(fake.task_of(first.round_id, late), [])  # answered after the last pull

    second = start_round(catalog, strategy="random", budget=1000, dataset="fracture")
    assert second.notes[0] == "pulled 1 late answer(s) from Label Studio before selecting (round 1: 1)"
    assert (_status(catalog, first.round_id).labels_spent, _status(catalog, first.round_id).pending) == (2, 1)
    assert any(note.startswith("1 image(s) left out of the pool") for note in second.notes), second.notes
    picked = set(_selected(catalog, second.round_id))
    assert picked and not picked & {answered, late, waiting}


def test_start_goes_on_when_label_studio_is_unreachable(fresh, monkeypatch):
    """Label Studio down while a round starts: noted (with the command that pulls later), not fatal; the pool
    is what the catalog knows.  A simulated round does not talk to Label Studio at all."""
    from typer.testing import CliRunner

    from radloop.app.cli import build_app
    from radloop.app.rounds import finish_round, start_round
    from radloop.labeling import ls_sync

    catalog, fake = fresh
    use_fake(monkeypatch, fake)
    first = start_round(catalog, strategy="random", budget=2, dataset="fracture")
    answered, waiting = _selected(catalog, first.round_id)
    fake.annotate(fake.task_of(first.round_id, answered), ["fracture"])
    finish_round(catalog)
    fake.down = True
    result = CliRunner().invoke(build_app(), [
        "round", "start", "--strategy", "random", "--budget", "2", "--no-push", "--set", "dataset=fracture",
        "--json", "--workspace", str(catalog.workspace.root)],
        env={"RADLOOP_DATABASE_URL": catalog.workspace.database_url})
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["state"] == "pushed" and report["selected"] == 2
    notes = "\n".join(report["notes"])
    assert f"late answers not pulled from Label Studio at {URL} before selecting (" in notes
    assert "`radloop round pull --round 1` later collects them" in notes
    assert "1 image(s) left out of the pool" in notes  # the pending task's image, as the catalog knows it
    assert waiting not in _selected(catalog, report["round_id"])

    finish_round(catalog, simulate=True)
    monkeypatch.setattr(ls_sync, "pull_round", lambda *args, **kwargs: pytest.fail("a simulated round pulled"))
    simulated = start_round(catalog, strategy="random", budget=2, dataset="fracture", simulate=True)
    assert simulated.selected == 2
    assert not any(note.startswith(("pulled", "late answers")) for note in simulated.notes)


def test_start_pulls_from_where_the_tasks_went_and_keeps_the_workspace_binding(fresh, monkeypatch):
    """The workspace re-bound to another server after round 1 was pushed: the late answers come from round 1's
    server and project, with a quick client, and the workspace stays bound where the user put it (the pull
    used to re-bind it to the old server, and the new round went there)."""
    from radloop.app.rounds import finish_round, start_round
    from radloop.labeling import ls_sync
    from radloop.labeling.ls_project import ProjectBinding, load_binding, save_binding

    catalog, fake = fresh
    use_fake(monkeypatch, fake)
    first = start_round(catalog, strategy="random", budget=2, dataset="fracture")
    answered, late = _selected(catalog, first.round_id)
    fake.annotate(fake.task_of(first.round_id, answered), ["fracture"])
    finish_round(catalog)
    fake.annotate(fake.task_of(first.round_id, late), [])
    moved = ProjectBinding(url="http://new-ls:8080", project_id=42, title="radloop findings", config_digest="e")
    save_binding(catalog.workspace, moved)
    clients = []
    monkeypatch.setattr(ls_sync, "client_from_env", lambda url, token=None, **options: clients.append(
        (url, options)) or fake)
    monkeypatch.setattr(ls_sync, "init_project", lambda *args, **kwargs: pytest.fail("the pull re-bound"))

    second = start_round(catalog, strategy="random", budget=2, dataset="fracture", push=False)
    assert second.notes[0] == "pulled 1 late answer(s) from Label Studio before selecting (round 1: 1)"
    assert clients == [(URL, {"timeout": 15.0, "retries": 1, "max_retry_after": 5.0})]
    assert load_binding(catalog.workspace) == moved
    assert ls_sync.pushed_binding(catalog, first.round_id).project_id == 7
    assert ls_sync.pushed_binding(catalog, second.round_id) is None  # written to an import file only


def test_a_simulated_round_pushed_to_label_studio_since_is_finished_with_the_experts_answers(fresh, monkeypatch):
    """A round started as a simulation (the demo's) whose batch was then pushed (`radloop round push`): a plain
    finish pulls the experts' answers instead of answering from the ground truth; --simulate still simulates."""
    from radloop.app.rounds import finish_round, start_round
    from radloop.core.schema import Annotation
    from radloop.labeling import ls_sync

    catalog, fake = fresh
    use_fake(monkeypatch, fake)
    first = start_round(catalog, strategy="random", budget=2, dataset="fracture", simulate=True)
    assert ls_sync.pushed_binding(catalog, first.round_id) is None
    ls_sync.push_round(catalog, fake, first.round_id)
    answered, waiting = _selected(catalog, first.round_id)
    fake.annotate(fake.task_of(first.round_id, answered), ["fracture"])
    report = finish_round(catalog)
    assert (report.labels_spent, report.pending) == (1, 1)
    with catalog.session() as session:
        sources = set(session.scalars(select(Annotation.source).where(Annotation.image_id.in_([answered, waiting]))))
    assert "simulate" not in sources and sources

    second = start_round(catalog, strategy="random", budget=2, dataset="fracture", simulate=True)
    ls_sync.push_round(catalog, fake, second.round_id)
    monkeypatch.setattr(ls_sync, "pull_round", lambda *args, **kwargs: pytest.fail("--simulate pulled"))
    assert finish_round(catalog, simulate=True).labels_spent == 2


# ------------------------------------------------------------------ "cannot tell" and skipped images
def test_images_answered_cannot_tell_or_skipped_stay_out_unless_reselect_unclear(fresh, monkeypatch):
    from radloop.app.rounds import RoundError, finish_round, labelled_image_ids, start_round

    catalog, fake = fresh
    use_fake(monkeypatch, fake)
    first = start_round(catalog, strategy="random", budget=3, dataset="fracture")
    unsure, skipped, answered = _selected(catalog, first.round_id)
    fake.annotate(fake.task_of(first.round_id, unsure), [], cannot_tell=["fracture"])
    fake.annotate(fake.task_of(first.round_id, skipped), [], skip=True)
    fake.annotate(fake.task_of(first.round_id, answered), [])
    done = finish_round(catalog)
    assert (done.answered, done.skipped, done.pending) == (2, 1, 0)
    assert set(labelled_image_ids(catalog, "fracture", simulate=False)) == {answered}

    second = start_round(catalog, strategy="random", budget=1000, dataset="fracture")
    assert ("2 image(s) left out of the pool: experts could not label them for 'fracture' in earlier rounds "
            "(1 cannot tell, 1 skipped); `--set reselect_unclear=true` offers them again") in second.notes
    assert not set(_selected(catalog, second.round_id)) & {unsure, skipped, answered}
    finish_round(catalog, simulate=True)  # the rest of the pool gets its labels
    unlabelled = {image_id for image_id in _pool_ids(catalog)
                  if image_id not in labelled_image_ids(catalog, "fracture", simulate=False)}
    assert unlabelled == {unsure, skipped}  # every other pool image is labelled: nothing left by default
    with pytest.raises(RoundError, match=r"labelled already; 2 image\(s\) left out .*cannot tell"):
        start_round(catalog, strategy="random", budget=1000, dataset="fracture")
    again = start_round(catalog, strategy="random", budget=1000, dataset="fracture", reselect_unclear=True)
    assert set(_selected(catalog, again.round_id)) == unlabelled
    assert not any("left out" in note for note in again.notes)


def _pool_ids(catalog) -> list[str]:
    from radloop.app.rounds import RoundConfig, _pool

    return _pool(catalog, RoundConfig(dataset="fracture"))[0]


def test_a_tie_between_definite_answers_is_not_cannot_tell():
    """Two readers disagreeing (1 against 0) leave the label open, but another read can settle it: only a
    "cannot tell" vote, or a skip, keeps the image out."""
    from radloop.app.round_pool import _cannot_tell

    assert _cannot_tell({"value": None})  # one reader's "cannot tell"
    assert not _cannot_tell({"value": 0})
    assert not _cannot_tell({"value": None, "status": "uncertain", "votes": {"task 1: a": 1, "task 2: b": 0}})
    assert _cannot_tell({"value": None, "status": "uncertain", "votes": {"task 1: a": 1, "task 2: b": 0,
                                                                         "task 2: c": None}})
    assert not _cannot_tell({"value": None, "status": "withdrawn", "votes": {}})


# ------------------------------------------------------------- round updates vs. a concurrent pull
@pytest.fixture
def pushed(tmp_path, test_catalog_url):
    """Two cases in round 1, pushed to a fake Label Studio; the first one answered there."""
    from radloop.labeling.ls_sync import push_round

    root = tmp_path / "ws"
    catalog, round_id, image_ids = build_round_catalog(root, n_images=2, database_url=test_catalog_url(root))
    bind_fake(catalog)
    fake = FakeLabelStudio()
    push_round(catalog, fake, round_id, with_model=False)
    fake.annotate(fake.task_of(round_id, image_ids[0]), ["fracture"])
    yield catalog, fake, round_id
    catalog.dispose()


def _round_row(catalog, round_id):
    from radloop.core.schema import Round

    with catalog.session() as session:
        return session.get(Round, round_id)


def _in_thread(target):
    errors: list[BaseException] = []

    def run():
        try:
            target()
        except BaseException as error:  # reported by the caller's assertion, not lost in the thread
            errors.append(error)

    return threading.Thread(target=run), errors


def test_a_pull_between_a_round_updates_read_and_write_is_kept(pushed):
    """`round finish` updates the round's row while the ML backend pulls the round: the pull commits after the
    update read the row's meta.  The update must not write back the meta it read (the pull's cursor lost)."""
    from radloop.app.round_record import update_round
    from radloop.labeling.ls_sync import pull_round

    catalog, fake, round_id = pushed
    pull, errors = _in_thread(lambda: pull_round(catalog, fake, round_id))
    main = threading.get_ident()

    def pull_once_the_update_reads(_conn, _cursor, statement, *_args):
        if threading.get_ident() == main and pull.ident is None and "FROM rounds" in statement:
            pull.start()  # it stores under the round's lock, or waits for the update's ...
            pull.join(timeout=1.0)  # ... (without the lock it commits its cursor right now)

    event.listen(catalog.engine, "after_cursor_execute", pull_once_the_update_reads)
    try:
        update_round(catalog, round_id, state="answered", meta={"labels_total": 1}, notes=lambda notes: ["done"])
    finally:
        event.remove(catalog.engine, "after_cursor_execute", pull_once_the_update_reads)
    pull.join(timeout=60)
    assert not pull.is_alive() and not errors, errors
    row = _round_row(catalog, round_id)
    assert row.state == "answered" and row.labels_spent == 1
    assert row.meta["labels_total"] == 1 and row.meta["notes"] == ["done"]
    assert row.meta["ls_pull"]["project_id"] == 7, row.meta  # the pull's cursor is kept


def test_a_round_update_during_a_pull_keeps_the_pulls_keys(pushed, monkeypatch):
    """The other order: the update comes while the pull holds the round's lock (between reading the row and
    storing).  It waits, then reads the meta the pull wrote."""
    from radloop.app.round_record import update_round
    from radloop.labeling import ls_pull_store, ls_sync

    catalog, fake, round_id = pushed
    update, errors = _in_thread(lambda: update_round(catalog, round_id, meta={"probe_version": "p1"},
                                                     notes=lambda notes: notes + ["trained"]))
    store_task = ls_pull_store._store_task

    def update_while_storing(*args, **kwargs):
        if update.ident is None:
            update.start()  # it waits for the pull's lock ...
            update.join(timeout=1.0)  # ... (without taking it, it reads the meta before the pull's write)
        return store_task(*args, **kwargs)

    monkeypatch.setattr(ls_pull_store, "_store_task", update_while_storing)
    ls_sync.pull_round(catalog, fake, round_id)
    update.join(timeout=60)
    assert not update.is_alive() and not errors, errors
    row = _round_row(catalog, round_id)
    assert row.meta["probe_version"] == "p1" and row.meta["notes"] == ["trained"]
    assert row.meta["ls_pull"]["project_id"] == 7 and row.labels_spent == 1, row.meta


# ------------------------------------------------------------ round pull goes where the tasks went
@pytest.mark.parametrize("workspace_binding", ["none", "elsewhere"])
def test_round_pull_reads_the_server_the_round_was_pushed_to(pushed, monkeypatch, workspace_binding):
    """`round pull --round N` pulls from the server and project the round's tasks went to (as `round finish`
    does), with no `ls init` binding or one moved to another server since; the binding is left as it is."""
    from radloop.app import cli_labelstudio
    from radloop.labeling.ls_project import ProjectBinding, binding_path, load_binding, save_binding

    catalog, fake, round_id = pushed
    if workspace_binding == "none":
        binding_path(catalog.workspace).unlink()
    else:
        save_binding(catalog.workspace, ProjectBinding(url="http://other-label-studio:8080", project_id=99,
                                                       title="elsewhere", config_digest="e"))
    asked: list[tuple] = []
    get_project = fake.get_project
    monkeypatch.setattr(fake, "get_project", lambda project_id: asked.append(("project", project_id))
                        or get_project(project_id))
    monkeypatch.setattr(cli_labelstudio, "_client", lambda url, token: asked.append(("url", url, token)) or fake)
    number = _round_row(catalog, round_id).number
    pulled = _cli(catalog, "round", "pull", "--round", str(number), "--token", "t0k", "--json")
    assert pulled.exit_code == 0, pulled.output
    assert json.loads(pulled.stdout)["answered"] == 1
    assert ("url", URL, "t0k") in asked and ("project", 7) in asked and ("project", 99) not in asked, asked
    assert _round_row(catalog, round_id).meta["ls_pull"]["project_id"] == 7
    if workspace_binding == "none":
        assert not binding_path(catalog.workspace).exists()  # pulling binds nothing
    else:
        assert load_binding(catalog.workspace).project_id == 99


def test_round_pull_without_binding_or_pushed_tasks_says_run_ls_init(pushed, monkeypatch):
    from radloop.app import cli_labelstudio
    from radloop.core.schema import Selection
    from radloop.labeling.ls_project import binding_path

    catalog, fake, round_id = pushed
    binding_path(catalog.workspace).unlink()
    with catalog.session() as session:  # as if the round only went to an import file
        for selection in session.scalars(select(Selection).where(Selection.round_id == round_id)):
            selection.ls_task_id, selection.meta = None, {}
    monkeypatch.setattr(cli_labelstudio, "_client", lambda url, token: fake)
    pulled = _cli(catalog, "round", "pull", "--round", str(_round_row(catalog, round_id).number))
    assert pulled.exit_code != 0 and "Traceback" not in pulled.output
    assert "no Label Studio project bound" in " ".join(pulled.output.split())


# ------------------------------------------------------------------------- --round N is the number
@pytest.fixture
def numbered(tmp_path, test_catalog_url, monkeypatch):
    """Round 1 (id 1) and round 2 stored under id 9, as ids and numbers differ once ids are skipped."""
    from radloop.app import cli_labelstudio
    from radloop.core.schema import Round, Selection

    root = tmp_path / "ws"
    catalog, _, image_ids = build_round_catalog(root, n_images=2, database_url=test_catalog_url(root))
    with catalog.session() as session:
        session.add(Round(id=9, number=2, strategy="random", budget=2, task="fracture", state="selected"))
        session.flush()
        session.add_all([Selection(round_id=9, image_id=image_id, rank=rank + 1, strategy="random", reason="test")
                         for rank, image_id in enumerate(image_ids)])
    bind_fake(catalog)
    fake = FakeLabelStudio()
    monkeypatch.setattr(cli_labelstudio, "_client", lambda url, token: fake)
    yield catalog, fake, image_ids
    catalog.dispose()


def _cli(catalog, *arguments):
    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), [*arguments, "--workspace", str(catalog.workspace.root)],
                              env={"RADLOOP_DATABASE_URL": catalog.workspace.database_url, "COLUMNS": "250"})


def test_round_option_takes_the_round_number(numbered, tmp_path):
    from radloop.app.round_labels import late_answers_hint, open_task_notes, without_pending
    from radloop.core.schema import Round

    catalog, fake, image_ids = numbered
    pushed = _cli(catalog, "round", "push", "--round", "2", "--no-model", "--json")
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.stdout)["round_id"] == 9
    assert {task["data"]["round_id"] for task in fake.tasks.values()} == {9}
    fake.annotate(fake.task_of(9, image_ids[0]), ["fracture"])
    pulled = _cli(catalog, "round", "pull", "-r", "2", "--json")
    assert pulled.exit_code == 0, pulled.output
    assert (json.loads(pulled.stdout)["round_id"], json.loads(pulled.stdout)["answered"]) == (9, 1)
    exported = _cli(catalog, "ls", "export", "--round", "2", "--out", str(tmp_path / "tasks.json"))
    assert exported.exit_code == 0, exported.output
    assert {task["data"]["round_id"] for task in json.loads((tmp_path / "tasks.json").read_text())} == {9}

    missing = _cli(catalog, "round", "pull", "--round", "9")
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert "no round number 9; existing rounds: 1, 2" in " ".join(missing.output.split())

    # every hint names the number
    with catalog.session() as session:
        session.get(Round, 9).state = "finished"
    status = _cli(catalog, "round", "status")
    assert status.exit_code == 0, status.output
    assert "`radloop round pull --round 2` collects late answers" in status.output
    assert "--round 9" not in status.output
    assert "`radloop round pull --round 2`" in late_answers_hint(catalog)
    row = _round_row(catalog, 9)
    notes = " ".join(open_task_notes(row, {"pending": 1, "deleted": 1}))
    assert "round pull --round 2`" in notes and "round push --round 2 --recreate-deleted`" in notes
    note = without_pending(catalog, [image_ids[1]], [None])[2]
    assert "round 2 (`radloop round pull --round 2`)" in note


def test_round_id_for_number_lists_the_numbers_there_are(catalog):
    from radloop.app.rounds import RoundError, round_id_for_number

    with pytest.raises(RoundError, match=r"no round number 1; the catalog has no rounds yet"):
        round_id_for_number(catalog, 1)
    for command in ("pull", "push"):  # named before the (here missing) Label Studio binding is looked for
        result = _cli(catalog, "round", command, "--round", "9")
        assert result.exit_code == 2 and "no round number 9" in result.output, result.output


def test_a_round_started_while_another_selects_is_not_opened_twice(fresh, monkeypatch):
    """Two `round start`s at once (two terminals, the app and the CLI): the one that finishes selecting second
    finds the first's round open and says so, instead of opening a second round with the same number."""
    from radloop.app import rounds
    from radloop.core.schema import Round

    catalog, fake = fresh
    use_fake(monkeypatch, fake)
    scores = rounds.pool_weak_labels

    def another_start_meanwhile(*args, **kwargs):  # after this start checked that no round is open
        monkeypatch.setattr(rounds, "pool_weak_labels", scores)
        rounds.start_round(catalog, strategy="random", budget=2, dataset="fracture")
        return scores(*args, **kwargs)

    monkeypatch.setattr(rounds, "pool_weak_labels", another_start_meanwhile)
    with pytest.raises(rounds.RoundError, match=r"round 1 was started while this one was selecting"):
        rounds.start_round(catalog, strategy="random", budget=3, dataset="fracture")
    with catalog.session() as session:
        assert [(row.number, row.budget) for row in session.scalars(select(Round))] == [(1, 2)]


# ------------------------------------------------------------------------ options of a start while a round is open
def test_a_start_with_other_options_while_a_round_is_open_is_refused_not_ignored(fresh):
    """Options that differ from the open round's are an error naming the round, its settings, what differs and
    how to close it; a start without options (or the same ones) resumes it and says so."""
    from radloop.app.rounds import RoundError, start_round

    catalog, _fake = fresh
    first = start_round(catalog, strategy="random", budget=3, dataset="fracture", simulate=True)
    with pytest.raises(RoundError) as refused:
        start_round(catalog, strategy="margin", budget=5, task="device")
    message = str(refused.value)
    assert f"round {first.number} is open" in message and "task 'fracture'" in message
    assert "budget 5 (round 1: 3)" in message and "strategy 'margin' (round 1: 'random')" in message
    assert "task 'device' (round 1: 'fracture')" in message and "`radloop round finish --simulate`" in message

    result = _cli(catalog, "round", "start", "--budget", "3", "--strategy", "random", "--task", "device")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "error:" in result.output and "task 'device' (round 1: 'fracture')" in result.output

    for again in (start_round(catalog), start_round(catalog, strategy="random", budget=3, simulate=True)):
        assert again.round_id == first.round_id and again.selected == 3
        assert again.notes[0].startswith(f"resumed round {first.number} (open in state pushed)"), again.notes
    result = _cli(catalog, "round", "start")
    assert result.exit_code == 0 and "(resumed)" in result.output and "resumed round 1" in result.output


# ------------------------------------------------------------------------ tasks: unknown, unlabelled, errors
def test_an_unknown_task_is_refused_at_start(fresh):
    from radloop.app.rounds import RoundError, open_round, start_round

    catalog, _fake = fresh
    with pytest.raises(RoundError, match=r"unknown task 'nosuch'.*valid: fracture, foreign_body"):
        start_round(catalog, task="nosuch", simulate=True, budget=3)
    result = _cli(catalog, "round", "start", "--simulate", "--task", "nosuch")
    assert result.exit_code == 2 and "Traceback" not in result.output and "unknown task 'nosuch'" in result.output
    assert open_round(catalog) is None


def test_a_round_without_labels_for_its_task_finishes_without_a_model(fresh):
    """A valid finding that no selected image has ground truth for: the round finishes (no traceback, not stuck
    in 'answered') with a note and no metric."""
    from radloop.app.rounds import RoundConfig, open_round, start_round

    catalog, _fake = fresh
    start_round(catalog, config=RoundConfig(push=False), task="device", strategy="random", budget=3,
                dataset="fracture")
    result = _cli(catalog, "round", "finish", "--simulate", "--json")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    report = json.loads(result.stdout)
    assert report["state"] == "finished" and report["metric_after"] is None and report["labels_total"] == 0
    assert "no labels for 'device' yet: no model trained" in report["notes"]
    assert open_round(catalog) is None


def test_status_counts_tasks_written_only_to_the_import_file(fresh):
    """A round written to an import file (no server): its tasks wait outside Label Studio, not "pending 0"
    and nothing else; status counts them and says how to hand them out."""
    from radloop.app.rounds import RoundConfig, start_round

    catalog, _fake = fresh
    started = start_round(catalog, config=RoundConfig(push=False), strategy="random", budget=3, dataset="fracture")
    assert started.state == "pushed" and started.pending == 0
    result = _cli(catalog, "round", "status", "--json")
    assert result.exit_code == 0, result.output
    (status,) = json.loads(result.stdout)["rounds"]
    assert status["pending"] == 0 and status["not_in_label_studio"] == 3, status
    assert "import the import file" in status["hint"] and "`radloop round push --round 1`" in status["hint"]
    table = _cli(catalog, "round", "status")
    assert table.exit_code == 0, table.output
    text = " ".join(table.output.split())
    assert "not in Label Studio" in text
    assert "round 1: 3 task(s) not in Label Studio yet: import the import file" in text
    assert "`radloop ls init --url URL` then `radloop round push --round 1`" in text


@pytest.mark.parametrize("has_model", [False, True])
def test_a_strategy_without_weak_labels_says_cold_start_only_without_a_model(fresh, monkeypatch, has_model):
    """report_disagreement with no weak labels falls back to the cold-start strategy; the note says "cold
    start" only while the task has no model (a later round with a model merely falls back)."""
    import numpy as np

    from radloop.app import rounds
    from radloop.app.rounds import RoundConfig, start_round

    catalog, _fake = fresh
    if has_model:
        monkeypatch.setattr(rounds, "pool_probabilities", lambda catalog, version, vectors, task: np.tile(
            [0.3, 0.7], (len(vectors), 1)))
    report = start_round(catalog, config=RoundConfig(push=False), strategy="report_disagreement", budget=3,
                         dataset="fracture")
    assert report.strategy == "typiclust"
    (note,) = [note for note in report.notes if note.startswith("'report_disagreement' ")]
    assert "weak_labels, which do not exist yet" in note
    if has_model:
        assert "cold start" not in note and note.endswith("falls back to 'typiclust'"), note
    else:
        assert note.endswith("cold start with 'typiclust'"), note


def test_missing_encoder_files_and_lookups_are_one_error_line(fresh, monkeypatch):
    from radloop.app import round_finish, rounds

    catalog, _fake = fresh
    rounds.start_round(catalog, strategy="random", budget=2, dataset="fracture", simulate=True)
    monkeypatch.setattr(round_finish, "train_round_probe", lambda *args: (_ for _ in ()).throw(
        LookupError("no embeddings for model version enc-x")))
    result = _cli(catalog, "round", "finish")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "error: no embeddings for model version enc-x" in result.output
    monkeypatch.undo()
    assert rounds.finish_round(catalog).state == "finished"

    (catalog.workspace.models_dir / "encoder" / "encoder.json").unlink()  # the registered folder, damaged
    result = _cli(catalog, "round", "start", "--simulate", "--budget", "2")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "error:" in result.output and "encoder.json" in result.output


# ------------------------------------------------------------------------ simulation spends budget on known truth
def test_simulated_rounds_leave_images_without_ground_truth_out_of_the_pool(fresh):
    from radloop.app.rounds import finish_round, start_round
    from radloop.core.schema import Image, Study

    catalog, _fake = fresh
    with catalog.session() as session:
        for study in session.query(Study):  # splits hash keyed pseudonyms: put all 24 images in the pool
            study.split = "train"
    with catalog.session() as session:  # three images whose boxes were not annotated exhaustively: no truth
        for image in session.query(Image).order_by(Image.id).limit(3):
            image.meta = {key: value for key, value in (image.meta or {}).items() if key != "box_source"}
    report = start_round(catalog, strategy="random", budget=1000, dataset="fracture", simulate=True)
    assert report.selected == 21, report.notes
    assert ("3 image(s) left out of the pool: no ground truth for 'fracture', so the simulated annotator could "
            "not answer them") in report.notes
    done = finish_round(catalog)
    assert (done.selected, done.answered, done.skipped, done.labels_spent) == (21, 21, 0, 21)
