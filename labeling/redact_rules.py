"""The ordered rule dictionaries (:data:`REDACTION_RULES`) that :mod:`radloop.labeling.redact` compiles; their
pattern pieces (:data:`FRAGMENTS`, placeholders, :func:`words`) are in :mod:`radloop.labeling.redact_fragments`,
word lists in :mod:`radloop.labeling.redact_words`.

Split from :mod:`radloop.labeling.redact` (which keeps the engine: compiling, applying, counting).  What the
rules catch and what they leave alone, and why, is said there and in ``labeling/LABEL_STUDIO.md``.
"""

from __future__ import annotations

from radloop.labeling.redact_fragments import CASES, FRAGMENTS, PLACEHOLDERS, words
from radloop.labeling.redact_words import NOT_NAMES, NOT_STREET_NAMES, PROSE_WORDS, RELATIVES

__all__ = ["CASES", "FRAGMENTS", "NOT_NAMES", "NOT_STREET_NAMES", "PLACEHOLDERS", "PROSE_WORDS", "REDACTION_RULES",
           "words"]

_ROLES = ("physician", "doctor", "provider", "clinician")
#: "<cue> Name" in running text ('seen by John Smith'): capitalised names only ('seen by CT' stays).  The weak
#: cues come before capitalised report words in Title-cased prose ("Seen By Portable Technique"): no evidence there.
_STRONG_CUES = (*(f"{who} {role}" for who in ("referring", "ordering", "attending", "requesting") for role in _ROLES),
                *(f"{how} by" for how in "reviewed read interpreted approved verified reported examined referred "
                                         "ordered".split()), "discussed with",
                *(f"{how} to" for how in ("communicated", "relayed", "conveyed")))
_WEAK_CUES = ("seen by", "doctor")
_NARRATIVE_CUES = (*_STRONG_CUES, *_WEAK_CUES)
#: Labels of a contact person's name ("Emergency contact: Jane Doe", "HCP: Jane Doe"), written with a colon.
_CONTACT_CUES = ("emergency contact", "contact person", "next of kin", "NOK", "HCP", "health care proxy",
                 "healthcare proxy", "health care agent", "POA", "power of attorney")
#: Sign-off labels written with a colon instead of "by" ("Signed: Jane Roe MD").
_SIGN_OFF_CUES = ("signed", "e-signed", "electronically signed", "cosigned", "co-signed", "dictated", "transcribed")
#: Credentials written after a clinician's name ("Jane Roe MD", "Roe, Jane, M.D."): a name before them is one.
_CREDENTIALS = ("MD", "M.D.", "D.O.", "PhD", "Ph.D.", "MBBS", "MBChB", "FRCR", "FRCPC", "FACR", "RN")

