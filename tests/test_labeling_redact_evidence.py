"""Report scrubbing: the evidence the rules ask for (UPPER-case addresses without a ZIP code, month/day after
"prior", compact ages with a sex letter, names after a cue only when they do not read as prose)."""

from __future__ import annotations

import pytest

from radloop.labeling.redact import redact_report

#: (text, what it must become)
CAUGHT = [
    # street addresses in UPPER case without "City, ST 12345": the street type ends the line, the text or a clause
    ("9 OAK ST", "[ADDRESS]"),
    ("FOUND DOWN OUTSIDE 9 OAK ST.", "FOUND DOWN OUTSIDE [ADDRESS]"),
    ("FELL AT HOME (9 OAK ST), NO LOC.", "FELL AT HOME ([ADDRESS]), NO LOC."),
    ("FROM 14 W ELM COURT; 22 BIRCH LANE\nHX: FALL", "FROM [ADDRESS]; [ADDRESS]\nHX: FALL"),
    ("1200 N MAIN STREET", "[ADDRESS]"),
    ("1200 N MAIN ST WITH HER SON. LIVES NEAR 1234 OAK STREET IN TOWN.", "[ADDRESS] WITH HER SON. LIVES NEAR [ADDRESS] "
                                                                         "IN TOWN."),
    ("Found down at 4 Willow Dr.", "Found down at [ADDRESS]"),
    ("Lives alone, 9 Oak St\nFall.", "Lives alone, [ADDRESS]\nFall."),
    # month/day after "prior" (a year is a date anyway)
    ("Prior 3/5 exam.", "Prior [DATE] exam."),
    ("Comparison: prior 3/5. Compared to the prior 3/5 study.", "Comparison: prior [DATE]. Compared to the prior "
                                                               "[DATE] study."),
    ("COMPARISON: PRIOR 3/5, PREVIOUS 4/12 AND PRIOR TO 11/2.", "COMPARISON: PRIOR [DATE], PREVIOUS [DATE] AND "
                                                                "PRIOR TO [DATE]."),
    ("prior 3/5/2019 and prior study 3/5", "prior [DATE] and prior study [DATE]"),
    # ages over 89 written with a sex letter or word (Safe Harbor (C)); 89 and under stay by design
    ("92F with cough.", "[AGE 90+]F with cough."),
    ("95 M", "[AGE 90+] M"),
    ("91yoF, fall.", "[AGE 90+]yoF, fall."),
    ("History: 92F, fall. INDICATION: 95 M WITH SOB.", "History: [AGE 90+]F, fall. INDICATION: [AGE 90+] M WITH SOB."),
    ("Pt is a 96 M s/p fall; a 93 female; an 101 year old.", "Pt is a [AGE 90+] M s/p fall; a [AGE 90+] female; "
                                                              "an [AGE 90+] year old."),
    ("Clinical history:\n93F SOB", "Clinical history:\n[AGE 90+]F SOB"),
    # 95-110 with F alone reads as a temperature: an age only with more evidence; M is never a temperature
    ("A 97 F female; a 98F woman; a 99 F yo.", "A [AGE 90+] F female; a [AGE 90+]F woman; a [AGE 90+] F yo."),
    ("a 101 M; History: 103 M; a 112F", "a [AGE 90+] M; History: [AGE 90+] M; a [AGE 90+]F"),
    ("a 92F with cough; a 94 F", "a [AGE 90+]F with cough; a [AGE 90+] F"),
    # a bare "prior"/"previous" m/d before punctuation, the end or a study word
    ("Prior 3/5 Exam. PREVIOUS 4/12 CT; prior 3/5 chest radiograph", "Prior [DATE] Exam. PREVIOUS [DATE] CT; prior "
                                                                     "[DATE] chest radiograph"),
    ("Comparison: Prior 3/5\nprior 3/5 and 3/7 studies", "Comparison: Prior [DATE]\nprior [DATE] studies"),
    # names after a cue, in any casing: a surname first too
    ("Patient: John Smith", "Patient: [NAME]"),
    ("Dr. Jane Doe", "Dr. [NAME]"),
    ("seen by Smith, John", "seen by [NAME]"),
    ("Discussed with Roe, Jane A. at 10:45.", "Discussed with [NAME] at [TIME]."),
    ("Patient John Doe presented after a fall.", "Patient [NAME] presented after a fall."),
    ("Patient John Doe Presented After A Fall.", "Patient [NAME] Presented After A Fall."),
    ("PATIENT: DOE, JOHN. SEEN BY Jane Roe.", "PATIENT: [NAME]. SEEN BY [NAME]."),
    ("Mrs. Lopez Appears Comfortable.", "Mrs. [NAME] Appears Comfortable."),
    ("Referring Physician Jane Roe", "Referring Physician [NAME]"),
    ("Seen By John Smith in clinic", "Seen By [NAME] in clinic"),
]

