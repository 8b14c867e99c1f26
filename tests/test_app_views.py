"""The app's queries (app/views*.py) on hand-built catalogs, compared with counts worked out by hand."""

from __future__ import annotations

import http.server
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from radloop.app import next_steps, views, views_control, views_reports, views_rounds, views_search
from radloop.core.records import FindingMention
from radloop.core.schema import Annotation, Embedding, Image, Model, Report, Round, Selection, Study, WeakLabel

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _image(session, workspace, image_id: str, study_id: str, region: str | None, *, thumb: bool = True,
           meta: dict | None = None) -> None:
    if session.get(Study, study_id) is None:
        session.add(Study(id=study_id, dataset="t", body_region=region, split="train"))
        session.flush()
    path = workspace.thumbs_dir / f"{image_id}.png"
    if thumb:
        from PIL import Image as PILImage

        PILImage.fromarray(np.full((8, 8), 128, np.uint8)).save(path)
    session.add(Image(id=image_id, study_id=study_id, content_hash=image_id * 2, dataset="t", source_path="x",
                      source_format="png", render_path=f"renders/{image_id}.png", thumb_path=f"thumbs/{image_id}.png",
                      width=8, height=8, render_width=8, render_height=8, body_region=region, meta=meta or {},
                      created_at=T0 + timedelta(minutes=len(image_id))))
    session.flush()


@pytest.fixture
def filled(catalog):
    """Three studies: two chest images sharing a labelled report, one wrist image without a report."""
    ws = catalog.workspace
    with catalog.session() as session:
        _image(session, ws, "I-a", "S-1", "chest")
        _image(session, ws, "I-b", "S-1", "chest")
        _image(session, ws, "I-c", "S-2", "wrist", thumb=False, meta={"box_source": "yolo:x"})
        session.add(Study(id="S-3", dataset="t", body_region="chest", split="test"))
        session.flush()
        text = "No pneumothorax. Small left effusion. Possible pneumonia."
        session.add_all([Report(id="R1", study_id="S-1", content_hash="h1", text=text,
                                sections={"FINDINGS": text}),
                         Report(id="R2", study_id="S-3", content_hash="h2", text="Normal chest.")])
        session.flush()
        session.add_all([
            WeakLabel(report_id="R1", finding="pneumothorax", status="negative", start=3, end=15, rules_version="v1"),
            WeakLabel(report_id="R1", finding="effusion", status="positive", start=28, end=36, rules_version="v1"),
            WeakLabel(report_id="R1", finding="effusion", status="uncertain", start=28, end=36, rules_version="v2"),
            WeakLabel(report_id="R1", finding="pneumonia", status="uncertain", start=47, end=56, rules_version="v2"),
        ])
        session.add_all([
            Annotation(image_id="I-c", source="yolo:x", kind="box", label="fracture", x=1, y=1, w=2, h=2),
            Annotation(image_id="I-c", source="yolo:x", kind="box", label="fracture", x=3, y=3, w=2, h=2),
            Annotation(image_id="I-a", source="ls", kind="choice", label="fracture", meta={"value": 1},
                       created_at=T0),
            Annotation(image_id="I-a", source="ls", kind="choice", label="fracture", meta={"value": 0},
                       created_at=T0 + timedelta(hours=1)),  # newer answer wins: absent
        ])
    return catalog


def test_region_and_finding_counts(filled):
    regions = views.region_counts(filled)
    assert regions.to_dict("records") == [{"body_region": "chest", "images": 2, "studies": 1},
                                          {"body_region": "wrist", "images": 1, "studies": 1}]
    findings = views.finding_counts(filled).set_index("finding")
    assert findings.loc["effusion", ["positive", "uncertain", "negative"]].tolist() == [1, 1, 0]
    assert findings.loc["pneumothorax", "negative"] == 1
    # Two boxes on one image count once; I-a's newest choice says absent.
    assert findings.loc["fracture", ["expert_positive", "expert_negative"]].tolist() == [1, 1]


def test_weak_label_coverage(filled):
    coverage = views.weak_label_coverage(filled)
    assert (coverage.reports, coverage.reports_labelled) == (2, 1)
    assert (coverage.images, coverage.images_with_report, coverage.images_labelled) == (3, 2, 2)
    assert coverage.rules_versions == ("v1", "v2")
    assert coverage.report_fraction == pytest.approx(0.5)
    assert coverage.image_fraction == pytest.approx(2 / 3)


