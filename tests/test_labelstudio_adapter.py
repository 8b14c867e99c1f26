"""Label Studio config generation and the JSON <-> record adapter (no server needed)."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from radloop.core.records import Box
from radloop.core.vocabulary import BOX_FINDINGS, IMAGE_FINDINGS
from radloop.labeling.ls_adapter import (
    AdapterError, AnnotationVersion, ImageGeometry, PredictionRecord, parse_annotation, parse_predict_request,
    parse_task, parse_webhook, prediction_to_ls,
)
from radloop.labeling.ls_config import (
    FINDINGS_INSTRUCTION, LabelConfigError, build_label_config, config_digest, parse_label_config,
)
from radloop.labeling.ls_sync import consensus

CONFIG = parse_label_config(build_label_config())


def _annotation(results, *, annotation_id=1, user=1, cancelled=False, updated="2026-01-01T10:00:00.000000Z"):
    return {"id": annotation_id, "task": 7, "completed_by": user, "was_cancelled": cancelled, "result": results,
            "created_at": "2026-01-01T09:00:00.000000Z", "updated_at": updated, "lead_time": 3.5}


def _rect(value, *, label="fracture", seen=(1024, 512), image_rotation=0):
    return {"from_name": "boxes", "to_name": "image", "type": "rectanglelabels", "original_width": seen[0],
            "original_height": seen[1], "image_rotation": image_rotation,
            "value": {**value, "rectanglelabels": [label]}}


def _choices(*names, control="findings"):
    return {"from_name": control, "to_name": "image", "type": "choices", "value": {"choices": list(names)}}


def _comment(text):
    return {"from_name": "comment", "to_name": "image", "type": "textarea", "value": {"text": [text]}}


# ------------------------------------------------------------------------------------------------ config
def test_config_lists_vocabulary_and_parses_back():
    xml = build_label_config()
    root = ET.fromstring(xml)
    stored = {choices.get("name"): [c.get("alias") or c.get("value") for c in choices.iter("Choice")]
              for choices in root.iter("Choices")}
    assert stored == {"findings": list(IMAGE_FINDINGS), "cannot_tell": list(IMAGE_FINDINGS)}
    assert [c.get("alias") or c.get("value") for c in root.iter("Label")] == list(BOX_FINDINGS)
    assert root.find(".//TextArea").get("name") == "comment"
    assert root.find(".//Text").get("value") == "$report"
    assert CONFIG.image_name == "image" and CONFIG.image_value == "image"
    assert CONFIG.choices[0].from_name == "findings" and CONFIG.rectangles[0].from_name == "boxes"
    assert [c.from_name for c in CONFIG.choices] == ["findings"]  # "Cannot tell" is not a list of findings present
    assert CONFIG.cannot_tell[0].from_name == "cannot_tell" and CONFIG.cannot_tell[0].labels == IMAGE_FINDINGS
    assert config_digest(xml) == config_digest(xml.replace("\n", "\n   "))  # whitespace-insensitive


def test_config_rejects_unknown_finding_and_bad_xml():
    with pytest.raises(ValueError, match="unknown finding"):
        build_label_config(image_findings=("fracture", "broken_thing"))
    with pytest.raises(LabelConfigError, match="not valid XML"):
        parse_label_config("<View><Image")
    with pytest.raises(LabelConfigError, match="no <Image"):
        parse_label_config("<View><Text name='t' value='$t'/></View>")
    with pytest.raises(LabelConfigError, match="no Choices or RectangleLabels"):
        parse_label_config("<View><Image name='im' value='$img'/></View>")


def test_parse_foreign_config_names():
    parsed = parse_label_config(
        "<View><Image name='xray' value='$img'/><Choices name='cls' toName='xray'><Choice value='fracture'/>"
        "</Choices><RectangleLabels name='rect' toName='xray'><Label value='foreign_body'/></RectangleLabels></View>")
    assert (parsed.image_name, parsed.image_value) == ("xray", "img")
    assert parsed.choices[0].labels == ("fracture",) and parsed.rectangles[0].from_name == "rect"
    assert parsed.cannot_tell == ()


def test_view_shows_readable_names_and_results_carry_vocabulary_keys():
    """Label Studio shows ``value`` and stores ``alias`` (else ``value``): no underscores on screen."""
    root = ET.fromstring(build_label_config())
    items = [*root.iter("Choice"), *root.iter("Label")]
    assert all("_" not in item.get("value") for item in items)
    foreign = [item for item in items if (item.get("alias") or item.get("value")) == "foreign_body"]
    assert len(foreign) == 3 and all(item.get("value") == "foreign body" for item in foreign)
    assert CONFIG.choices[0].labels == IMAGE_FINDINGS and CONFIG.rectangles[0].labels == BOX_FINDINGS
    geometry = ImageGeometry(1024, 512, 1024, 512)
    box = _rect({"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 0}, label="foreign_body")
    version = parse_annotation(_annotation([_choices("foreign_body"), box]), CONFIG, geometry)
    assert version.problems == () and version.choices["foreign_body"] == 1 and version.boxes[0].label == "foreign_body"


def test_view_says_none_ticked_means_none_present():
    headers = [header.get("value") for header in ET.fromstring(build_label_config()).iter("Header")]
    assert FINDINGS_INSTRUCTION in headers and "none ticked = none present" in FINDINGS_INSTRUCTION
    assert "Cannot tell" in headers and "Present" in headers


# -------------------------------------------------------------------------------------------- geometry
def test_percent_to_original_pixels_exact_when_render_is_downscaled():
    geometry = ImageGeometry(width=4096, height=2048, render_width=1024, render_height=512)
    version = parse_annotation(_annotation([_rect({"x": 10, "y": 25, "width": 12.5, "height": 50, "rotation": 0})]),
                               CONFIG, geometry)
    assert version.problems == ()
    assert version.boxes == (Box("fracture", 409.6, 512.0, 512.0, 1024.0),)


def test_pixel_percent_pixel_round_trip_is_exact():
    rng = random.Random(0)
    for _ in range(300):
        width, height = rng.randint(64, 5000), rng.randint(64, 5000)
        scale = rng.choice([1, 2, 3])
        geometry = ImageGeometry(width, height, max(1, width // scale), max(1, height // scale))
        x, y = round(rng.uniform(0, width / 2), 4), round(rng.uniform(0, height / 2), 4)
        w, h = round(rng.uniform(1, width - x), 4), round(rng.uniform(1, height - y), 4)
        box = Box("foreign_body", x, y, w, h, score=0.7)
        prediction = prediction_to_ls(PredictionRecord("m1", {}, (box,)), geometry, CONFIG)
        result = prediction["result"][0]
        assert result["value"]["rotation"] == 0 and result["score"] == 0.7
        assert (result["original_width"], result["original_height"]) == (geometry.render_width, geometry.render_height)
        back = parse_annotation(_annotation([result], updated="2026-01-01T10:00:00Z"), CONFIG, geometry)
        assert back.problems == ()
        assert (back.boxes[0].x, back.boxes[0].y, back.boxes[0].w, back.boxes[0].h) == (x, y, w, h)


@pytest.mark.parametrize("result, reason", [
    (_rect({"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 30}), "rotated"),
    (_rect({"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 0}, image_rotation=90), "rotated in Label Studio"),
    (_rect({"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 0}, seen=(512, 512)), "different aspect ratio"),
    (_rect({"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 0}, label="tumour"), "unknown box label"),
    (_rect({"x": 1, "y": 1, "width": 5, "rotation": 0}), "lacks height"),
    (_rect({"x": 120, "y": 1, "width": 5, "height": 5, "rotation": 0}), "outside"),
    ({"from_name": "boxes", "type": "rectanglelabels", "value": {"x": 1}}, "malformed rectanglelabels"),
    ({"from_name": "x", "type": "polygonlabels", "value": {}}, "unsupported result type"),
    ("not a dict", "not an object"),
])
def test_bad_results_become_problems_with_reasons(result, reason):
    geometry = ImageGeometry(2048, 1024, 1024, 512)
    version = parse_annotation(_annotation([result, _choices("fracture")]), CONFIG, geometry)
    assert len(version.problems) == 1 and reason in version.problems[0].reason
    assert version.boxes == ()
    assert version.choices["fracture"] == 1


def test_box_partly_outside_is_clipped_with_note():
    geometry = ImageGeometry(1000, 500, 1000, 500)
    version = parse_annotation(_annotation([_rect({"x": 95, "y": 10, "width": 10, "height": 10, "rotation": 0},
                                                  seen=(1000, 500))]), CONFIG, geometry)
    assert version.problems == () and version.boxes[0].w == pytest.approx(50.0)
    assert any("clipped" in note for note in version.notes)


# --------------------------------------------------------------------------------------------- choices
def test_choices_ticked_one_unticked_zero_and_box_implies_present():
    geometry = ImageGeometry(1024, 512, 1024, 512)
    version = parse_annotation(_annotation([
        _choices("device"), _rect({"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 0}),
        {"from_name": "comment", "to_name": "image", "type": "textarea", "value": {"text": ["old plate"]}}]),
        CONFIG, geometry)
    assert version.choices == {"fracture": 1, "foreign_body": 0, "device": 1, "normal": 0, "dislocation": 0}
    assert version.comment == "old plate" and version.annotator_id == 1 and version.lead_time == 3.5
    assert any("implied by a drawn box" in note for note in version.notes)


def test_comment_only_submission_reads_as_none_present():
    """What the view says: none ticked = none present (a deliberate answer, not a missing one)."""
    version = parse_annotation(_annotation([_comment("looks fine")]), CONFIG, None)
    assert version.choices == dict.fromkeys(IMAGE_FINDINGS, 0) and version.comment == "looks fine"


def test_cannot_tell_stores_uncertain_not_negative():
    """The reviewer's case: "cannot tell, suspicious for fracture" is an uncertain fracture, the rest absent."""
    version = parse_annotation(_annotation([
        _choices("fracture", control="cannot_tell"), _comment("cannot tell - suspicious for fracture")]), CONFIG, None)
    assert version.problems == ()
    assert version.choices == {"fracture": None, "foreign_body": 0, "device": 0, "normal": 0, "dislocation": 0}
    both = parse_annotation(_annotation([_choices("device", "foreign_body"), _choices("foreign_body", "normal",
                                                                                      control="cannot_tell")]),
                            CONFIG, None)
    assert both.choices == {"fracture": 0, "foreign_body": None, "device": 1, "normal": None, "dislocation": 0}
    assert both.notes == ("foreign_body ticked or boxed as present and under Cannot tell: stored as uncertain",)