#: Clinical text that must stay as it is, in the case written and upper- and title-cased.
KEPT = [
    # counts of devices and findings ending a line (the street-type words: ST, PLACE, DRIVE, COURT, LANE ...)
    "1 ENDOTRACHEAL TUBE IN PLACE",
    "2 MM ST ELEVATION",
    "3 LEADS",
    "4 VIEWS OF THE CHEST",
    "2 DRAIN",
    "2 SURGICAL CLIPS ST\n1 ET TUBE IN PLACE\n3 CHEST TUBES IN GOOD PLACE,",
    "2 MILLIMETER ST\n1 MILLIMETER ST DEPRESSION; 3 DEGREE AV\n2 ENLARGED HILAR LN.",
    "1 LVAD DRIVE\n1 AIR CRESCENT, 3 WAY\n1 CIRCLE\n4 COURT\nDiscussed With 1 Resident Dr.",
    "HISTORY OF 3 ILLICIT STREET AND PRESCRIPTION DRUGS. 2 DIFFERENT STREET IN TOWN.",
    "12 LEAD ECG ST\n2 FIDUCIAL MARKERS REMAIN IN PLACE; 1 PORT IN PLACE.",
    # time spans, clinical words and fragments before a weak street type ending a line or clause
    "HISTORY: 3 DAYS DECREASED RESPIRATORY DRIVE.\nIndication: 2 Days Poor Respiratory Drive",
    "12 WEEKS GESTATION COURT\n3 RETAINED SHOTGUN PELLETS ST\n1 Lumbar Drive, 2 WEEKS OF DRIVE",
    "1 WAY\n4 PLACE\n2 HOURS HYPOXIC DRIVE; 3 METALLIC FRAGMENTS ST\n5 YEARS REDUCED VENTILATORY DRIVE",
    "4 MONTHS INCREASED SYMPATHETIC DRIVE; 1 CERVICAL PLACE, 2 BULLET FRAGMENTS IN PLACE",
    # "prior" before a spine level, a fraction or a count
    "Prior 4/5 fusion; prior L4/5 fusion; prior 5/6 ACDF; prior 4/5 laminectomy.",
    "Prior 2/3 of the dose; prior 4/5 strength; prior 1/2 views.",
    # ... also plural, micro- and adjective-led procedures, and any -ectomy/-otomy/-plasty/-desis word
    "prior 4/5 and 5/6 discectomies; prior 4/5 foraminotomies; previous 4/5 microdiscectomy.",
    "prior 4/5 posterior fusion; prior 6/7 cervical fusion; prior 2/3 gastrectomy; prior 4/5 laminoplasty.",
    "since 4/5 posterior lumbar interbody fusion; on 6/7 anterior cervical discectomy; prior to 5/6 arthrodesis.",
    "Prior 4/5 anterior cervical fusion with plate; previous 5/6 total disc arthroplasty at outside hospital.",
    # French sizes, temperatures, measurements, units after 90-119
    "14F catheter; a 14F catheter; 8 French sheath; F5 catheter; 12 Fr drain.",
    "Fever to 101F overnight; had a 101F fever; Temp 99F; T 99.5F; Tmax 100 F.",
    # temperatures of 95-110 with F alone after an article, a history header or starting a line
    "Patient spiked a 102F overnight. He had a 101F, tachycardic. Fever to a 103 F.",
    "Vitals:\n101 F, HR 110\nHistory: 100 F since yesterday. Indication: 104F, cough. A 95 F reading.",
    "A 99 F temperature; a 92 mm mass; A 95 MM NODULE; 90 MHz; a 100 mL bolus; a 90 min delay.",
    "Image 93 F; series 95 M.",
    # Title-cased prose after "Patient", "Doctor", "Ordering Physician" (IU/Open-i reports, title-cased)
    "Patient Appears Morbidly Obese.",
    "Lateral Views Obscured By Patient Body Habitus.",
    "Patient Being Recalled From The Xxxx Room For Repeat Views.",
    "Shortness Of Breath. Patient Taking Antibiotic For Possible Pneumonia.",
    "Xxxx Appearance For The Patient But Difficult To Completely Exclude.",
    "Further History From The Ordering Physician States That The Patient Has Chest Pain.",
    "Scoliosis And Patient Rotation Somewhat Limits Evaluation.",
    "Patient Positioning Suboptimal; Patient Motion Degrades Images; Patient Unable To Stand.",
    "Patient Status Post Cabg; Patient With Chest Pain; Patient Denies Trauma; Patient Refused Lateral View.",
    "Doctor Notified; Doctor Aware Of Findings; Seen By Portable Technique; Discussed With Radiology Resident.",
    "Patient: Cooperative, No Distress. Patient Name: Not Given.",
    "History Of Ms. Lungs Are Clear. Mr Arthrogram Recommended. 2 Dr Visits.",
]


@pytest.mark.parametrize(("text", "expected"), CAUGHT, ids=[case[0][:40] for case in CAUGHT])
def test_identifiers_with_evidence_are_replaced(text, expected):
    assert redact_report(text).text == expected


