"""Active-learning rounds end to end on a small real workspace (fracture radiographs, simulated answers)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from rounds_workspace import build_rounds_catalog


@pytest.fixture(scope="module")
def round_catalog(tmp_path_factory, test_catalog_url):
    """120 real fracture radiographs ingested, a small random-init encoder registered as current."""
    root = (tmp_path_factory.mktemp("rounds") / "ws").resolve()
    catalog = build_rounds_catalog(root, test_catalog_url(root), 160)
    yield catalog
    catalog.dispose()


def _rounds(catalog):
    from radloop.core.schema import Round

    with catalog.session() as session:
        return list(session.scalars(select(Round).order_by(Round.number)))


def test_round_catalog_follows_the_test_database_switch(round_catalog):
    import os

    expected = "postgresql" if os.environ.get("RADLOOP_TEST_DATABASE") == "postgres" else "sqlite"
    assert round_catalog.engine.dialect.name == expected


def test_unknown_strategy_lists_valid_ones(round_catalog):
    from radloop.app.rounds import start_round

    with pytest.raises(ValueError, match="valid:.*margin"):
        start_round(round_catalog, strategy="nope", budget=5, simulate=True)
    assert _rounds(round_catalog) == []


def test_strategy_parameters_come_from_the_round_config(round_catalog):
    from radloop.app.rounds import load_round_config, start_round

    config = load_round_config(None, ["strategy=stratified", "strategy_params={base: margin, colour: red}"])
    with pytest.raises(ValueError, match="bad parameters for strategy 'stratified'.*colour"):
        start_round(round_catalog, config=config, simulate=True)


def test_finish_without_open_round_says_what_to_do(round_catalog):
    from radloop.app.rounds import RoundError, finish_round

    with pytest.raises(RoundError, match="radloop round start"):
        finish_round(round_catalog)


def test_simulated_rounds_buy_labels_and_resume(round_catalog):
    from radloop.app.rounds import finish_round, labelled_image_ids, round_status, start_round
    from radloop.core.registry import current_model
    from radloop.core.schema import Annotation, Round, Selection
    from radloop.core.targets import image_targets

    first = start_round(round_catalog, strategy="badge", budget=12, simulate=True, dataset="fracture")
    # no model yet: the hybrid (it uses probabilities) falls back to the configured cold-start strategy, and
    # says so
    assert first.strategy == "typiclust"
    assert any(note.startswith("'badge' works from probabilities") and "cold start with 'typiclust'" in note
               for note in first.notes), first.notes
    assert first.state == "pushed" and first.selected == 12
    assert first.labels_total is None  # not known before the round finishes (was reported as 0)
    assert (round_catalog.workspace.root / first.tasks_file).exists()

    # starting again (same options) while the round is open resumes it instead of selecting twice
    again = start_round(round_catalog, strategy="badge", budget=12, simulate=True, dataset="fracture")
    assert again.round_id == first.round_id and again.notes[0].startswith("resumed round 1")
    with round_catalog.session() as session:
        assert session.scalar(select(func.count()).select_from(Selection)) == 12
        ranks = session.scalars(select(Selection.rank).where(Selection.round_id == first.round_id)).all()
        assert sorted(ranks) == list(range(1, 13))  # 1 = the first pick, as the selection queue shows it

    done = finish_round(round_catalog)
    assert done.state == "finished" and done.labels_spent == 12 and done.labels_total == 12
    labels = labelled_image_ids(round_catalog, "fracture", simulate=True)
    truth = {t.image_id: t.fracture for t in image_targets(round_catalog, image_ids=list(labels))}
    assert labels == truth  # the simulated annotator answers with the dataset's ground truth

    second = start_round(round_catalog, strategy="badge", budget=10, simulate=True, dataset="fracture")
    assert second.strategy == "badge" and not second.notes  # a model exists now: the hybrid itself
    with round_catalog.session() as session:
        picked = set(session.scalars(select(Selection.image_id).where(Selection.round_id == second.round_id)))
    assert not picked & set(labels), "a round must never select an image that is labelled already"
    # a crash after the answers were stored: the round is 'answered'; finishing again completes it once
    with round_catalog.session() as session:
        session.get(Round, second.round_id).state = "selected"
    finish_round(round_catalog)
    finish_round_again = round_status(round_catalog)[-1]
    assert finish_round_again.state == "finished" and finish_round_again.labels_total == 22
    with round_catalog.session() as session:
        simulated = session.scalar(select(func.count()).select_from(Annotation).where(
            Annotation.source == "simulate"))
    assert simulated == 22
    model = current_model(round_catalog, "findings")
    assert model is not None and model.parent_version == "enc-test-resnet18"
    assert finish_round_again.metric_name == "auroc.fracture"


def test_round_cli_status_json(round_catalog, monkeypatch):
    import json

    from typer.testing import CliRunner

    from radloop.app.cli import build_app

    monkeypatch.setenv("RADLOOP_DATABASE_URL", round_catalog.workspace.database_url)

    result = CliRunner().invoke(build_app(), ["round", "status", "--json", "--workspace",
                                              str(round_catalog.workspace.root)])
    assert result.exit_code == 0, result.output
    rounds = json.loads(result.stdout)["rounds"]
    assert [r["state"] for r in rounds] == ["finished"] * len(rounds) and len(rounds) >= 2


def test_a_round_probe_does_not_displace_a_better_trained_model(catalog, tmp_path):
    """`round finish` registers its probe; it becomes the current findings model (what the ML backend serves)
    unless a model trained outside the rounds scores better on the same metric (or the probe has no score)."""
    from radloop.app.round_labels import _becomes_current
    from radloop.core.registry import register_model

    assert _becomes_current(catalog, "auroc.fracture", None) == (True, None)  # nothing current yet
    register_model(catalog, "probe-fracture-r001", "probe", "findings", tmp_path, config={"round": 1},
                   metrics={"auroc.fracture": 0.9}, make_current=True)
    assert _becomes_current(catalog, "auroc.fracture", 0.5) == (True, None)  # an earlier round's probe
    register_model(catalog, "clf-ft", "classifier", "findings", tmp_path, config={"task": "findings"},
                   metrics={"auroc.fracture": 0.8}, make_current=True)
    assert _becomes_current(catalog, "auroc.fracture", 0.85) == (True, None)
    stays, why = _becomes_current(catalog, "auroc.fracture", 0.7)
    assert not stays and "clf-ft (auroc.fracture 0.800) stays current" in why
    assert _becomes_current(catalog, "auroc.fracture", None)[0] is False


def test_a_budget_beyond_the_pool_selects_all_and_says_so(round_catalog):
    from radloop.app.rounds import start_round

    report = start_round(round_catalog, strategy="kcenter", budget=10_000, simulate=True)
    assert 0 < report.selected < 10_000
    assert any(f"budget 10000 is more than the {report.selected} unlabelled images" in note for note in report.notes)


def _bind(catalog, url):
    import dataclasses
    import json

    from radloop.labeling.ls_project import ProjectBinding, binding_path

    path = binding_path(catalog.workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(ProjectBinding(url=url, project_id=7, title="radloop findings",
                                                                 config_digest="x"))))


def test_rounds_push_to_the_bound_server_then_label_studio_url(catalog, monkeypatch):
    from radloop.app.rounds import RoundConfig, RoundError, label_studio_server

    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    assert label_studio_server(catalog, RoundConfig()) == (None, "no server configured")
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://env-host:8080/")
    assert label_studio_server(catalog, RoundConfig()) == ("http://env-host:8080", "$LABEL_STUDIO_URL")
    _bind(catalog, "http://bound-host:8080")  # `radloop ls init` connected the workspace: that server wins
    assert label_studio_server(catalog, RoundConfig())[0] == "http://bound-host:8080"
    explicit = RoundConfig(label_studio_url="http://other:9000")
    assert label_studio_server(catalog, explicit) == ("http://other:9000", "label_studio_url")
    assert label_studio_server(catalog, RoundConfig(push=False, label_studio_url="http://other:9000"))[0] is None
    from radloop.labeling.ls_project import binding_path

    binding_path(catalog.workspace).write_text('{"url": "http://x"}')  # damaged: fields missing
    with pytest.raises(RoundError, match="binding is unreadable.*ls init"):
        label_studio_server(catalog, RoundConfig())


def test_hand_out_pushes_to_the_bound_server_and_says_so(catalog, monkeypatch):
    from radloop.app import rounds
    from radloop.core.schema import Round
    from radloop.labeling import ls_sync

    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    with catalog.session() as session:
        row = Round(number=1, state="selected", strategy="random", budget=1, task="fracture", config={}, meta={})
        session.add(row)
        session.flush()
        round_id = row.id
    calls = []
    monkeypatch.setattr(ls_sync, "client_from_env", lambda url: f"client:{url}")
    monkeypatch.setattr(ls_sync, "push_round", lambda cat, client, rid, project=None: calls.append((client, rid))
                        or {"created": 0})
    report = rounds._hand_out(catalog, round_id, rounds.RoundConfig(), rounds._noop)
    assert calls == [] and report.state == "pushed"  # no server anywhere: import file only
    assert [n for n in report.notes if n.startswith("batch written to")], report.notes
    _bind(catalog, "http://bound-host:8080")
    report = rounds._hand_out(catalog, round_id, rounds.RoundConfig(), rounds._noop)
    assert calls == [("client:http://bound-host:8080", round_id)]
    assert [n for n in report.notes if n.startswith("batch")] == [
        "batch pushed to Label Studio at http://bound-host:8080 (server from the workspace's `ls init` binding)"]
    report = rounds._hand_out(catalog, round_id, rounds.RoundConfig(push=False), rounds._noop)
    assert len(calls) == 1 and "push: false" in [n for n in report.notes if n.startswith("batch")][0]


def test_a_pool_entirely_waiting_in_earlier_rounds_says_so(round_catalog, monkeypatch):
    from radloop.app import rounds

    if rounds._open_round(round_catalog) is not None:  # an earlier test's round: close it first
        rounds.finish_round(round_catalog, simulate=True)
    note = "160 image(s) left out of the pool: their Label Studio tasks are still unanswered in round 1"
    monkeypatch.setattr(rounds, "without_pending", lambda catalog, ids, regions: ([], [], note))
    with pytest.raises(rounds.RoundError, match="nothing to select: 160 image.*round pull --round"):
        rounds.start_round(round_catalog, strategy="random", budget=3, simulate=True)
