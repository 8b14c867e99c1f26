"""Walk 22a privacy review of report redaction: one UPPER-CASE relative's name, surname particles in UPPER case and
after "Patient", rib lists in brackets, relation words after a contact label, rare conditions (synthetic text only)."""

from __future__ import annotations

import time

import pytest

from radloop.labeling.redact import redact_report


@pytest.mark.parametrize("text, expected", [
    ("MOTHER: JANE", "MOTHER: [NAME]"),
    ("MOTHER: JANE.\nFATHER: HTN.", "MOTHER: [NAME].\nFATHER: HTN."),
    ("MOTHER: JO ROE", "MOTHER: [NAME]"),
    ("MOTHER: MARIA DE LA CRUZ\n", "MOTHER: [NAME]\n"),
])
def test_upper_case_relatives(text, expected):
    assert redact_report(text).text == expected


@pytest.mark.parametrize("text, expected", [
    ("Discussed with referring physician Maria DE LA CRUZ.", "Discussed with referring physician [NAME]."),
    ("Seen by Maria DE LA CRUZ.", "Seen by [NAME]."),
    ("Maria DE LA CRUZ, MD", "[NAME], MD"),
    ("his wife Maria DE LA CRUZ", "his wife [NAME]"),
    ("Pt Maria van der Berg arrived by ambulance.", "Pt [NAME] arrived by ambulance."),
    ("Patient Jan van der Berg presents with cough.", "Patient [NAME] presents with cough."),
])
def test_surname_particles_after_a_name_cue(text, expected):
    assert redact_report(text).text == expected


@pytest.mark.parametrize("text, expected", [
    ("HCP: Daughter Jane Doe", "HCP: Daughter [NAME]"),
    ("Next of kin: wife, Jane Doe", "Next of kin: wife, [NAME]"),
    ("Emergency contact: MOTHER, JANE DOE", "Emergency contact: MOTHER, [NAME]"),
])
def test_a_relation_word_after_a_contact_label_stays_before_the_name(text, expected):
    assert redact_report(text).text == expected


@pytest.mark.parametrize("text", [
    "HCP: Daughter", "HCP: Daughter.", "Emergency contact: Husband\n", "NEXT OF KIN: SON",
    "Healing rib fractures (7-9-11) on the left.", "Left rib fractures (7-9-11).", "ribs(7-9-11)",
    "Mother: Marfan syndrome", "MOTHER: MARFAN SYNDROME", "MOTHER: MARFAN", "Mother: Tay-Sachs",
    "Mother: Ehlers-Danlos", "Mother: von Willebrand", "MOTHER: VON WILLEBRAND", "Father: Paget",
    "MOTHER: HTN", "MOTHER: CANCER", "MOTHER: DECEASED", "MOTHER: OA", "FATHER: GI BLEED", "MOTHER: COPD",
])
def test_relation_words_rib_lists_and_conditions_stay(text):
    result = redact_report(text)
    assert result.text == text and not result.changed


def test_a_date_in_brackets_after_a_fracture_word_is_still_a_date():
    assert redact_report("Rib fractures (4-17-23).").text == "Rib fractures ([DATE])."


def test_new_patterns_stay_linear_on_hostile_text():
    """Long runs of what the changed rules look at: UPPER-CASE particles, two-letter words after a relative."""
    hostile = ("seen by Maria " + "DE " * 20000 + "MOTHER: " + "JO " * 20000 + "Pt Jan " + "van " * 20000
               + "HCP: " + "Daughter " * 20000 + "fractures (" + "7-9-" * 20000)
    start = time.perf_counter()
    redact_report(hostile)
    assert time.perf_counter() - start < 10