@pytest.mark.parametrize("case", ["as_written", "upper", "title"])
@pytest.mark.parametrize("text", KEPT, ids=[text[:40] for text in KEPT])
def test_clinical_text_stays_in_every_casing(text, case):
    cased = text if case == "as_written" else getattr(text, case)()
    result = redact_report(cased)
    assert result.text == cased and not result.changed


def test_title_cased_reports_keep_their_prose_but_not_their_names():
    """A report written in Title case: capitalised words are no evidence of a name, a cue's are."""
    report = ("Findings: Patient Appears Morbidly Obese. Patient Body Habitus Limits Evaluation. "
              "Ordering Physician States That The Patient Fell. Signed By: John Smith, Md. Dr. Jane Doe Aware.")
    assert redact_report(report).text == (
        "Findings: Patient Appears Morbidly Obese. Patient Body Habitus Limits Evaluation. "
        "Ordering Physician States That The Patient Fell. Signed By: [NAME], Md. Dr. [NAME] Aware.")


#: Left on purpose (documented in labeling/LABEL_STUDIO.md, "Limits"): the evidence is too weak.
MISSED_BY_DESIGN = [
    "History: 97F SOB. A 102F.",  # 95-110 with F alone and nothing else of an age: a temperature
    "Strength prior 4/5 now.",  # a bare "prior" m/d without punctuation, the end or a study word next
]


@pytest.mark.parametrize("text", MISSED_BY_DESIGN)
def test_documented_misses_of_weak_evidence_stay(text):
    assert redact_report(text).text == text


def test_strong_cues_find_names_in_title_cased_prose():
    """Only the weak cues ("Patient", "seen by", "doctor" without a colon) are skipped in Title-cased prose:
    "Referring Physician", "Interpreted By", "Discussed With" still take the capitalised words after them."""
    report = ("Findings: Patient Appears Morbidly Obese. Referring Physician Jane Roe. Interpreted By John Smith. "
              "Discussed With Alan Brown At The Time Of Dictation. Seen By Portable Technique. Doctor Notified.")
    assert redact_report(report).text == report.replace("Jane Roe", "[NAME]").replace(
        "John Smith", "[NAME]").replace("Alan Brown", "[NAME]")
    for cue in ("Referring Physician", "Ordering Doctor", "Reviewed By", "Read By", "Verified By", "Reported By"):
        text = f"Heart Size Normal. Lungs Are Clear. No Acute Disease. {cue} Jane Roe."
        assert redact_report(text).text == text.replace("Jane Roe", "[NAME]"), cue


def test_capitalised_prose_after_a_weak_cue_is_no_name():
    """Title-cased prose (8+ "Xx" words, almost none in lower case): "Patient", "seen by", "doctor" followed by
    capitals are no evidence; a title ("Dr."), a colon cue and a signature still are."""
    prose = ("Patient Aortic Calcifications Are Noted. Doctor Xxxx Aware. Seen By Radiology Resident. Heart Size "
             "Normal. Patient Jane Roe. Dr. Jane Doe Notified. Patient: John Smith")
    assert redact_report(prose).text == prose.replace("Jane Doe", "[NAME]").replace("John Smith", "[NAME]")
    assert redact_report("Patient Jane Roe fell; seen by John Smith.").text == "Patient [NAME] fell; seen by [NAME]."


#: Common US surnames and given names (census lists), and names ending like prose words: none is a prose word.
COMMON_NAMES = """Smith Johnson Williams Brown Jones Garcia Miller Davis Wilson Taylor Moore White Harris Clark Lewis
Walker Young Allen King Wright Scott Hill Green Adams Baker Hall Campbell Carter Roberts Phillips Evans Turner Parker
Edwards Collins Stewart Morris Murphy Cook Rogers Morgan Cooper Bailey Reed Kelly Howard Ward Watson Brooks Wood Gray
Price Long Ross Foster Powell Perry Bell Butler Barnes Fisher Graham Wallace West Cole Hayes Ellis Ford Wells Hunt Stone
Black Rose Fox Mills Rice Lane Ray Berry Little Park Day May Banks Chambers Powers Gross Cross Moss Wise French Short
Small Strong Noble Frank Good Best Church Hope Love Wall Page Case Marsh Rich Hardy Moody Post Prior Head Down More Chin
Lay Fell Still Lung Sharp Swift Early Will Bill Mark Grace Faith Joy Ingram Mohammed Ahmed Khaled Waleed Fleming Manning
Harding Clement Olive Clive Trinity Harkness Connally Kelly Beverly Kimberly Florence Constance Prudence Alfred Jared
Fred Hadley Bentley Emily Sally Holly Shelly Lopez Doe Roe Jane John""".split()


def test_common_names_are_no_prose_words():
    for name in COMMON_NAMES:
        assert redact_report(f"Dr. {name} and Patient: {name}").text == "Dr. [NAME] and Patient: [NAME]", name
        assert redact_report(f"seen by {name} today").text == "seen by [NAME] today", name