#: The rules, applied in this order, each over the previous one's output.  Keys:
#:   ``name``; ``kind`` (a :data:`PLACEHOLDERS` key); ``pattern`` (a regex; ``{piece}`` from
#:   :data:`FRAGMENTS`, ``{cues}`` the rule's ``cues``); when it has a ``phi`` group (at the top level,
#:   only look-aheads after it) only that group is replaced;
#:   ``cues`` (phrases, matched at a word start in lower/Capitalised/Title/UPPER case, or as written with
#:   ``cue_case: exact``); ``requires`` (a string every match contains: the rule is skipped without it);
#:   ``case_evidence`` (the rule takes a capital as evidence: skipped on Title-cased prose); ``provenance``;
#:   ``examples`` (text the rule must change).
#: For speed on any input, a pattern starts with a literal or a character class (the regex engine then skips
#: other positions in C), then a look-behind on the character before it (matches start at token starts
#: only); every repeat is bounded and ``(?>...)`` keeps optional separators from backtracking.
REDACTION_RULES: tuple[dict, ...] = (
    {"name": "url", "kind": "url",
     "pattern": r"(?:https?://|HTTPS?://|ftp://|FTP://|www\.|WWW\.)[^\s<>\"'\[\]]{0,2047}[^\s<>\"'\[\].,;:!?)]",
     "provenance": "HIPAA Safe Harbor (R) web URLs", "examples": ["see https://pacs.example.org/study?id=1"]},
    {"name": "email", "kind": "email", "requires": "@",
     "pattern": r"[\w.%+-](?<![\w.%+-].)[\w.%+-]{0,63}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}",
     "provenance": "HIPAA Safe Harbor (F) e-mail addresses", "examples": ["mail jdoe@hospital.org"]},
    {"name": "dicom_person_name", "kind": "name", "requires": "^",
     "pattern": r"[A-Za-z](?<![\w^].)[A-Za-z'-]{0,63}\^[A-Za-z][A-Za-z'-]{0,63}(?:\^[A-Za-z'.-]{0,63}){0,3}",
     "provenance": "DICOM PS3.5 6.2 PN value representation (family^given^middle^prefix^suffix)",
     "examples": ["DOE^JOHN", "DOE^JOHN^Q^^"]},
    {"name": "date_numeric", "kind": "date",
     "pattern": r"\d(?<![\w./-].){not_after_list}(?=\d{0,3}[-/.])(?:(?<=[12])\d(?<=19|20)\d{2}[-/.][01]?\d[-/.][0-3]?\d"
                r"(?:[T ][0-2]?\d:[0-5]\d(?::[0-5]\d)?)?(?![\w/-])"
                r"|\d?/{1,2}\d{1,3}/[ ]?(?:\d{4}|\d{2}|XXXX)(?![\w/])"
                r"|\d?[.-][01]?\d[.-](?:19|20)\d{2}(?![\w.-]?\d)|\d[.-][01]\d[.-]\d{2}(?![\w.-]?\d))",
     "provenance": "ISO 8601 (RIS/HL7 exports); m/d/y and d/m/y with slashes, also Open-i's month/day "
                   "before a masked year (02/010/XXXX, 11//15/XXXX, 11/7/ XXXX); d.m.y and d-m-y (day and "
                   "month of two digits when the year has two; not a rib list: 'ribs 10-11-12')",
     "examples": ["2024-03-05", "2024/03/05T10:30", "01/02/1960", "3/5/24", "25/12/2024", "11/7/ XXXX",
                  "05.03.2024", "5-3-2024", "05-03-24"]},
    {"name": "date_numeric_dotted_short_year", "kind": "date",
     "pattern": r"\d(?<![\w./:+-].)(?=\d?\.)(?:(?<=0)[1-9]|(?<=1)[0-2]|(?<=[1-9]))\.(?:0?[1-9]|[12]\d|3[01])"
                r"\.\d{2}(?![\w.-]?\d|[/-]|[ \t]{0,3}{count_after})"
                r"|\d(?<![\w./:+-].)(?=\d\.)(?:(?<=1)[3-9]|(?<=2)\d|(?<=3)[01])\.(?:0?[1-9]|1[0-2])"
                r"\.\d{2}(?![\w.-]?\d|[/-]|[ \t]{0,3}{count_after})",
     "provenance": "m.d.yy / d.m.yy with dots and one- or two-digit month and day ('4.17.23', '17.4.23'; 'seen "
                   "05.03.24' and '4.17.2023' are date_numeric's); a decimal ('4.5 cm'), a one-digit last number "
                   "('1.2.3'), an invalid month or day ('4.45.12') or a unit or counted noun after ('2.5.10 cm') "
                   "stays",
     "examples": ["seen 4.17.23.", "on 12.5.23", "17.4.23", "DOS 4.7.23"]},
    {"name": "date_numeric_hyphen_short_year", "kind": "date",
     "pattern": r"\d(?<![\w./:+-].){not_after_list}"
                r"(?!(?<=8)-9-10(?!\d)|(?<=9)-10-11(?!\d))"
                r"(?:(?:(?<=[1-9])|(?<=0)[1-9]|(?<=1)[0-2])-(?:0?[1-9]|[12]\d|3[01])"
                r"|(?:(?<=1)[3-9]|(?<=2)\d|(?<=3)[01])-(?:0?[1-9]|1[0-2]))-\d{2}(?![\w.-]?\d|[-/])"
                r"(?![ \t]{0,3}{count_after})",
     "provenance": "m-d-yy / d-m-yy with hyphens and one- or two-digit month and day ('4-17-23', '12-5-23', "
                   "'17-4-23'); not a range or list of levels, ribs or sizes: two numbers ('ribs 4-7', 'C5-6', "
                   "'T4-T7'), a one-digit last number ('4-5-6 cm'), a unit or counted noun after ('3-4-12 mm'), "
                   "a rib, level or fracture word, a side or position before ('ribs 7-9-11', 'fractures 7-9-11', 'left "
                   "posterior 7-9-11'), or three consecutive numbers ('8-9-10')",
     "examples": ["seen 4-17-23.", "on 12-5-23", "17-4-23", "DOS 4-7-23"]},
    {"name": "date_month_day_cued", "kind": "date",
     "cues": ["dated", "date", "date of service", "date of exam", "date of study", "DOS", "as of",
              *(f"comparison{what}" for what in ("", " study", " exam", " examination", " film", " radiograph"))],
     "pattern": r"{cues}[ \t]{0,3}[:=]?[ \t]{0,3}(?P<phi>{month_slash_days})",
     "provenance": "month/day without a year after a date cue ('dated 3/5', 'DOS: 3/5', 'Comparison: 3/5'); a "
                   "bare 3/5 stays (strength 3/5, 2/3 of, L4/5, BI-RADS 4/5, 10/10 pain); a range or list after "
                   "the cue ('3/5-3/7', '3/5, 3/7 and 3/9') is one date",
     "examples": ["dated 03/05", "DOS: 3/5", "Date of service 3/5", "COMPARISON: 3/5", "dated 3/5, 3/7 and 3/9"]},
    {"name": "date_month_day_after_on", "kind": "date",
     "cues": ["on", "since", "compared to", "compared with",
              *(f"{when}{what}" for when in ("prior", "previous") for what in (" to", " study", " exam", " film",
                                                                                 " films", " radiograph"))],
     "pattern": r"{cues}[ \t]{0,3}[:=]?[ \t]{0,3}(?P<phi>{month_slash_days})"
                r"(?![ \t]{0,3}(?i:of|cm|mm|images?|slices?|views?|series|sequences?|levels?|projections?|strength"
                r"|power|motor|pain|scale|reflexes|pulses?|grade|ribs?|lobes?|segments?|discs?|disks?|interspaces?"
                r"|doses?|facets?|foramina?|spaces?)(?!\w)|[ \t]{1,3}{procedure})",
     "provenance": "month/day without a year after 'on', 'since', 'compared to/with', 'prior to', 'prior study' "
                   "('on 3/5', 'since 12/31', 'PRIOR TO 11/2'), not when 'of', a unit, a counted noun or a procedure "
                   "follows ('on 2/3 of the images', 'on 4/5 strength', 'on 1/2 views', 'on 1/2 dose', 'since 4/5 "
                   "posterior fusion'); a study word reads as a date ('on 3/5 study', 'on 3/12 films')",
     "examples": ["on 3/5", "since 12/31,", "on 3/5-3/7", "on 3/5 study", "compared to 3/5", "on 3/5, 3/7",
                  "PRIOR TO 11/2", "prior study 3/5"]},
    {"name": "date_month_day_after_prior", "kind": "date",
     "cues": ["prior", "previous"],
     "pattern": r"{cues}{not_after_score}[ \t]{0,3}(?P<phi>{month_slash_days})(?=[ \t]{0,3}(?:[.,;:)\]\r\n]|$))",
     "provenance": "month/day without a year after a bare 'prior'/'previous' before punctuation or a line end "
                   "('prior 3/5.', 'prior 3/5, stable'); not a score after 'strength', 'power', 'motor', 'grade', "
                   "'score' or 'reflex(es)' ('strength prior 4/5, now 5/5', 'Grip strength, prior 4/5.')",
     "examples": ["prior 3/5", "Comparison: prior 3/5.", "prior 3/5, 3/7", "seen prior 3/5, stable"]},
    {"name": "date_month_day_after_prior_study", "kind": "date",
     "cues": ["prior", "previous"],
     "pattern": r"{cues}[ \t]{0,3}(?P<phi>{month_slash_days})"
                r"(?=[ \t]{1,3}(?i:stud(?:y|ies)|exams?|examinations?|films?|radiographs?"
                r"|x-?rays?|cxr|ct|cta|mri|mr|pet|ultrasound|us|scans?|imaging|reports?|chest|pa|ap|portable)(?!\w)"
                r"|[ \t]{1,3}(?i:and|or)[ \t]{1,3}(?i:prior|previous)(?!\w)"
                r"|[ \t]{1,3}(?i:at|from)[ \t]{1,3}(?:(?i:the|an?)[ \t]{1,3})?(?:(?i:outside|osh|outlying)(?!\w)"
                r"|(?i:another|other)[ \t]{1,3}(?i:hospitals?|facility|facilities|institutions?|clinics?|centers?"
                r"|centres?|sites?|practices?)(?!\w)))",
     "provenance": "month/day without a year after a bare 'prior'/'previous' before a study word, 'and prior' or "
                   "'at/from the outside ...' / 'another hospital' ('prior 3/5 exam', 'Agatston score prior 3/5 "
                   "CT', 'prior 3/5 at the outside hospital'): a level, fraction or procedure after it stays "
                   "('prior 4/5 fusion', 'prior 4/5 and 5/6 discectomies', 'prior 2/3 gastrectomy', 'worse than "
                   "prior 4/5 at other levels')",
     "examples": ["prior 3/5 exam", "PREVIOUS 4/12 CT", "prior 3/5 at the outside hospital", "PREVIOUS 4/12 FROM OSH",
                  "Agatston score prior 3/5 CT", "Motor prior 3/5 exam normal", "prior 3/5 from another hospital",
                  "Grade prior 3/5 and prior films"]},
    {"name": "date_day_month", "kind": "date",
     "pattern": r"\d(?<![\w.].)(?=\d?(?:st|nd|rd|th)?[ \t-]{1,3}(?:of[ \t]{1,3})?[ADFJMNOS])"
                r"\d?{ordinal}[ \t-]{1,3}(?:of[ \t]{1,3})?(?:{month_any}\.?,?[ \t-]{1,3}{year}|{month_full}(?!\w))",
     "provenance": "written dates, day first (without a year: full month names but May)",
     "examples": ["5 March 2024", "5th of March, 2024", "05-Mar-2024", "on 5 March", "12th of June"]},
    {"name": "date_day_month_compact", "kind": "date",
     "pattern": r"\d(?<![\w.,/:+-].)(?:\d?(?P<sep>[-/.]?){month_any_case}(?P=sep)(?:{year}|\d{2}(?![\w.-]?\d))"
                r"|(?<=[12])\d(?<=19|20)\d{2}(?P<sep2>[-/.]?){month_any_case}(?P=sep2)[0-3]?\d(?![\w.-]?\d))"
                r"(?![A-Za-z])",
     "provenance": "military/RIS dates with a month name and no blanks, day first or year first ('17APR2023', "
                   "'17-Apr-23', '17/apr/2023', '2023APR17'), in any case: digits on both sides make the month a "
                   "month",
     "examples": ["17APR2023", "17APR23", "17-Apr-23", "17/apr/2023", "17.Apr.2023", "2023APR17", "2023-Apr-17",
                  "5may2021"]},
    {"name": "time", "kind": "time",
     "pattern": r"\d(?<![\w:.].)(?=\d{0,3}[ \t]?[:AaPpHh])"
                r"(?::[0-5]\d(?::[0-5]\d)?[ \t]?[AaPp]\.?[Mm]\b\.?|\d:[0-5]\d(?::[0-5]\d)?[ \t]?[AaPp]\.?[Mm]\b\.?"
                r"|(?<=[01])\d:[0-5]\d(?::[0-5]\d)?(?![\w:])|(?<=2)[0-3]:[0-5]\d(?::[0-5]\d)?(?![\w:])"
                r"|:(?<=\bat \d:)[0-5]\d(?![\w:])|\d:(?<=\bat \d\d:)[0-5]\d(?![\w:])"
                r"|[ \t]?(?:[AaPp]\.[Mm]\.|[AaPp][Mm]\b)|\d{1,3}[ \t]?(?:[AaPp]\.[Mm]\.|[AaPp][Mm]\b)"
                r"|(?<=[01])\d[0-5]\d[ \t]?(?:hours|hrs|h)\b|(?<=2)[0-3][0-5]\d[ \t]?(?:hours|hrs|h)\b)",
     "provenance": "clock times: a one-digit hour only with am/pm or after 'at' (1:10 is a ratio); "
                   "times without a colon before am/pm (Open-i: 'at 142 pm'); military times",
     "examples": ["10:45", "2:30 p.m.", "at 9:05", "at 142 pm", "5 AM", "at 1430 hours", "0800h"]},
    {"name": "phone", "kind": "phone",
     "pattern": r"[\d(+](?<![\w+.-].)(?:(?<=\()\d{3}\)[ ]?\d{3}[-.]\d{4}|(?<=\d)\d{2}[-. ]\d{3}[-.]\d{4}"
                r"|(?<=1)[-. ]?(?:\(\d{3}\)[ ]?|\d{3}[-. ])\d{3}[-.]\d{4}"
                r"|(?<=\+)\d{1,3}[ .-]?\(?\d{1,4}\)?[ .-]?\d{2,4}[ .-]?\d{2,4}(?:[ .-]?\d{2,4})?)(?![\w-])",
     "provenance": "North American and international phone numbers",
     "examples": ["(317) 555-0123", "317-555-0123", "+44 20 7946 0958"]},
    {"name": "age_cued", "kind": "age",
     "cues": ["age", "aged", "age of"],
     "pattern": r"{cues}[ \t]{0,3}[:=]?[ \t]{0,3}(?P<phi>{age_ninety_plus})"
                r"(?![ \t-]{0,3}(?i:months?|mos?|weeks?|wks?|days?|hours?|hrs?|minutes?|min|[mwdh])(?!\w))",
     "provenance": "HIPAA Safe Harbor (C) ages over 89 after 'age'/'aged' (bone age in months stays); "
                   "ages up to 89 stay",
     "examples": ["age 93", "Age: 90", "aged 101", "at the age of 95"]},
    {"name": "age_unit", "kind": "age",
     "pattern": r"[19](?<![\w.,/:+-].)(?:(?<=9)\d|(?<=1)[01]\d)(?![.,]?\d)"
                r"(?=[ \t-]{0,2}(?:(?i:years?|yrs?)\.?(?!\w|[ \t-]{1,3}(?i:ago|prior|earlier|before|after|later"
                r"|previously)(?!\w))|(?i:y/?o[fm]?|y\.o\.?)(?!\w)|y\.?(?![\w/-]|[ \t]{0,3}\d)))",
     "provenance": "HIPAA Safe Harbor (C) ages over 89 before 'year(s) (old)', 'yrs', 'yo', 'y/o', 'y.o(.)', "
                   "'yof'/'yom', a lower-case 'y' ('95 years ago', '90Y' yttrium and '101F' stay); ages up to 89 "
                   "stay",
     "examples": ["92-year-old", "a 90 year old", "93 yo", "94 y/o", "aged 101 years", "99 y.o.", "91 yrs",
                  "92 y.o female", "92yo", "95yoF", "96 y, female"]},
    {"name": "age_sex", "kind": "age",
     "cues": ["a", "an", "pt", "patient", "history", "clinical history", "hx", "hpi", "indication", "indications",
              "clinical indication", "reason", "reason for exam", "reason for study", "clinical information", "info"],
     "pattern": r"{cues}\.?[ \t]{0,3}:?[ \t\r\n]{1,3}(?P<phi>{age_ninety_plus}){sex_follows}",
     "provenance": "HIPAA Safe Harbor (C) ages over 89 with a sex letter or word after an article or a history "
                   "header ('a 92F', 'History: 95 M'); 95-110 with F alone is a temperature ('spiked a 102F', "
                   "'History: 100 F since yesterday'; 'a 97 F female' is an age); 'Temp 99F', '14F catheter' stay",
     "examples": ["a 92F", "History: 95 M", "INDICATION:\n93F SOB", "a 93 female", "Pt 96 M", "a 101 M",
                  "a 97 F female", "a 112F"]},
    {"name": "age_sex_line", "kind": "age",
     "pattern": r"[19](?<![^\n].)(?:(?<=9)\d|(?<=1)[01]\d)(?![.,]?\d|\+){sex_follows}",
     "provenance": "HIPAA Safe Harbor (C) ages over 89 with a sex letter or word starting a line ('92F with "
                   "cough'; '101 F, HR 110' is a temperature, as in age_sex)",
     "examples": ["92F with cough", "x\n95 M", "98 F female"]},
    {"name": "labelled_id", "kind": "id",
     "cues": ["MRN", "MR#", "MR no", "MR number", "medical record", "medical record no", "medical record number",
              "accession", "acc", "patient id", "pt id", "pt. id", "unit no", "unit number", "encounter",
              "visit no", "visit number", "visit id", "CSN", "FIN", "account", "acct", "SSN", "social security",
              "social security number", "NHS", "NHS no", "NHS number", "ID"],
     "pattern": r"{cues}(?>\.?[ \t]{0,3}(?i:no\.?|number|num\.?|#)?[ \t]{0,3}[:#=]?[ \t]{0,3})"
                r"(?P<phi>(?:[A-Za-z]{1,4}-?)?\d{3,}[\dA-Za-z-]{0,24})(?!\w)",
     "provenance": "record, accession and patient numbers after their label (Safe Harbor (H)-(J))",
     "examples": ["MRN 12345", "MRN: 12345", "Accession #998877", "ID 1234567", "acc no. A-12345"]},
    {"name": "digit_run", "kind": "id",
     "pattern": r"\d(?<![\d.,].)\d{5,}(?![.,]?\d)"
                r"(?![ \t]?(?:mm|cm|m|km|ml|mL|cc|l|L|mg|g|kg|lbs?|%|°|degrees?|deg|HU|mSv|mGy|Gy|kV|kVp|mAs|cells"
                r"|units)\b)",
     "provenance": "unlabelled numbers of six or more digits (record numbers); measurements keep theirs",
     "examples": ["ref 12345678", "1234567"]},
    {"name": "date_month_day", "kind": "date",
     "pattern": r"{month_any}(?:\.?[ \t]{1,3}[0-3]?\d{ordinal}(?>[ \t]{0,3},[ \t]{0,3}|[ \t]{1,3}){year}"
                r"|\.?,?[ \t]{1,3}{year}"
                r"|(?:(?<=[A-Za-z]{4})|\.)[ \t]{1,3}[0-3]?\d{ordinal}(?![\w.,]?\d))",
     "provenance": "written dates, month first (without a year: full month names but May, or an "
                   "abbreviation with its dot); a month and year alone too (the month is an identifier)",
     "examples": ["March 5, 2024", "Mar. 5 2024", "March 2024", "on March 5", "Sept. 12th",
                  "APRIL 17TH, 2023", "April 17th,2023", "April 17 , 2023"]},
    {"name": "phone_labelled", "kind": "phone",
     "cues": ["phone", "tel", "telephone", "pager", "beeper", "fax", "ext", "extension", "callback", "call back"],
     "pattern": r"{cues}(?>\.?[ \t]{0,3}(?i:no\.?|number|#)?[ \t]{0,3}[:#]?[ \t]{0,3})"
                r"(?P<phi>\+?\(?\d[\d().-]{2,9}\d(?:[ ]\(?\d[\d().-]{0,9}\d){0,3})(?!\w)",
     "provenance": "phone, pager and extension numbers after their label", "examples": ["pager 4521", "ext. 1234"]},
    {"name": "patient_name_label", "kind": "name",
     "cues": ["patient name", "patient's name", "pt name", "pt. name", "name of patient", "patient full name"],
     "pattern": r"{cues}[ \t]{0,3}[:=-]?[ \t]{0,3}(?P<phi>{label_names})",
     "provenance": "demographic header lines: the label's value is a name, also with an initial without its dot, a "
                   "comma without a blank, a suffix, or a surname that is also a word where the field ends ('PT NAME: "
                   "SMITH,JOHN A', 'PT NAME: J SMITH JR', 'PT NAME: JOHN BACK')",
     "examples": ["Patient name: John Doe", "PATIENT NAME: DOE, JOHN", "PT NAME: JOHN SMITH", "PT NAME: J SMITH",
                  "PT NAME: SMITH,JOHN", "PT NAME: SMITH, JOHN A", "PT NAME: JOHN SMITH JR", "PT NAME: JOHN BACK",
                  "PT NAME: BACK, JOHN"]},
    {"name": "signature", "kind": "name",
     "cues": [*(f"{how} by" for how in ("signed", "electronically signed", "dictated", "transcribed",
                                        "dictated and signed", "electronically signed and dictated"))],
     "pattern": r"{cues}[ \t]{0,3}[:=-]?[ \t]{0,3}(?:{title_word})?(?P<phi>{upper_names})",
     "provenance": "signature lines",
     "examples": ["dictated by Alan Smith", "ELECTRONICALLY SIGNED BY: JOHN SMITH, MD"]},
    {"name": "role_label", "kind": "name",
     "cues": [*(f"{who} {role}" for who in ("referring", "ordering", "attending", "requesting", "consulting",
                                            "primary care") for role in (*_ROLES, "radiologist", "md")),
              "attending", "radiologist", "resident", "fellow", "technologist", "physician", "provider",
              "clinician", "consultant", "cc"],
     "pattern": r"{cues}[ \t]{0,3}:[ \t]{0,3}(?:{title_word})?(?P<phi>{upper_names})",
     "provenance": "signature blocks ('Referring physician: X', 'Attending: X')",
     "examples": ["Referring physician: Jane Roe", "Attending: SMITH, JOHN", "attending: Alan Smith"]},
    {"name": "cue_label", "kind": "name",
     "cues": [*_NARRATIVE_CUES, "patient", "pt", "name", *_SIGN_OFF_CUES],
     "pattern": r"{cues}[ \t]{0,3}[:=][ \t]{0,3}(?:{title_word})?(?P<phi>{upper_names})",
     "provenance": "header and sign-off lines with a colon ('Interpreted by: X', 'Patient: DOE, JOHN'): the colon "
                   "makes the cue strong enough for UPPER-CASE names",
     "examples": ["Interpreted by: John Smith, MD", "Verified by: ROE, JANE", "Patient: John Doe",
                  "PATIENT: DOE, JOHN", "Name: John Doe", "Pt: John Doe", "Seen by: John Smith",
                  "Signed: Jane Roe MD", "ELECTRONICALLY SIGNED: ROE, JANE", "Dictated: Jane Roe"]},
    {"name": "contact_label", "kind": "name",
     "cues": list(_CONTACT_CUES),
     "pattern": r"{cues}[ \t]{0,3}[:=][ \t]{0,3}(?:{relative},?[ \t]{1,3}(?=[A-Z]))?(?!{relative})"
                r"(?P<phi>{upper_names})",
     "provenance": "contact labels ('Emergency contact: X', 'HCP: X', 'Next of kin: X'; walk 21c), UPPER-CASE names "
                   "too; a relation word is no name (walk 22a: 'HCP: Daughter' stays, 'HCP: Daughter Jane Doe' keeps "
                   "'Daughter')",
     "examples": ["Emergency contact: Jane Doe", "HCP: Jane Doe", "NEXT OF KIN: JANE DOE", "HCP: Daughter Jane Doe",
                  "Next of kin: wife, Jane Doe"]},
    {"name": "cue_phrase", "kind": "name",
     "cues": list(_STRONG_CUES),
     "pattern": r"{cues}[ \t]{1,3}(?P<phi>{names})",
     "provenance": "narrative cues, capitalised words only ('discussed with the', 'read by CT' stay), surname first "
                   "too ('read by Smith, John'), in any text ('Referring Physician Jane Roe' in Title-cased prose); "
                   "'communicated/relayed/conveyed to' (walk 21c: results communication)",
     "examples": ["referring physician Jane Roe", "interpreted by Jo Roe", "discussed with Jo", "Read By Roe, Jo",
                  "communicated to Jane Roe by telephone"]},
    {"name": "cue_phrase_weak", "kind": "name", "case_evidence": True,
     "cues": list(_WEAK_CUES),
     "pattern": r"{cues}[ \t]{1,3}(?P<phi>{names})",
     "provenance": "'seen by X', 'doctor X' (capitalised words only: 'seen by CT' stays); not in Title-cased prose, "
                   "where capitals after them are no evidence ('Seen By Portable Technique')",
     "examples": ["seen by John Smith", "doctor Smith", "seen by Smith, John"]},
    {"name": "title", "kind": "name", "cue_case": "exact",
     "cues": ["Dr", "Mr", "Mrs", "Ms", "Mx", "Prof", "Miss", "DR.", "MRS."],
     "pattern": r"{cues}\.?[ \t]{1,3}(?P<phi>(?:{upper_names}))",
     "provenance": "names after a title (UPPER-CASE titles only as DR. and MRS.: DR, MR, MS are abbreviations)",
     "examples": ["Dr. Smith", "Dr Alan Smith", "Mrs. O'Brien", "DR. JONES"]},
    {"name": "name_before_credential", "kind": "name", "cues": list(_CREDENTIALS), "cue_case": "exact",
     "pattern": r"(?P<phi>(?=[A-Z])(?<![\w'’.-]){names})(?=,?[ \t]{1,3}{cues}(?![\w'’]))",
     "provenance": "sign-off lines without a cue word: capitalised names before a credential ('Hortensia Blotch MD "
                   "2023-04-17', 'Roe, Jane, M.D.'); report words before one stay ('Findings MD')",
     "examples": ["Jane Roe MD", "Roe, Jane, M.D.", "Jo Roe PhD", "Signed Jane Roe, MD"]},
    {"name": "patient_name", "kind": "name", "cue_case": "exact", "case_evidence": True,
     "cues": ["patient", "Patient", "PATIENT", "pt", "Pt"],
     "pattern": r"{cues}(?:(?<=t)(?<![Nn]t)\.)?[ \t]{1,3}(?P<phi>(?:{name}(?:[ \t]{1,3}{next_name})?){2,3}(?<![ \t]))",
     "provenance": "'Patient John Doe', 'Pt Zebulon Quixote', 'Pt. Jo Roe' (two capitalised words at least, no prose "
                   "word: 'Patient History', 'Patient Appears Morbidly Obese', 'Pt Was Rotated' stay; not in "
                   "Title-cased prose; 'PT' is physical therapy / prothrombin time: not a cue)",
     "examples": ["Patient John Doe", "Pt Zebulon Quixote", "pt. Jo Roe", "PATIENT Jo Roe", "Pt Maria van der Berg"]},
    {"name": "patient_surname", "kind": "name", "cue_case": "exact", "case_evidence": True,
     "cues": ["patient", "Patient", "pt", "Pt"],
     "pattern": r"{cues}(?:(?<=t)(?<![Nn]t)\.)?[ \t]{1,3}(?P<phi>{name})(?=[ \t]{1,3}{patient_verbs}(?![\w'’-]))",
     "provenance": "'Patient Smith presents ...': one capitalised word after 'Patient'/'Pt' only before a verb of "
                   "report narrative in lower case (is, was, presents, fell, denies ...); no prose word ('Patient "
                   "Positioning was', 'Patient Motion is', 'Patient Transport was' stay); not in Title-cased prose",
     "examples": ["Patient Smith presents with cough", "pt. Roe fell", "Pt Quixote was seen"]},
    {"name": "relative_name", "kind": "name", "case_evidence": True,
     "cues": list(RELATIVES),
     "pattern": r"{cues}(?![\w'’-]),?[ \t]{1,3}(?P<phi>{names})",
     "provenance": "HIPAA Safe Harbor (A) names of relatives after the relation ('the patient's mother, Maria "
                   "Quixote', 'his wife Jane Doe', 'son, John Smith'): capitalised words only, no prose word "
                   "('mother's history of', 'mother Deceased', 'son, Unknown' stay); not in Title-cased prose",
     "examples": ["the patient's mother, Maria Quixote", "his wife Jane Doe", "son, John Smith", "daughter Mary"]},
    {"name": "relative_name_list", "kind": "name", "case_evidence": True,
     "cues": list(RELATIVES),
     "pattern": r"{cues}(?![\w'’-])[ \t]{0,3}:[ \t]{0,3}(?P<phi>{relative_list_names})",
     "provenance": "HIPAA Safe Harbor (A) relatives listed with a colon ('Mother: Jane Doe'): two or three capitalised "
                   "words or UPPER-CASE words of three letters at least ('MOTHER: JANE DOE'; the first may have two with"
                   " a vowel: 'MOTHER: JO ROE'), or one capitalised word, or UPPER-CASE word with a vowel, ending the "
                   "field ('Mother: Jane', 'Mother: Jane;', 'MOTHER: JANE'), none a family-history word ('Mother: breast"
                   " cancer', 'Mother: Breast Cancer', 'Father: Mi Htn', 'Mother: Deceased', 'Sister: Sickle Cell', "
                   "'MOTHER: BREAST CA', 'Mother: Stroke.', 'MOTHER: HTN', 'Mother: Tay-Sachs', 'Mother: von Willebrand'"
                   " stay); surname particles in either case ('MOTHER: MARIA DE LA CRUZ'); not in Title-cased prose",
     "examples": ["Mother: Jane Doe", "Mother: Jane Doe; Father: breast cancer", "wife: Maria de la Cruz",
                  "MOTHER: JANE DOE", "Mother: Jane", "Mother: Jane; Father: stroke", "MOTHER: JANE", "MOTHER: JO ROE",
                  "MOTHER: MARIA DE LA CRUZ"]},
    {"name": "street_address_cued", "kind": "address",
     "cues": ["address", "home address", "mailing address", "lives at", "living at", "resides at", "residing at"],
     "pattern": r"{cues}[ \t]{0,3}[:=-]?[ \t]{0,3}"
                r"(?P<phi>{house_number}(?:{street_direction})?{street_words_any}{street_type_any}{street_tail})",
     "provenance": "HIPAA Safe Harbor (B) street addresses after an address cue: any street type, Title or UPPER "
                   "case ('Address: 9 OAK ST', 'lives at 4 Willow Dr'); after the name rules, so 'Dr' before a "
                   "name is a title first",
     "examples": ["Address: 9 OAK ST", "lives at 4 Willow Dr.", "ADDRESS: 55 N. MAIN ST, APT 2"]},
    {"name": "street_address", "kind": "address",
     "pattern": r"{house_number}(?:(?P<direction>{street_direction}))?"
                r"(?:{street_words_title}(?:{street_type_strong_title}"
                r"|{street_type_weak_title}(?(direction)|(?={street_evidence_title}))"
                r"|{street_type_weak_end_title}(?={street_evidence_end}))"
                r"|{street_words_upper}(?:{street_type_strong_upper}"
                r"|{street_type_weak_upper}(?(direction)|(?={street_evidence_upper}))"
                r"|{street_type_weak_end_upper}(?={street_evidence_end})))"
                r"{street_end}{street_tail}",
     "provenance": "HIPAA Safe Harbor (B) street addresses: house number, 1-3 street-name words (never a "
                   "report word such as IN, MM, TUBES, LEADS), street type, then an apartment/suite and 'City, ST "
                   "12345' when they follow.  A weak street type (St, Place, Court, Crescent, Dr ...) needs more: a "
                   "direction (N., NW), an apartment, 'City, ST' (UPPER case: 'City, ST 12345'), or the end of a "
                   "line or clause after it ('9 OAK ST', '4 Willow Dr,'; '1 ET TUBE IN PLACE', '2 MM ST ELEVATION', "
                   "'1 Air Crescent' are no address).  No capitalised word after the type but a preposition ('3 "
                   "Different Street Drugs').  After the name rules",
     "examples": ["1234 Oak Street", "55 N. Main St.", "12 Elm Ave, Apt 4", "1600 Pennsylvania Ave NW",
                  "77 West 5th Avenue", "1234 OAK STREET", "12 Elm St, Springfield, IL 62704", "350 Fifth Ave #12",
                  "9 OAK ST", "1200 N MAIN ST WITH", "4 Willow Dr, then", "1234 OAK STREET WITH HER SON",
                  "9 OAK ST, SPRINGFIELD, IL 62704", "4 Willow Place, Springfield, IL", "8 Elm Court Apt 2"]},
)