def test_cannot_tell_wins_over_a_drawn_box_but_the_box_is_kept():
    geometry = ImageGeometry(1024, 512, 1024, 512)
    version = parse_annotation(_annotation([_choices("fracture", control="cannot_tell"),
                                            _rect({"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 0})]),
                               CONFIG, geometry)
    assert version.choices["fracture"] is None and len(version.boxes) == 1
    assert not any("implied by a drawn box" in note for note in version.notes)
    assert any("under Cannot tell" in note for note in version.notes)


def test_unknown_cannot_tell_value_is_quarantined_and_unticked_not_read_as_absent():
    version = parse_annotation(_annotation([_choices("device"), _choices("fracture", "alien", control="cannot_tell")]),
                               CONFIG, None)
    assert [p.reason for p in version.problems] == ["unknown choice(s) ['alien']"]
    assert version.choices == {"device": 1, "fracture": None}


def test_cannot_tell_votes_carry_no_label():
    """ls_sync stores each choice value as is: None, like a consensus tie, is no training label."""
    outcome = consensus([_vote(1, 0, fracture=None, device=0)])
    assert outcome["fracture"]["value"] is None and outcome["device"]["value"] == 0


def test_unknown_choice_is_quarantined_and_unticked_not_read_as_absent():
    version = parse_annotation(_annotation([_choices("fracture", "alien")]), CONFIG, None)
    assert [p.reason for p in version.problems] == ["unknown choice(s) ['alien']"]
    assert version.choices == {"fracture": 1}


def test_cancelled_annotation_has_no_votes():
    version = parse_annotation(_annotation([], cancelled=True), CONFIG, None)
    assert version.cancelled and version.choices == {}


def test_annotation_without_id_or_time_is_an_error_and_task_keeps_it_as_problem():
    with pytest.raises(AdapterError):
        parse_annotation({"result": []}, CONFIG, None)
    task = parse_task({"id": 3, "data": {"case_id": "I-1", "round_id": 2, "radloop_key": "I-1@round-2"},
                       "annotations": [{"id": 9, "result": [], "created_at": "yesterday"}]}, CONFIG, lambda _: None)
    assert task.key == "I-1@round-2" and task.round_id == 2 and task.annotations == ()
    assert "not an ISO timestamp" in task.problems[0].reason
    with pytest.raises(AdapterError):
        parse_task({"data": {}}, CONFIG, lambda _: None)


# ------------------------------------------------------------------------------------------- predictions
def test_prediction_scores_and_threshold():
    geometry = ImageGeometry(100, 100, 100, 100)
    prediction = prediction_to_ls(PredictionRecord("m-7", {"fracture": 0.9, "device": 0.6, "normal": 0.1,
                                                          "effusion": 0.99}), geometry, CONFIG)
    assert prediction["model_version"] == "m-7"
    choices = prediction["result"][0]
    assert choices["value"]["choices"] == ["fracture", "device"]  # effusion is not in this project's Choices
    assert choices["score"] == 0.6
    assert prediction["score"] == pytest.approx((0.9 + 0.6 + 0.9 + 0.99) / 4, abs=1e-6)


def test_uncertain_prediction_is_ticked_under_cannot_tell_not_as_present():
    """A report's "possible fracture" (weak label uncertain, 0.5) is not a pre-ticked fracture."""
    geometry = ImageGeometry(100, 100, 100, 100)
    prediction = prediction_to_ls(PredictionRecord("report-rules:1", {"fracture": 0.5, "device": 1.0, "normal": 0.0},
                                                   uncertain=("fracture",)), geometry, CONFIG)
    by_control = {result["from_name"]: result for result in prediction["result"]}
    assert by_control["findings"]["value"]["choices"] == ["device"]
    assert by_control["cannot_tell"]["value"]["choices"] == ["fracture"] and by_control["cannot_tell"]["score"] == 0.5
    assert all(CONFIG.control(result["from_name"]) for result in prediction["result"])
    old_layout = parse_label_config(build_label_config().replace('name="cannot_tell"', 'name="unsure_list"'))
    plain = prediction_to_ls(PredictionRecord("r", {"fracture": 0.5}, uncertain=("fracture",)), geometry, old_layout)
    assert plain["result"] == []  # no "Cannot tell" control: left unticked, never ticked as present


# -------------------------------------------------------------------------------------- request parsing
@pytest.mark.parametrize("body, message", [
    ([], "JSON object"), ({}, "non-empty list"), ({"tasks": []}, "non-empty list"),
    ({"tasks": [{"id": 1}]}, "'data' object"), ({"tasks": [{"data": "x"}]}, "'data' object"),
])
def test_predict_request_errors(body, message):
    with pytest.raises(AdapterError, match=message):
        parse_predict_request(body)


def test_webhook_parsing():
    event = parse_webhook({"action": "ANNOTATION_CREATED", "project": {"id": 4}, "task": {"id": 8},
                           "annotation": {"id": 9}})
    assert (event.action, event.project_id, event.task_id, event.annotation_id) == ("ANNOTATION_CREATED", 4, 8, 9)
    with pytest.raises(AdapterError):
        parse_webhook({"project": 1})


# ----------------------------------------------------------------------------------------- consensus
def _vote(user, minutes, cancelled=False, **choices):
    stamp = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes)
    return AnnotationVersion(annotation_id=user * 100 + minutes, task_id=1, annotator_id=user, created_at=stamp,
                             updated_at=stamp, cancelled=cancelled, ground_truth=False, choices=choices, boxes=(),
                             comment=None)


def test_consensus_newest_per_annotator_then_majority_tie_uncertain():
    outcome = consensus([
        _vote(1, 0, fracture=0, device=1), _vote(1, 5, fracture=1, device=1),  # user 1 changed their mind
        _vote(2, 1, fracture=1, device=0), _vote(3, 2, fracture=0, device=1),
        _vote(4, 9, cancelled=True),  # skipped: no vote
    ])
    assert outcome["fracture"] == {"value": 1, "status": "majority", "votes": {"1": 1, "2": 1, "3": 0}}
    assert outcome["device"]["value"] == 1 and outcome["device"]["status"] == "majority"
    tie = consensus([_vote(1, 0, fracture=1, normal=0), _vote(2, 0, fracture=0, normal=0)])
    assert tie["fracture"]["value"] is None and tie["fracture"]["status"] == "uncertain"
    assert tie["normal"] == {"value": 0, "status": "agreed", "votes": {"1": 0, "2": 0}}


def test_cannot_tell_votes_decide_nothing():
    from radloop.labeling.ls_consensus import _decide

    assert _decide({}) == (None, "withdrawn")
    assert _decide({"a": None}) == (None, "uncertain")  # only "cannot tell": uncertain, not agreed
    assert _decide({"a": None, "b": None}) == (None, "uncertain")
    assert _decide({"a": 1, "b": None}) == (1, "majority")
    assert _decide({"a": 1, "b": 1}) == (1, "agreed")
    assert _decide({"a": 1, "b": 0, "c": None}) == (None, "uncertain")
    assert _decide({"a": 0, "b": 0, "c": 1}) == (0, "majority")


def test_label_studio_validation_errors_are_shown():
    from types import SimpleNamespace

    from radloop.labeling.ls_client import LabelStudioClient

    client = LabelStudioClient("http://127.0.0.1:9", "token")
    error = SimpleNamespace(status_code=400, body={"detail": "Validation error",
                                                   "validation_errors": {"label_config": ["unknown tag Choicez"]}})
    message = str(client._api_error("update the project", error, 1, None))
    assert "Validation error" in message and "unknown tag Choicez" in message
