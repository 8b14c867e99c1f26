"""Score report labels against Open-i's manual MeSH coding and the NegBio 14-finding table.

Gold standards:

* **MeSH majors** (Open-i ``<major>``; coders' terms ``Head/qualifier/...``): ``Fractures, Bone`` with a
  site (``ribs``, ``clavicle``, ``thoracic vertebrae`` ...) and ``healed``/``chronic``; ``Foreign Bodies``;
  devices (:data:`DEVICE_HEADS`); ``Dislocations``; ``normal``; and the 14 chest findings by their MeSH
  heads (:data:`CHEST_HEADS`, the mapping that reproduces the NegBio table exactly on the dev set).
* **NegBio table** (``openi_gld_std14.csv``): the 14 chest findings.  Its ``Hernia`` column has no
  positive row at all (hiatal hernias were never mapped), so ``micro_f1`` scores hernia against MeSH
  ``Hernia, Hiatal``/``Hernia, Diaphragmatic``; ``micro_f1_negbio_literal`` uses the column as is.

Reports that Open-i left uncoded (MeSH ``No Indexing``) have no MeSH gold: they are left out of every
MeSH-scored finding (fracture, device, foreign body, normal, dislocation, hernia; all findings without a
NegBio table) and counted in ``mesh_uncoded_excluded``, instead of being scored as "not normal".
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from radloop.core.records import FindingMention
from radloop.core.vocabulary import CHEST_FINDINGS

from .checks import require_many
from .mention_json import as_mention_json

#: MeSH head -> chest finding.
CHEST_HEADS = {
    "pulmonary atelectasis": "atelectasis", "cardiomegaly": "cardiomegaly", "pleural effusion": "effusion",
    "infiltrate": "infiltration", "mass": "mass", "nodule": "nodule", "pneumonia": "pneumonia",
    "pneumothorax": "pneumothorax", "consolidation": "consolidation", "pulmonary edema": "edema",
    "emphysema": "emphysema", "pulmonary emphysema": "emphysema", "pulmonary fibrosis": "fibrosis",
    "thickening": "pleural_thickening", "hernia, hiatal": "hernia", "hernia, diaphragmatic": "hernia",
}
DEVICE_HEADS = frozenset({"catheters, indwelling", "implanted medical device", "surgical instruments",
                          "tube, inserted", "medical device", "stents", "sutures"})
OTHER_HEADS = {"fractures, bone": "fracture", "foreign bodies": "foreign_body", "dislocations": "dislocation",
               "normal": "normal"}
#: MeSH site qualifiers -> core/vocabulary SITES.
SITE_QUALIFIERS = {
    "ribs": "rib", "rib": "rib", "clavicle": "clavicle", "sternum": "sternum", "scapula": "scapula",
    "humerus": "humerus", "shoulder": "shoulder", "thoracic vertebrae": "thoracic_spine",
    "lumbar vertebrae": "lumbar_spine", "cervical vertebrae": "cervical_spine", "spine": "thoracic_spine",
    "radius": "radius", "ulna": "ulna", "wrist": "wrist", "hand": "hand", "elbow": "elbow", "hip": "hip",
    "pelvis": "pelvis", "femur": "femur", "knee": "knee", "tibia": "tibia", "fibula": "fibula",
    "ankle": "ankle", "foot": "foot", "skull": "skull",
}
OLD_QUALIFIERS = frozenset({"healed", "chronic", "old"})
#: MeSH codings that mean "not coded": such a report has no MeSH gold.
UNCODED_TERMS = frozenset({"no indexing"})
NEGBIO_COLUMNS = {"Atelectasis": "atelectasis", "Cardiomegaly": "cardiomegaly", "Effusion": "effusion",
                  "Infiltration": "infiltration", "Mass": "mass", "Nodule": "nodule", "Pneumonia": "pneumonia",
                  "Pneumothorax": "pneumothorax", "Consolidation": "consolidation", "Edema": "edema",
                  "Emphysema": "emphysema", "Fibrosis": "fibrosis", "Pleural_Thickening": "pleural_thickening",
                  "Hernia": "hernia", "normal": "normal"}
SCORED_FINDINGS = CHEST_FINDINGS + ("fracture", "device", "foreign_body", "normal", "dislocation")


@dataclass
class GoldReport:
    """Expert labels of one report: positive findings, and fracture site / old qualifiers."""

    positives: set[str] = field(default_factory=set)
    fracture_sites: set[str] = field(default_factory=set)
    fracture_old: bool = False


def mesh_gold(majors: Iterable[str]) -> GoldReport:
    """Map Open-i MeSH major terms to the vocabulary (``Fractures, Bone/ribs/left/healed`` -> fracture, rib, old).

    Raises:
        TypeError: ``majors`` is one ``str`` (pass a list of terms).
    """
    require_many(majors, "majors", "MeSH terms", hint="wrap one term in a list")
    gold = GoldReport()
    for term in majors:
        parts = [part.strip().lower() for part in term.split("/")]
        head, qualifiers = parts[0], parts[1:]
        finding = CHEST_HEADS.get(head) or OTHER_HEADS.get(head) or ("device" if head in DEVICE_HEADS else None)
        if finding is None:
            continue
        gold.positives.add(finding)
        if finding == "fracture":
            gold.fracture_sites.update(SITE_QUALIFIERS[q] for q in qualifiers if q in SITE_QUALIFIERS)
            gold.fracture_old |= bool(OLD_QUALIFIERS.intersection(qualifiers))
    return gold


def mesh_uncoded(majors: Iterable[str]) -> bool:
    """Whether the report was left uncoded (``No Indexing``): it then has no MeSH gold at all.

    Raises:
        TypeError: ``majors`` is one ``str`` (pass a list of terms).
    """
    require_many(majors, "majors", "MeSH terms", hint="wrap one term in a list")
    return any(term.strip().lower() in UNCODED_TERMS for term in majors)


def read_negbio_table(path: str | Path) -> dict[str, set[str]]:
    """``report_id -> positive findings`` from the NegBio Open-i gold CSV (``filename`` = ``CXR<n>``)."""
    table: dict[str, set[str]] = {}
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            table[row["filename"]] = {name for column, name in NEGBIO_COLUMNS.items() if row.get(column) == "1"}
    return table


def predicted_positives(findings: Iterable[FindingMention | Mapping]) -> set[str]:
    """Findings with at least one ``positive`` entry (the report-level rule of :func:`~.aggregate.report_level`).

    Args:
        findings: One report's mentions: ``FindingMention`` records (a ``LabelResult``) or dicts in the
            ``to_json`` layout.
    """
    require_many(findings, "findings", "FindingMention records or their to_json dicts")
    entries = [as_mention_json(entry) for entry in findings]
    return {entry["finding"] for entry in entries if entry.get("status") == "positive"}


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "tp": tp, "fp": fp, "fn": fn, "support": tp + fn}


def score_reports(labels: Mapping[str, Iterable[FindingMention | Mapping]], majors: Mapping[str, Iterable[str]],
                  negbio: Mapping[str, set[str]] | None = None, texts: Mapping[str, str] | None = None) -> dict:
    """Per-finding P/R/F1, chest micro-F1, fracture site and old/healed agreement, disagreement rows.

    Args:
        labels: ``report_id -> findings``: JSON entries as written by ``label-reports`` (or yielded by
            ``stored_mentions``), or ``FindingMention`` records / ``LabelResult`` lists.
        majors: ``report_id -> Open-i MeSH major terms`` (the reports scored; each a list, not a str).
        negbio: Optional NegBio table; chest findings are then scored on the reports it lists.
        texts: Optional report texts for the disagreement rows.
    """
    counts = {finding: [0, 0, 0] for finding in SCORED_FINDINGS}
    literal = [0, 0, 0]
    site_hits = site_total = old_hits = old_total = uncoded = 0
    disagreements: list[dict] = []
    for report_id, terms in majors.items():
        gold = mesh_gold(terms)
        no_mesh_gold = mesh_uncoded(terms)
        uncoded += no_mesh_gold
        findings = [as_mention_json(entry) for entry in labels.get(report_id, [])]
        predicted = predicted_positives(findings)
        for finding in SCORED_FINDINGS:
            if finding in CHEST_FINDINGS and negbio is not None:
                if report_id not in negbio:
                    continue
                expected = finding in (gold.positives if finding == "hernia" else negbio[report_id])
                literal_expected = finding in negbio[report_id]
                got = finding in predicted
                literal[0] += got and literal_expected
                literal[1] += got and not literal_expected
                literal[2] += literal_expected and not got
            else:
                expected = finding in gold.positives
            if no_mesh_gold and (finding not in CHEST_FINDINGS or negbio is None or finding == "hernia"):
                continue  # MeSH-scored finding of an uncoded report: no gold
            got = finding in predicted
            if got and expected:
                counts[finding][0] += 1
            elif got:
                counts[finding][1] += 1
            elif expected:
                counts[finding][2] += 1
            if got != expected:
                evidence = "; ".join(f"{e.get('status')}:{e.get('evidence')}" for e in findings
                                     if e.get("finding") == finding)
                disagreements.append({"report_id": report_id, "finding": finding,
                                      "error": "false_positive" if got else "false_negative",
                                      "gold": "|".join(terms), "evidence": evidence,
                                      "text": (texts or {}).get(report_id, "")})
        if "fracture" in gold.positives and "fracture" in predicted:
            fractures = [e for e in findings if e.get("finding") == "fracture" and e.get("status") == "positive"]
            if gold.fracture_sites:
                site_total += 1
                site_hits += bool(gold.fracture_sites & {e.get("site") for e in fractures})
            old_total += 1
            old_hits += gold.fracture_old == any(e.get("temporality") == "old" for e in fractures)
    per_finding = {finding: _prf(*values) for finding, values in counts.items()}
    chest = [sum(counts[f][i] for f in CHEST_FINDINGS) for i in range(3)]
    return {
        "reports": len(majors),
        "mesh_uncoded_excluded": uncoded,
        "micro_f1": _prf(*chest)["f1"],
        "micro_f1_negbio_literal": _prf(*literal)["f1"] if negbio is not None else None,
        "per_finding": per_finding,
        "fracture_site_agreement": round(site_hits / site_total, 4) if site_total else None,
        "fracture_site_n": site_total,
        "fracture_old_agreement": round(old_hits / old_total, 4) if old_total else None,
        "fracture_old_n": old_total,
        "disagreements": disagreements,
    }


def write_disagreements(rows: list[dict], path: str | Path) -> None:
    """Write disagreement rows as TSV (report_id, finding, error, gold, evidence, text) for rule work."""
    columns = ["report_id", "finding", "error", "gold", "evidence", "text"]
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([str(row.get(column, "")).replace("\t", " ").replace("\n", " | ") for column in columns])
