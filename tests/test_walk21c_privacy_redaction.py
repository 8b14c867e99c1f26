"""Walk 21c privacy review of report redaction: relatives' names in UPPER case or one word, dotted dates, rib lists
(synthetic text only)."""

from __future__ import annotations

import time

import pytest

from radloop.labeling.redact import redact_report


@pytest.mark.parametrize("text, expected", [
    ("MOTHER: JANE DOE", "MOTHER: [NAME]"),
    ("FAMILY HISTORY: MOTHER: JANE DOE. FATHER: LUNG CA.", "FAMILY HISTORY: MOTHER: [NAME]. FATHER: LUNG CA."),
    ("WIFE: MARIA CRUZ\n", "WIFE: [NAME]\n"),
    ("Mother: Jo", "Mother: [NAME]"),
    ("Mother: Jane", "Mother: [NAME]"),
    ("Mother: Jane.", "Mother: [NAME]."),
    ("Mother: Jane; Father: John\n", "Mother: [NAME]; Father: [NAME]\n"),
    ("Contact - Daughter: Mary (health care proxy)", "Contact - Daughter: [NAME] (health care proxy)"),
])
def test_relatives_listed_with_a_colon(text, expected):
    assert redact_report(text).text == expected


@pytest.mark.parametrize("text", [
    "MOTHER: BREAST CANCER", "FATHER: MI, HTN", "MOTHER: CAD, HTN", "MOTHER: DECEASED", "MOTHER: ALIVE AND WELL",
    "SISTER: SICKLE CELL", "MOTHER: HEART ATTACK AT 60", "FATHER: PROSTATE CA, HTN", "MOTHER: HIGH BP",
    "MOTHER: GOOD HEALTH", "MOTHER: OSA, PAD", "MOTHER: OSA PAD",
    "Mother: Stroke.", "Mother: Cancer", "Mother: Deceased", "Mother: Osteoporosis", "Mother: Angina",
    "Mother: Good Health", "Mother: Arthritis\n", "Father: Htn",
    "Mother: breast cancer", "Mother has a history of breast cancer.",
])
def test_family_history_stays(text):
    result = redact_report(text)
    assert result.text == text and not result.changed


@pytest.mark.parametrize("text, expected", [
    ("Seen 4.17.23 for follow-up.", "Seen [DATE] for follow-up."),
    ("Comparison: 4.17.23.", "Comparison: [DATE]."),
    ("dated 17.4.23", "dated [DATE]"),
    ("on 12.5.23, stable", "on [DATE], stable"),
    ("04.17.2023", "[DATE]"),
    ("4.17.2023", "[DATE]"),
    ("Fracture 4-17-23, now healing.", "Fracture [DATE], now healing."),
    ("seen 4-17-23.", "seen [DATE]."),
])
def test_dates(text, expected):
    assert redact_report(text).text == expected


@pytest.mark.parametrize("text", [
    "fractures 7-9-11", "Fractures of ribs 7-9-11.", "ribs 7-9-11", "left posterior 7-9-11 rib fractures",
    "Healing fractures 4-7-10.", "RIBS 10-11-12", "fractures 10-11-12", "levels 3-4-5", "ribs 8-9-10",
    "Nodule measures 4.5 cm.", "1.2 x 3.4 x 5.6 cm", "version 1.2.3", "v1.2.3", "2.5.10 cm", "4.45.12",
    "IP 10.1.2.34", "T7.8.9", "C5-6", "ribs 4-7", "4-5-6 cm",
])
def test_rib_lists_and_measurements_stay(text):
    result = redact_report(text)
    assert result.text == text and not result.changed


def test_new_rules_stay_linear_on_hostile_text():
    """Long runs of what the new rules look at: a colon list of capitalised words and of dotted numbers."""
    hostile = ("MOTHER: " + "JANE " * 20000 + "Mother: " + "Jane " * 20000 + "1.2." * 20000
               + "ribs " + "7-9-" * 20000)
    start = time.perf_counter()
    redact_report(hostile)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("text, expected", [
    ("Emergency contact: Jane Doe", "Emergency contact: [NAME]"),
    ("HCP: Jane Doe\n", "HCP: [NAME]\n"),
    ("NEXT OF KIN: JANE DOE", "NEXT OF KIN: [NAME]"),
    ("Health care proxy: Roe, Jane", "Health care proxy: [NAME]"),
    ("Results communicated to Jane Roe by telephone.", "Results communicated to [NAME] by telephone."),
    ("Findings relayed to Jo Roe, NP.", "Findings relayed to [NAME], NP."),
])
def test_contact_labels_and_results_communication(text, expected):
    assert redact_report(text).text == expected


@pytest.mark.parametrize("text", [
    "Emergency contact: None", "Findings communicated to the ED physician.", "Results relayed to ED.",
    "Communicated to Radiology Resident on call.", "Contact isolation.",
])
def test_contact_and_communication_words_alone_stay(text):
    result = redact_report(text)
    assert result.text == text and not result.changed