def test_empty_catalog_views(catalog):
    assert views.region_counts(catalog).empty and views.finding_counts(catalog).empty
    rounds = views_rounds.rounds_frame(catalog)
    assert rounds.empty and views_rounds.learning_curve(rounds).empty
    assert views.models_frame(catalog).empty and list(views.models_frame(catalog).columns)[:2] == ["version", "kind"]
    assert views_rounds.latest_round(catalog) is None
    assert views_rounds.selection_queue(catalog).round is None
    coverage = views.weak_label_coverage(catalog)
    assert coverage.report_fraction == 0.0 and coverage.image_fraction == 0.0


def test_open_catalog_never_creates_one(tmp_path, monkeypatch):
    from radloop.core.workspace import resolve_workspace

    monkeypatch.delenv("RADLOOP_DATABASE_URL", raising=False)
    workspace = resolve_workspace(tmp_path / "ws")
    with pytest.raises(FileNotFoundError, match="radloop demo"):
        views.open_catalog(workspace)
    assert not (tmp_path / "ws").exists()


def test_rounds_learning_curve_and_queue(filled):
    with filled.session() as session:
        first = Round(number=1, state="finished", strategy="random", budget=2, metric_name="auroc",
                      metric_before=0.6, metric_after=0.7, labels_spent=2)
        second = Round(number=2, state="finished", strategy="margin", budget=3, metric_name="auroc",
                       metric_before=0.7, metric_after=0.75, labels_spent=3)
        third = Round(number=3, state="selected", strategy="margin", budget=2, metric_name="auroc",
                      metric_before=0.75, labels_spent=0)
        session.add_all([first, second, third])
        session.flush()
        session.add_all([Selection(round_id=third.id, image_id="I-b", rank=2, score=0.2, strategy="margin",
                                   reason="margin 0.20"),
                         Selection(round_id=third.id, image_id="I-a", rank=1, score=0.1, strategy="margin",
                                   reason="margin 0.10")])
        session.add(Annotation(image_id="I-a", source="labelstudio", kind="choice", label="fracture",
                               meta={"value": 1}, round_id=third.id))
        third_id = third.id
    rounds = views_rounds.rounds_frame(filled)
    assert rounds["labels_total"].tolist() == [2, 5, 5]
    assert rounds["gain"].round(3).tolist()[:2] == [0.1, 0.05]
    curve = views_rounds.learning_curve(rounds)
    assert curve[["labels", "metric"]].values.tolist() == [[0, 0.6], [2, 0.7], [5, 0.75]]
    queue = views_rounds.selection_queue(filled)
    assert queue.round.round_id == third_id and queue.round.state == "selected"
    assert queue.items["image_id"].tolist() == ["I-a", "I-b"]
    assert queue.items["annotated"].tolist() == [True, False] and queue.pending == 1
    assert views_rounds.latest_round(filled).number == 3


def test_recorded_label_totals_and_demo_baseline(catalog):
    import json

    with catalog.session() as session:
        session.add_all([
            Round(number=0, state="finished", strategy="typiclust", budget=10, metric_name="auroc.fracture",
                  metric_after=0.6, labels_spent=10, meta={"labels_total": 10}),
            Round(number=1, state="finished", strategy="margin", budget=10, metric_name="auroc.fracture",
                  metric_before=0.6, metric_after=0.7, labels_spent=8, meta={"labels_total": 18}),
        ])
    rounds = views_rounds.rounds_frame(catalog)
    assert rounds["labels_total"].tolist() == [10, 18]
    assert views_rounds.demo_baseline(catalog.workspace).empty  # no demo summary yet
    (catalog.workspace.rounds_dir / views_rounds.DEMO_SUMMARY).write_text(json.dumps({"random_baseline": [
        {"labels": 10, "auroc_mean": 0.55, "auroc_std": 0.02}, {"labels": 18, "auroc_mean": None}]}))
    curve = views_rounds.learning_curve(rounds, views_rounds.demo_baseline(catalog.workspace))
    assert curve.values.tolist() == [[10, 0.6, "auroc.fracture"], [18, 0.7, "auroc.fracture"],
                                     [10, 0.55, "random selection (demo baseline)"]]
    (catalog.workspace.rounds_dir / views_rounds.DEMO_SUMMARY).write_text("{not json")
    assert views_rounds.demo_baseline(catalog.workspace).empty


