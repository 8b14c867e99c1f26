"""The notebook-level API of radloop.labeling: text cleaning, argument traps, mention forms, CSV headers."""

from __future__ import annotations

import pytest

import radloop.labeling
from radloop.core.records import FindingMention
from radloop.labeling import (ReportLabeler, mention_from_json, mention_to_json, report_level, score_reports,
                              stored_mentions)
from radloop.labeling.evaluate import mesh_gold, mesh_uncoded, predicted_positives
from radloop.labeling.sources import iter_csv, iter_reports
from radloop.labeling.text import clean_text

pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")


@pytest.fixture(scope="module")
def labeler():
    return ReportLabeler()


def _evidence_is_the_text(text, mentions):
    return all(text[m.start:m.end] == m.evidence for m in mentions if m.start is not None)


# --- comparison signs are text, markup is blanked -------------------------------------------------------

@pytest.mark.parametrize("text", ["Displacement <2 mm. Fracture of the left distal radius. Angulation >10 degrees.",
                                  "Lesion measures <1 cm. Pneumothorax on the right. Effusion >2 cm.",
                                  "Nodule <L1 and >T12 levels.", "Opacity <left side> of the film.",
                                  "R&D; &foo; AT&T"])
def test_comparison_signs_and_unknown_references_are_kept(text):
    assert clean_text(text) == (text, None)


def test_markup_is_blanked_in_place():
    raw = ("<!DOCTYPE html><html><body><p class='r'>FINDINGS: <b>Right</b> pneumothorax.<br/>"
           "<o:p></o:p><!-- note --> No effusion &amp; no edema&nbsp;&#160;&#xA0;</p></body></html>")
    text, error = clean_text(raw)
    assert error is None and len(text) == len(raw)
    assert "<" not in text and ">" not in text and "&" not in text
    assert " ".join(text.split()) == "FINDINGS: Right pneumothorax. No effusion no edema"


def test_findings_between_comparison_signs_are_labelled(labeler):
    text = "Displacement <2 mm. Fracture of the left distal radius. Angulation >10 degrees."
    fractures = [m for m in labeler.label(text) if m.finding == "fracture"]
    assert [(m.status, m.site, m.laterality) for m in fractures] == [("positive", "radius", "left")]
    assert _evidence_is_the_text(text, fractures)
    text = "Lesion measures <1 cm. Pneumothorax on the right. Effusion >2 cm."
    result = labeler.label(text)
    assert report_level(result)["pneumothorax"] == "positive" and report_level(result)["effusion"] == "positive"
    assert _evidence_is_the_text(text, result)


def test_offsets_index_the_original_text_around_markup(labeler):
    text = "<p>Fracture of the <i>left</i> clavicle.</p> Angulation <5 degrees; small effusion &gt;1 cm."
    result = labeler.label(text)
    assert _evidence_is_the_text(text, result)
    assert {(m.finding, m.laterality) for m in result if m.finding in ("fracture", "effusion")} == {
        ("fracture", "left"), ("effusion", None)}


def test_cleaning_is_linear_on_hostile_input():
    for hostile in ("<!--" * 100_000, "<p a" * 100_000, "<" * 300_000, "&a" * 150_000):
        text, error = clean_text(hostile)
        assert error is None and len(text) == len(hostile)


# --- a bare string where many are expected ---------------------------------------------------------------

@pytest.mark.parametrize("n_process", [1, 2])
def test_label_many_refuses_a_bare_string(labeler, n_process):
    for one in ("Fracture of the radius.", b"Fracture of the radius."):
        with pytest.raises(TypeError, match="iterable of report texts.*label\\(text\\)"):
            labeler.label_many(one, n_process=n_process)  # at the call, not at the first next()
    assert len(list(labeler.label_many(["Fracture of the radius."]))) == 1


def test_other_many_arguments_refuse_a_bare_string():
    with pytest.raises(TypeError, match="mentions"):
        report_level("fracture")
    with pytest.raises(TypeError, match="findings"):
        predicted_positives("fracture")
    with pytest.raises(TypeError, match="MeSH terms"):
        mesh_gold("Fractures, Bone/ribs")
    with pytest.raises(TypeError, match="MeSH terms"):
        mesh_uncoded("No Indexing")
    with pytest.raises(TypeError, match="MeSH terms"):
        score_reports({"A": []}, {"A": "normal"})
    with pytest.raises(TypeError, match="exclude"):
        stored_mentions(None, "rules-x", exclude="CXR1")
    assert mesh_gold(["Fractures, Bone/ribs"]).fracture_sites == {"rib"}


# --- FindingMention records and JSON dicts interchangeably ----------------------------------------------

