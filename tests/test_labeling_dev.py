"""Quality on the Open-i development reports (MeSH <major> coding + NegBio table).

Thresholds sit a little below the scores measured when the rules were written, so a rule change that
costs quality fails here.  The held-out Open-i reports are never used for rule work.
"""

from __future__ import annotations

import pytest

from conftest import data_path
from radloop.labeling import ReportLabeler
from radloop.labeling.evaluate import mesh_gold, mesh_uncoded, read_negbio_table, score_reports
from radloop.labeling.sources import iter_reports

#: measured 2026-11-26 on NLMCXR_reports_dev.tgz (2,966 reports): see the report of issue 3; raised
#: 2026-11-27 after the dev-report audit fixes (measured: micro-F1 0.947, fracture 0.938, device 0.919,
#: foreign body 0.927, normal 0.960 with the 69 uncoded 'No Indexing' reports out of the MeSH scores).
MINIMUM = {"micro_f1": 0.93, "fracture": 0.91, "device": 0.89, "foreign_body": 0.85, "normal": 0.94,
           "fracture_site_agreement": 0.95, "fracture_old_agreement": 0.85}


@pytest.fixture(scope="module")
def dev_scores():
    reports = list(iter_reports(data_path("iu_xray_reports", "NLMCXR_reports_dev.tgz")))
    table = read_negbio_table(data_path("negbio_openi_gold", "examples", "openi_gld_std14.csv"))
    labeler = ReportLabeler()
    labels = {report.report_id: [m.to_json() for m in result]
              for report, result in zip(reports, labeler.label_many(r.text for r in reports))}
    return score_reports(labels, {r.report_id: r.expert_codes for r in reports}, table)


def test_dev_reports_meet_the_measured_quality(dev_scores):
    assert dev_scores["reports"] == 2966
    assert dev_scores["mesh_uncoded_excluded"] == 69
    assert dev_scores["micro_f1"] >= MINIMUM["micro_f1"]
    for finding in ("fracture", "device", "foreign_body", "normal"):
        assert dev_scores["per_finding"][finding]["f1"] >= MINIMUM[finding], (finding, dev_scores["per_finding"][finding])
    assert dev_scores["fracture_site_agreement"] >= MINIMUM["fracture_site_agreement"]
    assert dev_scores["fracture_old_agreement"] >= MINIMUM["fracture_old_agreement"]
    assert dev_scores["micro_f1_negbio_literal"] >= 0.90


def test_every_chest_finding_is_found(dev_scores):
    for finding in ("atelectasis", "cardiomegaly", "effusion", "nodule", "emphysema", "pneumothorax"):
        assert dev_scores["per_finding"][finding]["f1"] >= 0.85, (finding, dev_scores["per_finding"][finding])


def test_mesh_mapping():
    gold = mesh_gold(["Fractures, Bone/ribs/left/healed", "Catheters, Indwelling/right", "Pulmonary Atelectasis/base",
                      "Calcified Granuloma/lung", "Hernia, Hiatal"])
    assert gold.positives == {"fracture", "device", "atelectasis", "hernia"}
    assert gold.fracture_sites == {"rib"} and gold.fracture_old
    assert mesh_gold(["normal"]).positives == {"normal"}
    assert mesh_gold(["Fractures, Bone/thoracic vertebrae"]).fracture_sites == {"thoracic_spine"}


def test_scorer_counts_by_hand():
    labels = {"A": [{"finding": "effusion", "status": "positive"}],
              "B": [{"finding": "effusion", "status": "uncertain"}, {"finding": "fracture", "status": "positive",
                                                                     "site": "rib", "temporality": "old"}]}
    majors = {"A": ["Pleural Effusion/right"], "B": ["Pleural Effusion", "Fractures, Bone/ribs/healed"]}
    scores = score_reports(labels, majors)
    effusion = scores["per_finding"]["effusion"]
    assert (effusion["tp"], effusion["fp"], effusion["fn"]) == (1, 0, 1)
    assert effusion["precision"] == 1.0 and effusion["recall"] == 0.5
    assert scores["fracture_site_agreement"] == 1.0 and scores["fracture_old_agreement"] == 1.0
    assert {(row["report_id"], row["finding"], row["error"]) for row in scores["disagreements"]} == {("B", "effusion", "false_negative")}


def test_uncoded_reports_have_no_mesh_gold():
    """'No Indexing' reports are left out of the MeSH-scored findings (not scored as 'not normal')."""
    assert mesh_uncoded(["No Indexing"]) and not mesh_uncoded(["normal"])
    labels = {"A": [{"finding": "normal", "status": "positive"}],
              "U": [{"finding": "normal", "status": "positive"}, {"finding": "device", "status": "positive"},
                    {"finding": "effusion", "status": "positive"}]}
    majors = {"A": ["normal"], "U": ["No Indexing"]}
    scores = score_reports(labels, majors, {"A": {"normal"}, "U": set()})
    assert scores["mesh_uncoded_excluded"] == 1
    normal, device = scores["per_finding"]["normal"], scores["per_finding"]["device"]
    assert (normal["tp"], normal["fp"], normal["fn"]) == (1, 0, 0)
    assert (device["tp"], device["fp"], device["fn"]) == (0, 0, 0)
    # chest findings keep the NegBio table's row (its gold is not MeSH-scored here)
    assert scores["per_finding"]["effusion"]["fp"] == 1
    assert {(row["report_id"], row["finding"]) for row in scores["disagreements"]} == {("U", "effusion")}