def test_case_cards_labels_snippets_and_missing_thumbs(filled):
    cards = views.case_cards(filled, ["I-c", "I-a", "I-missing"], distances=[0.5, 0.1, 9.0])
    assert [card.image_id for card in cards] == ["I-c", "I-a"]
    wrist, chest = cards
    assert wrist.thumb is None and wrist.expert_labels == {"fracture": 1} and wrist.report_id is None
    assert wrist.distance == 0.5 and wrist.label_summary == "fracture=1"
    assert chest.thumb is not None and chest.thumb.is_file()
    assert chest.expert_labels == {"fracture": 0}
    # positive beats uncertain for the same finding; negative shows as "no ..."
    assert chest.weak_labels == {"pneumothorax": "negative", "effusion": "positive", "pneumonia": "uncertain"}
    assert chest.label_summary == "fracture=0, effusion, pneumonia?, no pneumothorax"
    assert chest.report_snippet.startswith("No pneumothorax.")


def test_list_cases_filters_by_region(filled):
    assert set(views.list_cases(filled)["image_id"]) == {"I-a", "I-b", "I-c"}
    assert views.list_cases(filled, body_region="wrist")["image_id"].tolist() == ["I-c"]
    with filled.session() as session:
        _image(session, filled.workspace, "I-d", "S-4", None)
    assert views.region_counts(filled)["body_region"].tolist() == ["chest", views.UNKNOWN_REGION, "wrist"]
    assert views.list_cases(filled, body_region=views.UNKNOWN_REGION)["image_id"].tolist() == ["I-d"]


def test_models_frame_flattens_metrics(catalog):
    with catalog.session() as session:
        session.add_all([
            Model(version="m1", kind="probe", task="findings", path="p", metrics={"auroc": 0.7, "per": {"a": 1}},
                  created_at=T0),
            Model(version="m2", kind="probe", task="findings", path="p", is_current=True, annotation_ids=[1, 2],
                  metrics={"auroc": 0.8, "note": "text", "ok": True}, created_at=T0 + timedelta(hours=1)),
            Model(version="e1", kind="encoder", task="encoder", path="p", created_at=T0 - timedelta(hours=1)),
        ])
    frame = views.models_frame(catalog)
    assert frame["version"].tolist() == ["m2", "m1", "e1"]
    assert [column for column in frame.columns if column.startswith("metric:")] == ["metric:auroc", "metric:per.a"]
    assert frame.set_index("version").loc["m2", "labels"] == 2
    assert views.models_frame(catalog, task="encoder")["version"].tolist() == ["e1"]


def test_list_reports_and_detail(filled):
    assert views_reports.list_reports(filled)["report_id"].tolist() == ["R1", "R2"]
    effusion = views_reports.list_reports(filled, finding="effusion", status="uncertain")
    assert effusion.to_dict("records") == [{"report_id": "R1", "study_id": "S-1", "mentions": 4,
                                            "findings": "effusion, pneumonia, pneumothorax",
                                            "summary": "effusion, pneumonia?, no pneumothorax"}]
    assert views_reports.list_reports(filled, finding="effusion", status="negative").empty
    assert views_reports.list_reports(filled, text="NORMAL")["report_id"].tolist() == ["R2"]
    assert views_reports.list_reports(filled, text="%").empty and views_reports.list_reports(filled, text="_").empty
    detail = views_reports.report_detail(filled, "R1")
    assert detail.image_ids == ["I-a", "I-b"] and detail.rules_versions == ("v1", "v2")
    assert [mention.finding for mention in detail.stored][0] == "pneumothorax"
    assert views_reports.report_detail(filled, "nope") is None


def test_highlight_segments_cover_text_and_skip_overlaps():
    text = "No pneumothorax. Small left effusion."
    mentions = [FindingMention("effusion", "positive", start=28, end=36),
                FindingMention("pneumothorax", "negative", start=3, end=15),
                FindingMention("effusion", "uncertain", start=23, end=36),  # overlaps the first effusion
                FindingMention("edema", "negative", start=None, end=None),
                FindingMention("mass", "positive", start=30, end=99)]  # past the end: ignored
    segments = views_reports.highlight_segments(text, mentions)
    assert "".join(segment.text for segment in segments) == text
    marked = [(segment.text, segment.mention.status) for segment in segments if segment.mention]
    assert marked == [("pneumothorax", "negative"), ("left effusion", "uncertain")]
    html = views_reports.highlight_html(views_reports.highlight_segments("a <b> & c", [
        FindingMention("mass", "positive", start=2, end=5, modifiers=("DEFINITE_EXISTENCE",))]))
    assert "&lt;b&gt;" in html and "&amp;" in html and "DEFINITE_EXISTENCE" in html and "<b>" not in html