def test_mention_json_round_trip(labeler):
    mentions = list(labeler.label("No pneumothorax. Healed right rib fracture."))
    assert any(m.modifiers for m in mentions)
    assert [mention_from_json(mention_to_json(m)) for m in mentions] == mentions
    # the to_json layout (label-reports JSONL, stored rows) has no modifiers: they come back empty
    assert [mention_from_json(m.to_json()) for m in mentions] == [
        FindingMention(**{**m.__dict__, "modifiers": ()}) for m in mentions]
    stored_row = {"finding": "normal", "status": "negative", "temporality": None, "site": None, "laterality": None,
                  "device_type": None, "evidence": None, "start": None, "end": None, "section": None, "id": 7}
    assert mention_from_json(stored_row) == FindingMention("normal", "negative")
    with pytest.raises(ValueError, match="status"):
        mention_from_json({"finding": "effusion"})


def test_scoring_and_report_level_take_either_form(labeler):
    texts = {"A": "Small left pleural effusion.", "B": "Healed right rib fracture. Normal heart size.",
             "C": "No acute cardiopulmonary abnormality."}
    majors = {"A": ["Pleural Effusion/left"], "B": ["Fractures, Bone/ribs/right/healed"], "C": ["normal"]}
    results = {report_id: labeler.label(text) for report_id, text in texts.items()}
    as_json = {report_id: [m.to_json() for m in result] for report_id, result in results.items()}
    with_records = score_reports(results, majors)
    assert with_records == score_reports(as_json, majors)
    assert with_records["per_finding"]["fracture"]["tp"] == 1 and with_records["fracture_old_agreement"] == 1.0
    assert predicted_positives(results["A"]) == predicted_positives(as_json["A"]) == {"effusion"}
    for report_id in texts:
        assert report_level(results[report_id]) == report_level(as_json[report_id])
    with pytest.raises(TypeError, match="FindingMention or a dict"):
        report_level([("effusion", "positive")])


# --- package surface, CSV headers -------------------------------------------------------------------------

def test_public_api_is_listed_and_documented():
    for name in ("ReportLabeler", "LabelResult", "report_level", "label_catalog", "stored_mentions", "iter_reports",
                 "score_reports", "read_negbio_table", "mention_from_json", "mention_to_json", "rules_version"):
        assert name in radloop.labeling.__all__
    assert all(hasattr(radloop.labeling, name) for name in radloop.labeling.__all__)
    assert "notes/CONTRACTS.md" not in radloop.labeling.__doc__ and "labeling/README.md" in radloop.labeling.__doc__


def test_csv_headers_are_case_insensitive_like_core(tmp_path):
    path = tmp_path / "reports.csv"
    path.write_text("\ufeff Report_ID ,TEXT,Image\nR1,Fracture of the R wrist.,x.png\n,No effusion.,\n",
                    encoding="utf-8")
    reports = list(iter_reports(path))
    assert [(r.report_id, r.text) for r in reports] == [("R1", "Fracture of the R wrist."), ("row3", "No effusion.")]
    (tmp_path / "bad.csv").write_text("id,body\n1,x\n")
    with pytest.raises(ValueError, match="report_id,text"):
        list(iter_csv(tmp_path / "bad.csv"))


# --- laterality letters, coordinated sites, displacement ---------------------------------------------------

@pytest.mark.parametrize(("text", "site", "laterality"), [
    ("Fracture of the R wrist.", "wrist", "right"),
    ("Fracture of L 5th rib.", "rib", "left"),
    ("Fracture of the L1 vertebra.", "lumbar_spine", None),
    ("L spine fracture.", "thoracic_spine", None),     # "L spine" is lumbar, never "left"
    ("R/O fracture of the wrist.", "wrist", None),
    ("PA and L lateral views show a fracture of the wrist.", "wrist", None),
    ("r wrist fracture.", "wrist", None),              # lower case: not the letter convention
])
def test_single_letter_laterality_only_before_a_site(labeler, text, site, laterality):
    fractures = [m for m in labeler.label(text) if m.finding == "fracture"]
    assert [(m.site, m.laterality) for m in fractures] == [(site, laterality)]


def test_coordinated_sites_give_one_mention_each(labeler):
    text = "Fracture of the right radius and left ulna."
    fractures = [m for m in labeler.label(text) if m.finding == "fracture"]
    assert [(m.site, m.laterality) for m in fractures] == [("radius", "right"), ("ulna", "left")]
    assert {(m.start, m.end, m.evidence) for m in fractures} == {(0, 8, "Fracture")}
    clause = [m for m in labeler.label("There is a fracture of the left humerus and the scapula is intact.")
              if m.finding == "fracture"]
    assert [(m.site, m.laterality) for m in clause] == [("humerus", "left")]
    apart = [m for m in labeler.label("Fracture of the right radius and dislocation of the left ulna.")
             if m.finding == "fracture"]
    assert [m.site for m in apart] == ["radius"]


def test_displacement_is_not_acuity(labeler):
    def temporality(text):
        return [m.temporality for m in labeler.label(text) if m.finding == "fracture"]

    assert temporality("Nondisplaced fracture of the radius.") == temporality("Displaced fracture of the radius.") \
        == ["unspecified"]
    assert temporality("Healed nondisplaced rib fracture.") == ["old"]
    assert temporality("Acute displaced fracture of the radius.") == ["acute"]
