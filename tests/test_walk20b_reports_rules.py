"""Walk 20b: report-labelling rules found by a radiologist's walkthrough: a "masslike" lesion of at most 3 cm is a
nodule (Fleischner glossary; CXR206's "2.6 cm masslike density" was a mass false positive)."""

from __future__ import annotations

import pytest

from radloop.labeling import ReportLabeler
from radloop.labeling.sizes import largest_dimension_cm, stated_size_cm

pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")


@pytest.fixture(scope="module")
def labeler():
    return ReportLabeler()


def _positive(labeler, text):
    return sorted({(m.finding, m.laterality) for m in labeler.label(text) if m.status == "positive"
                   and m.finding != "normal"})


@pytest.mark.parametrize(("text", "expected"), [
    ("There is a 2.6 cm diameter masslike density over the lingula.", [("nodule", None)]),
    ("Masslike opacity in the right upper lobe measuring 2.5 x 1.9 cm.", [("nodule", "right")]),
    ("A 3 cm mass-like density in the right apex.", [("nodule", "right")]),
    ("Masslike opacity in the left lower lobe (20 mm).", [("nodule", "left")]),
    # larger than 3 cm, or no size: a mass, as before
    ("Interval increase in size of a 4.9 cm masslike opacity in the left lung base.", [("mass", "left")]),
    ("Masslike opacity in the right upper lobe measuring 3.5 x 2 cm.", [("mass", "right")]),
    ("Large masslike opacity in the right lung base.", [("mass", "right")]),
    ("Masslike opacification of right apex.", [("mass", "right")]),
    # a size that belongs to another finding of the sentence is not the masslike lesion's
    ("A 2.6 cm nodule and masslike density in the right apex.", [("mass", "right"), ("nodule", "right")]),
])
def test_a_small_masslike_lesion_is_a_nodule(labeler, text, expected):
    assert _positive(labeler, text) == expected


def test_cxr206_is_a_nodule_not_a_mass(labeler):
    from conftest import data_path

    from radloop.labeling.sources import iter_reports

    report = next(r for r in iter_reports(data_path("iu_xray_reports", "NLMCXR_reports_dev.tgz"))
                  if r.report_id == "CXR206")
    findings = {m.finding for m in labeler.label(report.text) if m.status == "positive"}
    assert "nodule" in findings and "mass" not in findings


def test_written_sizes():
    assert largest_dimension_cm("2.5 x 1.9 cm") == 2.5 and largest_dimension_cm("25 mm") == 2.5
    assert largest_dimension_cm("2-3 cm") == 3.0 and largest_dimension_cm("2.5 cm x 3.1 cm") == 3.1
    assert stated_size_cm("a 2.6 cm diameter ", " over the lingula") == 2.6
    assert stated_size_cm("There is a ", " in the left lung measuring 35 mm.") == 3.5
    assert stated_size_cm("the 5 ", "") is None and stated_size_cm("a 2 cm nodule and a ", "") is None


def test_a_bad_finding_by_size_is_refused():
    from radloop.labeling.rules_loader import _check_finding_by_size

    _check_finding_by_size({"at_most_cm": 3, "finding": "nodule"}, "here")
    for bad in ({"at_most_cm": 3, "finding": "lump"}, {"at_most_cm": 0, "finding": "nodule"},
                {"at_most_cm": True, "finding": "nodule"}, {"at_most_cm": 3}, [3, "nodule"]):
        with pytest.raises(ValueError, match="finding_by_size must be"):
            _check_finding_by_size(bad, "here")


def _mentions(labeler, text, finding):
    return [(m.status, m.site, m.laterality, m.temporality, m.device_type) for m in labeler.label(text)
            if m.finding == finding]


def test_a_joint_effusion_is_no_pleural_effusion_but_is_abnormal(labeler):
    for text in ("Knee: Large joint effusion. No fracture.", "Elbow joint effusion (positive fat pad sign).",
                 "Trace suprapatellar effusion on the left.", "Effusion in the right knee joint.",
                 "Tibial plateau fracture with lipohemarthrosis."):
        results = labeler.label(text)
        assert not [m for m in results if m.finding == "effusion"], text
        assert [m.status for m in results if m.finding == "normal"] == ["negative"], text
    assert _mentions(labeler, "Small left pleural effusion. No knee joint effusion.", "effusion") == [
        ("positive", None, "left", "unspecified", None)]


def test_pins_and_cerclage_wires_in_a_limb_bone_are_orthopaedic_hardware(labeler):
    assert _mentions(labeler, "Pins in the right tibia from prior surgery.", "device") == [
        ("positive", "tibia", "right", "unspecified", "orthopedic_hardware")]
    assert _mentions(labeler, "Sewing pin in the plantar soft tissues of the right foot.", "foreign_body") == [
        ("positive", "foot", "right", "unspecified", None)]
    assert _mentions(labeler, "Swallowed safety pin projects over the stomach.", "foreign_body")[0][0] == "positive"
    assert _mentions(labeler, "Cerclage wires around the proximal right femur.", "device") == [
        ("positive", "femur", "right", "unspecified", "orthopedic_hardware")]
    assert _mentions(labeler, "Sternotomy and cerclage wires appear intact.", "device")[-1][-1] == "sternotomy_wires"
    assert _mentions(labeler, "External fixator spanning the left ankle. Comminuted pilon fracture.", "device") == [
        ("positive", "ankle", "left", "unspecified", "orthopedic_hardware")]


def test_a_side_before_a_site_is_shared_by_the_findings_around_it(labeler):
    assert ("positive", "clavicle", "right", "old", None) in _mentions(
        labeler, "Healed fracture of the right clavicle with callus formation.", "fracture")
    assert _mentions(labeler, "Fracture of the right hip status post ORIF, with intact hardware.", "fracture") == [
        ("positive", "hip", "right", "unspecified", None)]
    # a finding right after the site still owns the side; the one before keeps its own
    dislocations = _mentions(labeler, "Dislocation of the left shoulder and right hip fracture.", "dislocation")
    assert dislocations == [("positive", "shoulder", "left", "unspecified", None)]
    assert ("positive", "hip", "right", "unspecified", None) in _mentions(
        labeler, "Dislocation of the left shoulder and right hip fracture.", "fracture")
    assert _mentions(labeler, "Left lower lobe atelectasis and right pleural effusion.", "atelectasis")[0][2] == "left"


def test_an_absent_healing_sign_does_not_make_a_fracture_old(labeler):
    assert _mentions(labeler, "Distal radius fracture without evidence of healing.", "fracture") == [
        ("positive", "radius", None, "unspecified", None)]
    assert _mentions(labeler, "Healing distal radius fracture.", "fracture")[0][3] == "old"
    report = "No fracture. No evidence of healing."  # the pseudo span takes no negation from a target
    assert [m.status for m in labeler.label(report) if m.finding == "normal"] == ["positive"]


def test_a_bad_at_sites_is_refused():
    from radloop.labeling.rules_loader import _check_at_sites

    good = {"sites": ["tibia"], "finding": "device", "device_type": "orthopedic_hardware"}
    _check_at_sites(good, "foreign_body", "here")
    for bad, category in (({**good, "sites": ["tibia", "moon"]}, "foreign_body"), ({**good, "finding": "mass"},
                          "device"), ({**good, "device_type": "rocket"}, "device"), (good, "nodule"),
                          ({"sites": ["tibia"], "finding": "fracture", "device_type": "stent"}, "device"),
                          ({**good, "extra": 1}, "device")):
        with pytest.raises(ValueError, match="at_sites must be"):
            _check_at_sites(bad, category, "here")