def test_mentions_frame_lists_modifiers():
    frame = views_reports.mentions_frame([FindingMention("effusion", "negative", modifiers=("NEGATED_EXISTENCE",),
                                                         start=0, end=8)])
    assert frame.loc[0, "modifiers"] == "NEGATED_EXISTENCE" and frame.loc[0, "status"] == "negative"


def test_neighbour_pairs_accepts_the_usual_shapes():
    class Hit:
        def __init__(self, image_id, distance):
            self.image_id, self.distance = image_id, distance

    expected = [("I-1", 0.1), ("I-2", 0.4)]
    assert views_search.neighbour_pairs([Hit("I-1", 0.1), Hit("I-2", 0.4)]) == expected
    assert views_search.neighbour_pairs([{"image_id": "I-1", "distance": 0.1},
                                         {"image_id": "I-2", "distance": 0.4}]) == expected
    assert views_search.neighbour_pairs(pd.DataFrame({"image_id": ["I-1", "I-2"], "distance": [0.1, 0.4]})) == expected

    class Result:
        neighbours = [Hit("I-1", 0.1), Hit("I-2", 0.4)]

    assert views_search.neighbour_pairs(Result()) == expected
    assert views_search.neighbour_pairs([]) == []


def test_decode_image_gives_a_grey_array():
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(np.dstack([np.full((5, 7), value, np.uint8) for value in (10, 20, 30)])).save(buffer, "PNG")
    grey = views_search.decode_image(buffer.getvalue())
    assert grey.shape == (5, 7) and grey.dtype == np.uint8 and 15 <= int(grey[0, 0]) <= 25
    with pytest.raises(ValueError, match="not a readable image"):
        views_search.decode_image(b"%PDF-1.4 not an image")


def test_decode_image_keeps_16_bit_contrast_and_refuses_bombs(monkeypatch):
    """A 16-bit upload is scaled by its range as ingest renders it (convert("L") clipped it to white); an image
    too large to decode safely is a clear error, not a crashed page."""
    import io

    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(np.tile(np.linspace(0, 4095, 64, dtype=np.uint16), (8, 1))).save(buffer, "PNG")
    grey = views_search.decode_image(buffer.getvalue())
    assert grey[0, 0] == 0 and grey[0, -1] == 255 and 100 < grey.mean() < 155
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # this 8 x 64 image is then > 2x the limit
    with pytest.raises(ValueError, match="too large to decode safely"):
        views_search.decode_image(buffer.getvalue())


def test_search_readiness_and_messages(filled, monkeypatch):
    assert views_search.find_similar(filled).message.startswith("Upload an image")
    outcome = views_search.find_similar(filled, case_id="I-a")
    assert outcome.message == next_steps.NO_ENCODER and not outcome.neighbours
    with filled.session() as session:
        session.add(Model(version="enc-1", kind="encoder", task="encoder", path="models/enc-1", is_current=True))
    assert views_search.find_similar(filled, case_id="I-a").message == next_steps.no_embeddings("enc-1")
    with filled.session() as session:
        for row, image_id in enumerate(("I-a", "I-b", "I-c")):
            session.add(Embedding(image_id=image_id, model_version="enc-1", shard_path="e.npy", row=row, dim=4,
                                  dtype="float32"))
    readiness = views_search.search_readiness(filled)
    assert readiness.ready and readiness.embedded_images == 3 and readiness.encoder_version == "enc-1"

    calls = []

    def fake_search(catalog, *, image=None, case_id=None, k=8, filters=None):
        calls.append((case_id, k, filters))
        return [{"image_id": "I-a", "distance": 0.0}, {"image_id": "I-c", "distance": 0.3},
                {"image_id": "I-b", "distance": 0.5}]

    import radloop.retrieval

    monkeypatch.setattr(radloop.retrieval, "search_cases", fake_search, raising=False)
    outcome = views_search.find_similar(filled, case_id="I-a", k=2, filters={"body_region": "chest"})
    assert calls == [("I-a", 3, {"body_region": "chest"})]  # one extra to drop the query itself
    assert [(card.image_id, card.distance) for card in outcome.neighbours] == [("I-c", 0.3), ("I-b", 0.5)]

    def missing_index(catalog, **_):
        raise FileNotFoundError("no index for enc-1")

    monkeypatch.setattr(radloop.retrieval, "search_cases", missing_index)
    outcome = views_search.find_similar(filled, image=np.zeros((8, 8), np.uint8))
    assert "no index for enc-1" in outcome.message and next_steps.COMMANDS["index"] in outcome.message

    monkeypatch.setattr(radloop.retrieval, "search_cases", lambda catalog, **_: [])
    filtered = views_search.find_similar(filled, case_id="I-a", filters={"finding": "pneumothorax"})
    assert filtered.message == next_steps.NO_FILTERED_HITS  # the filters, not the index, are the cause
    assert views_search.find_similar(filled, case_id="I-a").message == next_steps.NO_INDEX_HITS


