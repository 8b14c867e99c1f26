"""An effusion in a sentence that names a limb joint or bone is a joint effusion: abnormal, no pleural effusion
(report texts written for this test; "knee joint effusion" was already handled by its own rule, a region label
before the finding was not)."""

from __future__ import annotations

import pytest
from radloop.labeling import ReportLabeler
from radloop.labeling.rules_loader import _check_beside_sites

pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")


@pytest.fixture(scope="module")
def labeler():
    return ReportLabeler()


def _statuses(labeler, text):
    return {mention.finding: mention.status for mention in labeler.label(text)}


@pytest.mark.parametrize("text", [
    "Left knee: effusion.",
    "Right ankle: soft tissue swelling and effusion.",
    "Moderate effusion of the left elbow with elevated fat pads.",
    "LEFT WRIST: Small effusion. No fracture.",
])
def test_an_effusion_beside_a_limb_site_is_abnormal_not_pleural(labeler, text):
    statuses = _statuses(labeler, text)
    assert "effusion" not in statuses
    assert statuses["normal"] == "negative"


@pytest.mark.parametrize("text, status", [
    ("Small left pleural effusion.", "positive"),
    ("Moderate right effusion.", "positive"),
    ("No effusion or pneumothorax.", "negative"),
    ("Left shoulder: small left effusion and pleural thickening.", "positive"),  # a chest film naming the shoulder
    ("Small right effusion. Degenerative changes of the right knee.", "positive"),  # the knee in another sentence
])
def test_a_pleural_effusion_stays_one(labeler, text, status):
    assert _statuses(labeler, text)["effusion"] == status


def test_a_negated_joint_effusion_leaves_the_study_normal(labeler):
    statuses = _statuses(labeler, "Left knee: no effusion. No fracture.")
    assert "effusion" not in statuses and statuses["normal"] == "positive"


@pytest.mark.parametrize("bad", [
    {"sites": ["knee"]},  # no finding
    {"sites": ["kneecap"], "finding": "abnormal"},  # not a site
    {"sites": ["knee"], "finding": "joint_effusion"},  # not a finding
])
def test_bad_beside_sites_metadata_is_refused(bad):
    with pytest.raises(ValueError, match="beside_sites must be"):
        _check_beside_sites(bad, "effusion", "targets_chest.json, rule 1")
    with pytest.raises(ValueError, match="beside_sites must be"):
        _check_beside_sites({"sites": ["knee"], "finding": "abnormal"}, "fracture", "x.json, rule 2")  # a sited rule
