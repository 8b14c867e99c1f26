"""Bad report text never stops a run: an ``error`` or empty findings, and the next report is labelled."""

from __future__ import annotations

import pytest

from radloop.core.records import FindingMention
from radloop.labeling import ReportLabeler, report_level

# medspacy calls its token Matcher even when a component's rules are all phrases (spaCy W036)
pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")


@pytest.fixture(scope="module")
def labeler():
    return ReportLabeler(max_chars=200_000)


def test_bad_inputs_in_one_stream(labeler):
    texts = [None, "", "   \n", "pneumothorax " * 90_000, b"caf\xe9 \xff\xfe small left pleural effusion",
             "<html><body><p>FINDINGS: <b>Right</b> pneumothorax.</p></body></html>",
             "IMPRESSION: HEALED RIGHT FIFTH RIB FRACTURE. NO PNEUMOTHORAX.", "XXXX XXXX. XXXX-XXXX XXXX",
             12345, "FINDINGS: Small left pleural effusion."]
    results = list(labeler.label_many(texts))
    assert len(results) == len(texts)
    none, empty, blank, huge, raw_bytes, html, caps, masks, number, last = results
    assert none.error == "missing text" and list(none) == []
    assert empty.error is None and list(empty) == [] and list(blank) == []
    assert "too long" in huge.error and list(huge) == []
    assert number.error and list(number) == []
    assert report_level(raw_bytes)["effusion"] == "positive"
    pneumothorax = [m for m in html if m.finding == "pneumothorax"]
    assert pneumothorax and pneumothorax[0].status == "positive" and pneumothorax[0].laterality == "right"
    assert html[0].evidence == texts[5][html[0].start:html[0].end]  # tags blanked, offsets kept
    fracture = [m for m in caps if m.finding == "fracture"][0]
    assert (fracture.status, fracture.site, fracture.laterality, fracture.temporality) == ("positive", "rib", "right", "old")
    assert report_level(caps)["pneumothorax"] == "negative"
    assert all(m.finding == "normal" for m in masks) or list(masks) == []
    assert report_level(last) == {"effusion": "positive", "normal": "negative"}


@pytest.mark.slow
def test_one_megabyte_report_is_labelled_piecewise():
    labeler = ReportLabeler()
    sentence = "FINDINGS: The heart is normal in size. The lungs are clear. No pleural effusion or pneumothorax. "
    text = (sentence * 11_000)[:1_000_000].rsplit(". ", 1)[0] + ". Small right pneumothorax."
    result = labeler.label(text)
    assert result.error is None
    positive = [m for m in result if m.finding == "pneumothorax" and m.status == "positive"]
    assert len(positive) == 1 and text[positive[0].start:positive[0].end] == "pneumothorax"
    assert positive[0].start > 999_000 and positive[0].section == "findings"
    assert report_level(result)["normal"] == "negative"


def test_offsets_point_at_the_evidence(labeler):
    text = "COMPARISON: None.\nINDICATION: Fall.\nFINDINGS: Acute displaced fracture of the left clavicle."
    mentions = labeler.label(text)
    fracture = [m for m in mentions if m.finding == "fracture"][0]
    assert text[fracture.start:fracture.end] == fracture.evidence == "fracture"
    assert fracture.section == "findings" and fracture.temporality == "acute"
    assert isinstance(fracture, FindingMention)


def test_parallel_matches_serial(labeler):
    texts = ["No pneumothorax.", None, "Healed left rib fractures.", "Cardiomegaly. Small effusion."] * 30
    serial = [(list(r), r.error) for r in labeler.label_many(texts)]
    parallel = [(list(r), r.error) for r in labeler.label_many(texts, n_process=2)]
    assert parallel == serial


def test_report_level_precedence():
    mentions = [FindingMention("effusion", "negative"), FindingMention("effusion", "uncertain"),
                FindingMention("nodule", "negative"), FindingMention("fracture", "uncertain"),
                FindingMention("fracture", "positive")]
    assert report_level(mentions) == {"effusion": "uncertain", "nodule": "negative", "fracture": "positive"}