def test_run_round_action_filters_arguments_and_reports_errors(catalog):
    seen = {}

    def strict(catalog, *, budget, progress=None):
        seen.update(budget=budget, progress=progress)
        progress("selecting", 0.5)
        return {"selected": budget}

    messages = []
    result = views_control.run_round_action(strict, catalog, progress=lambda m, f: messages.append((m, f)),
                                           budget=3, strategy="ignored", label_studio_url=None)
    assert result.ok and result.summary == {"selected": 3} and messages == [("selecting", 0.5)]

    def flexible(catalog, **overrides):
        seen["overrides"] = overrides
        raise RuntimeError("no encoder: run `radloop demo`")

    result = views_control.run_round_action(flexible, catalog, budget=2, label_studio_url=None)
    assert seen["overrides"] == {"budget": 2}  # None means "use the default"
    assert not result.ok and "no encoder" in result.message


def test_label_studio_status_reachable_and_not():
    down = views_control.label_studio_status("http://127.0.0.1:9", timeout=1)
    assert not down.reachable and "Simulate" in down.message

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "UP"}')

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        up = views_control.label_studio_status(f"http://127.0.0.1:{server.server_port}/")
        assert up.reachable and up.url == f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _cli_command(words: list[str]):
    """The click command a command line names (descending through groups), or None."""
    import typer.main

    from radloop.app.cli import build_app

    command = typer.main.get_command(build_app())
    for word in words:  # groups have .commands (typer may vendor click: no isinstance check)
        if word not in getattr(command, "commands", {}):
            break
        command = command.commands[word]
    return None if hasattr(command, "commands") else command


@pytest.mark.parametrize("purpose", sorted(next_steps.COMMANDS))
def test_next_step_commands_exist_in_the_cli(purpose):
    """The app only names commands the CLI really has (with the options it mentions)."""
    words = next_steps.COMMANDS[purpose].split()[1:]
    command = _cli_command(words)
    assert command is not None, f"`{next_steps.COMMANDS[purpose]}` names no registered radloop command"
    options = {option for parameter in command.params for option in getattr(parameter, "opts", [])}
    assert {word for word in words if word.startswith("--")} <= options


def test_search_cards_name_the_distance_and_a_metric_change(filled, monkeypatch):
    """The app's cards said "distance 0.300" whatever the index's metric (lead, after walk 22l: the CLI names it)."""
    import radloop.retrieval
    from radloop.retrieval import search as search_module

    with filled.session() as session:
        session.add(Model(version="enc-1", kind="encoder", task="encoder", path="models/enc-1", is_current=True))
        for row, image_id in enumerate(("I-a", "I-b", "I-c")):
            session.add(Embedding(image_id=image_id, model_version="enc-1", shard_path="e.npy", row=row, dim=4,
                                  dtype="float32"))
    hits = [{"image_id": "I-a", "distance": 0.0, "metric": "l2"}, {"image_id": "I-c", "distance": 0.3, "metric": "l2"}]
    monkeypatch.setattr(radloop.retrieval, "search_cases", lambda catalog, **_: hits, raising=False)
    outcome = views_search.find_similar(filled, case_id="I-a", k=2)
    assert outcome.distance_label == "distance (L2)" and outcome.metric_note is None
    for hit in hits:
        hit["metric"] = "cosine"
    monkeypatch.setattr(search_module, "index_metric",
                        lambda catalog, version: ("cosine", {"from": "l2", "to": "cosine", "at": "2026-11-28"}))
    outcome = views_search.find_similar(filled, case_id="I-a", k=2)
    assert outcome.distance_label == "distance (1 - cosine)"
    assert outcome.metric_note and "rebuilt with cosine distance" in outcome.metric_note
