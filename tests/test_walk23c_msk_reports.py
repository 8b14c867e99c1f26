"""Walk 23c: the report labeller on musculoskeletal / non-chest radiograph reports (synthetic sentences written for
this test, in the way limb, spine, pelvis and face reports are written).

Each case: report text and the expected mentions, "finding status temporality site laterality [device_type]" (status
+ positive, - negative, ? uncertain; "-" = none; a site may list alternatives "knee|tibia"); "NORMAL" when the study is
normal (else the report's normal entry must be negative).  Agreement is scored per attribute; attributes other than
the finding itself are scored on the mentions found; temporality is not scored on devices.
"""

from __future__ import annotations

import pytest

from radloop.labeling import ReportLabeler
from radloop.labeling.rules_loader import PIPELINE_REVISION

pytestmark = pytest.mark.filterwarnings("ignore:.*W036:UserWarning")

CASES = [
    # hand / fingers
    ("XR HAND RIGHT 3 VIEWS\nTransverse fracture of the fifth metacarpal neck with volar angulation, a boxer's fracture.", ["fracture + - hand right"]),
    ("Left hand: Nondisplaced fracture at the base of the proximal phalanx of the ring finger.", ["fracture + - finger left"]),
    ("Tuft fracture of the distal phalanx of the right thumb.", ["fracture + - finger right"]),
    ("XR FINGER LEFT\nNo fracture or dislocation. Soft tissue swelling about the PIP joint of the middle finger.", ["fracture - - - -", "dislocation - - - -"]),
    ("Volar plate avulsion fracture at the base of the middle phalanx of the left index finger.", ["fracture + - finger left"]),
    ("Dorsal dislocation of the right fifth PIP joint.", ["dislocation + - finger right"]),
    ("Healed fracture of the right fourth metacarpal shaft with mild residual angulation.", ["fracture + old hand right"]),
    ("Comminuted intra-articular fracture of the base of the left first metacarpal (Bennett fracture).", ["fracture + - hand left"]),
    ("RIGHT HAND: No acute osseous abnormality.", ["fracture - - - -", "NORMAL"]),
    ("Mallet finger: small avulsion fragment from the dorsal base of the distal phalanx of the left small finger.", ["fracture + - finger left"]),
    # wrist
    ("XR WRIST LEFT 3 VIEWS\nImpacted fracture of the distal radial metaphysis with dorsal angulation (Colles fracture). Associated ulnar styloid fracture.", ["fracture + - radius left", "fracture + - ulna left"]),
    ("Right wrist: Distal radius fracture with volar displacement of the distal fragment, consistent with a Smith fracture.", ["fracture + - radius right"]),
    ("Nondisplaced fracture through the waist of the left scaphoid.", ["fracture + - wrist left"]),
    ("XR WRIST RIGHT\nNo acute fracture is identified. Occult scaphoid fracture cannot be excluded; recommend repeat radiographs in 10-14 days or MRI if clinically indicated.", ["fracture ? - wrist right"]),
    ("Old ununited ulnar styloid fracture on the left.", ["fracture + old ulna left"]),
    ("Healing distal radius fracture in a fiberglass cast. Interval callus formation. Alignment is maintained.", ["fracture + old radius -", "device + - radius|wrist - cast_splint"]),
    ("Perilunate dislocation of the right wrist.", ["dislocation + - wrist right"]),
    ("Left wrist. Questionable lucency through the triquetrum on the lateral view, possibly a dorsal avulsion fracture.", ["fracture ? - wrist left"]),
    ("Scapholunate widening on the left measuring 5 mm, suspicious for ligamentous injury. No fracture.", ["fracture - - - -"]),
    ("XR WRIST LEFT\nUnremarkable radiographs of the left wrist.", ["NORMAL"]),
    # forearm
    ("Displaced, overriding fractures of the midshaft radius and ulna of the right forearm.", ["fracture + - radius right", "fracture + - ulna right"]),
    ("Left forearm: Fracture of the proximal ulnar shaft with anterior dislocation of the radial head (Monteggia fracture-dislocation).", ["fracture + - ulna left", "dislocation + - radius left"]),
    ("Right forearm status post ORIF of radial and ulnar shaft fractures with plates and screws. Hardware intact. Fracture lines are no longer visible.", ["device + - radius|ulna|forearm right orthopedic_hardware", "fracture + - radius|ulna right"]),
    ("XR FOREARM RIGHT 2 VIEWS\nNo fracture. Soft tissues unremarkable.", ["fracture - - - -", "NORMAL"]),
    ("Galeazzi fracture: distal third radial shaft fracture with dislocation of the distal radioulnar joint on the left.", ["fracture + - radius left", "dislocation + - radius|ulna|wrist left"]),
    # elbow
    ("XR ELBOW LEFT\nElevated anterior and posterior fat pads indicating a joint effusion. No fracture line is seen; an occult radial head fracture is suspected.", ["fracture ? - radius left"]),
    ("Right elbow: Nondisplaced fracture of the radial head.", ["fracture + - radius right"]),
    ("Posterior fat pad sign on the left. In the setting of trauma, this is suspicious for an occult fracture.", ["fracture ? - elbow left"]),
    ("Supracondylar fracture of the left humerus, Gartland type II, with posterior angulation of the distal fragment.", ["fracture + - humerus|elbow left"]),
    ("Olecranon fracture with 8 mm of distraction, right elbow.", ["fracture + - ulna right"]),
    ("Right elbow: Status post tension band wiring of an olecranon fracture. The K-wires have backed out by 5 mm.", ["device + - ulna right orthopedic_hardware", "fracture + - ulna right"]),
    ("Posterior dislocation of the left elbow without associated fracture.", ["dislocation + - elbow left", "fracture - - - -"]),
    ("Left elbow, 3 views: No joint effusion. No acute fracture or dislocation.", ["fracture - - - -", "dislocation - - - -", "NORMAL"]),
    ("Avulsion of the medial epicondyle on the right, displaced 6 mm.", ["fracture + - elbow|humerus right"]),
    # shoulder
    ("XR SHOULDER RIGHT\nAnterior glenohumeral dislocation with a Hill-Sachs deformity of the humeral head.", ["dislocation + - shoulder right", "fracture + - humerus right"]),
    ("Left shoulder. Impacted fracture of the surgical neck of the humerus.", ["fracture + - humerus left"]),
    ("Displaced midshaft fracture of the right clavicle with 1 cm of overriding.", ["fracture + - clavicle right"]),
    ("Grade III AC joint separation on the left with superior displacement of the distal clavicle.", ["dislocation + - clavicle left"]),
    ("Healed deformity of the distal right clavicle from an old fracture.", ["fracture + old clavicle right"]),
    ("Comminuted fracture of the left greater tuberosity.", ["fracture + - humerus left"]),
    ("XR SHOULDER LEFT\nPostreduction: the humeral head is now located. No fracture identified.", ["fracture - - - -", "NORMAL"]),
    ("Right total shoulder arthroplasty in expected position without evidence of loosening.", ["device + - shoulder right orthopedic_hardware"]),
    ("Bilateral shoulders: No fracture or dislocation.", ["fracture - - - -", "dislocation - - - -", "NORMAL"]),
    ("Possible nondisplaced fracture of the right scapular body; CT recommended.", ["fracture ? - scapula right"]),
    # spine
    ("Lumbar spine: Mild compression fracture of the L1 vertebral body with 20% loss of height, age indeterminate.", ["fracture + - lumbar_spine -"]),
    ("Acute superior endplate compression fracture of T12.", ["fracture + acute thoracic_spine -"]),
    ("Grade 1 anterolisthesis of L5 on S1 with bilateral L5 pars defects.", []),
    ("Chronic compression deformity of T8, unchanged since prior.", ["fracture + old thoracic_spine -"]),
    ("Cervical spine: No acute fracture or malalignment. Mild degenerative disc disease at C5-C6.", ["fracture - - - -", "dislocation - - - -"]),
    ("Spondylolysis of L5 without spondylolisthesis.", []),
    ("Status post posterior spinal fusion from L3 to L5 with pedicle screws and rods. There is a lucency around the left L5 pedicle screw suggesting loosening.", ["device + - lumbar_spine - orthopedic_hardware"]),
    ("Fracture of the odontoid base (type II dens fracture).", ["fracture + - cervical_spine -"]),
    ("Thoracic spine: Vertebral body heights are maintained. No fracture.", ["fracture - - - -", "NORMAL"]),
    ("Subtle anterior wedging of L2, suspicious for a mild compression fracture; correlate with point tenderness.", ["fracture ? - lumbar_spine -"]),
    # pelvis / hip
    ("XR HIP LEFT\nDisplaced subcapital femoral neck fracture with superior migration of the femoral shaft.", ["fracture + - hip left"]),
    ("Right intertrochanteric fracture with varus angulation.", ["fracture + - hip right"]),
    ("Nondisplaced fractures of the left superior and inferior pubic rami.", ["fracture + - pelvis left"]),
    ("Status post left total hip arthroplasty. Components are well seated without evidence of loosening or periprosthetic fracture.", ["device + - hip left orthopedic_hardware", "fracture - - - -"]),
    ("Right hip hemiarthroplasty with a periprosthetic fracture of the proximal femur.", ["device + - hip|femur right orthopedic_hardware", "fracture + - femur right"]),
    ("Pelvis: No acute fracture. Moderate bilateral hip osteoarthritis.", ["fracture - - - -"]),
    ("Intertrochanteric fracture of the left femur fixed with a cephalomedullary nail. The hardware is intact and alignment is anatomic.", ["fracture + - hip|femur left", "device + - femur|hip left orthopedic_hardware"]),
    ("Dynamic hip screw on the right with cut-out of the lag screw through the femoral head, consistent with hardware failure.", ["device + - hip|femur right orthopedic_hardware"]),
    ("Questionable nondisplaced fracture of the left femoral neck. MRI is recommended if clinical suspicion persists.", ["fracture ? - hip left"]),
    ("Sacral insufficiency fractures bilaterally.", ["fracture + - pelvis bilateral"]),
    ("Right hip. No fracture. Unremarkable.", ["fracture - - - -", "NORMAL"]),
    ("Avulsion fracture of the left anterior inferior iliac spine.", ["fracture + - pelvis left"]),
    # knee
    ("XR KNEE RIGHT\nDepressed fracture of the lateral tibial plateau with a lipohemarthrosis.", ["fracture + - knee|tibia right"]),
    ("Transverse fracture of the left patella with 5 mm of distraction.", ["fracture + - knee left"]),
    ("Large suprapatellar joint effusion of the left knee. No fracture.", ["fracture - - - -"]),
    ("Right total knee arthroplasty. Components are intact. No periprosthetic lucency.", ["device + - knee right orthopedic_hardware"]),
    ("Status post left TKA with a radiolucent line around the tibial component suspicious for loosening.", ["device + - knee|tibia left orthopedic_hardware"]),
    ("Segond fracture: small avulsion fragment off the lateral tibial plateau of the right knee.", ["fracture + - knee|tibia right"]),
    ("Lateral patellar dislocation on the left, with an osteochondral fragment.", ["dislocation + - knee left"]),
    ("Knees, bilateral standing views: Moderate medial compartment joint space narrowing bilaterally. No fracture.", ["fracture - - - -"]),
    ("Nonunion of a proximal tibial shaft fracture on the right with a broken intramedullary nail.", ["fracture + old tibia right", "device + - tibia right orthopedic_hardware"]),
    ("Right knee: Healed fracture of the tibial plateau with ORIF plate and screws.", ["fracture + old knee|tibia right", "device + - knee|tibia right orthopedic_hardware"]),
    # ankle
    ("XR ANKLE LEFT\nBimalleolar fracture with lateral talar shift.", ["fracture + - ankle left"]),
    ("Trimalleolar fracture-dislocation of the right ankle.", ["fracture + - ankle right", "dislocation + - ankle right"]),
    ("Oblique fracture of the distal fibula at the level of the syndesmosis (Weber B), left ankle.", ["fracture + - fibula|ankle left"]),
    ("Right ankle: No acute fracture or dislocation. The ankle mortise is intact.", ["fracture - - - -", "dislocation - - - -", "NORMAL"]),
    ("Left ankle status post ORIF of a distal fibular fracture with a lateral plate and syndesmotic screw. The syndesmotic screw is broken.", ["device + - fibula|ankle left orthopedic_hardware", "fracture + - fibula left"]),
    ("Small avulsion fracture off the tip of the lateral malleolus on the right.", ["fracture + - ankle right"]),
    ("Maisonneuve pattern: proximal fibular fracture with widening of the medial clear space on the left.", ["fracture + - fibula left"]),
    ("Possible osteochondral lesion of the talar dome on the right.", []),
    ("Soft tissue swelling over the lateral malleolus. No underlying fracture.", ["fracture - - - -"]),
    ("Subacute fracture of the distal left fibula with early periosteal reaction.", ["fracture + - fibula left"]),
    # foot
    ("XR FOOT RIGHT\nTransverse fracture at the base of the fifth metatarsal, at the metaphyseal-diaphyseal junction (Jones fracture).", ["fracture + - foot right"]),
    ("Left foot. Widening between the bases of the first and second metatarsals, concerning for a Lisfranc injury.", ["dislocation ? - foot left"]),
    ("Comminuted intra-articular fracture of the right calcaneus with loss of Bohler angle.", ["fracture + - foot right"]),
    ("Avulsion fracture of the base of the fifth metatarsal on the left.", ["fracture + - foot left"]),
    ("Nondisplaced fracture of the proximal phalanx of the right great toe.", ["fracture + - foot right"]),
    ("Healing stress fracture of the second metatarsal shaft of the left foot with exuberant callus.", ["fracture + old foot left"]),
    ("Bilateral feet: No acute fracture.", ["fracture - - - -", "NORMAL"]),
    ("Right foot: Malunion of an old fifth metatarsal fracture.", ["fracture + old foot right"]),
    # skull / face
    ("Nasal bones: Mildly depressed fracture of the nasal bones.", ["fracture + - skull -"]),
    ("Facial bones: Fracture of the left orbital floor with opacification of the left maxillary sinus.", ["fracture + - skull left"]),
    ("Mandible: Fractures of the right mandibular angle and left parasymphysis.", ["fracture + - skull right", "fracture + - skull left"]),
    ("Skull series: No skull fracture.", ["fracture - - - -", "NORMAL"]),
    # paediatric
    ("Buckle fracture of the distal radial metaphysis on the left.", ["fracture + - radius left"]),
    ("XR FOREARM RIGHT\nTorus fracture of the distal radius.", ["fracture + - radius right"]),
    ("Greenstick fracture of the midshaft ulna with mild bowing, left forearm.", ["fracture + - ulna left"]),
    ("Salter-Harris type II fracture of the distal right tibia.", ["fracture + - tibia right"]),
    ("Salter-Harris I injury of the distal fibula is not excluded given the lateral soft tissue swelling; recommend follow-up radiographs.", ["fracture ? - fibula -"]),
    ("Bilateral knees for comparison: the contralateral physis is normal. Widening of the right proximal tibial physis.", []),
    ("Left distal radius: Healing buckle fracture with periosteal new bone.", ["fracture + old radius left"]),
    # hardware / devices
    ("Left wrist: Volar plate and screw fixation of the distal radius fracture. Hardware intact.", ["device + - radius|wrist left orthopedic_hardware", "fracture + - radius left"]),
    ("Right tibia with an intramedullary nail and interlocking screws. Bridging callus across the fracture.", ["device + - tibia right orthopedic_hardware", "fracture + old tibia right"]),
    ("Left hand: Two K-wires transfix the fourth metacarpal fracture.", ["device + - hand left orthopedic_hardware", "fracture + - hand left"]),
    ("External fixator spanning the right ankle.", ["device + - ankle right orthopedic_hardware"]),
    ("Right ankle in a plaster cast, which obscures fine bony detail. Alignment of the distal fibular fracture is maintained.", ["device + - ankle right cast_splint", "fracture + - fibula right"]),
    ("Fractured proximal screw of the left femoral plate.", ["device + - femur left orthopedic_hardware"]),
    ("Periprosthetic lucency around the right femoral stem, concerning for loosening.", ["device + - femur|hip right orthopedic_hardware"]),
    ("Left knee: Removal of hardware. Screw tracts in the proximal tibia.", ["device - - - -"]),
    # foreign bodies
    ("Right hand: 3 mm radiopaque glass fragment in the soft tissues of the palm.", ["foreign_body + - hand right"]),
    ("Left foot: Linear metallic foreign body in the plantar soft tissues near the first metatarsal head, likely a needle.", ["foreign_body + - foot left"]),
    ("Abdomen: a round metallic density projects over the stomach, consistent with a swallowed coin.", ["foreign_body + - - -"]),
    ("Multiple BB pellets in the soft tissues of the right thigh.", ["foreign_body + - femur right"]),
    ("Right knee: No radiopaque foreign body.", ["foreign_body - - - -", "NORMAL"]),
    ("Sewing needle fragment within the left thenar soft tissues.", ["foreign_body + - hand left"]),
    ("Glass in the soft tissues of the left index finger.", ["foreign_body + - finger left"]),
    # temporality / normal / mixed
    ("Right clavicle: Interval callus formation about the midshaft fracture.", ["fracture + old clavicle right"]),
    ("Acute nondisplaced fracture of the left fibular neck.", ["fracture + acute fibula left"]),
    ("XR ANKLE RIGHT\nNo acute osseous abnormality.", ["fracture - - - -", "NORMAL"]),
    ("Left shoulder: Unremarkable.", ["NORMAL"]),
    ("Bones are intact. No acute fracture or dislocation. Joint spaces are preserved.", ["fracture - - - -", "dislocation - - - -", "NORMAL"]),
    ("Old healed fracture of the right fifth metacarpal. No acute fracture.", ["fracture + old hand right"]),
]


STATUS = {"+": "positive", "-": "negative", "?": "uncertain"}
#: Measured 2026-11-28 on CASES: 0.941 (675/717, rules before walk 23c) -> 0.989 (733/741) overall.
OVERALL_FLOOR = 0.98
ATTRIBUTE_FLOORS = {"finding": 0.98, "status": 1.0, "temporality": 1.0, "site": 0.97, "laterality": 0.94,
                    "device_type": 1.0, "normal": 1.0}


def _parse(spec: str) -> dict:
    finding, status, temporality, site, side, *device = spec.split()
    return {"finding": finding, "status": STATUS[status], "temporality": "unspecified" if temporality == "-" else temporality,
            "site": None if site == "-" else set(site.split("|")), "laterality": None if side == "-" else side,
            "device_type": device[0] if device else None}


def _checks(expected: dict, mention) -> list[tuple[str, bool]]:
    site_ok = mention.site is None if expected["site"] is None else mention.site in expected["site"]
    checks = [("status", mention.status == expected["status"]), ("site", site_ok),
              ("laterality", mention.laterality == expected["laterality"])]
    if expected["finding"] == "device":
        checks.append(("device_type", mention.device_type == expected["device_type"]))
    else:
        checks.append(("temporality", mention.temporality == expected["temporality"]))
    return checks


def compare(specs: list[str], mentions: list) -> list[tuple[str, bool, str]]:
    """``(attribute, agrees, detail)`` rows for one report; ``extra`` rows for an asserted finding not expected."""
    normal = next((m.status for m in mentions if m.finding == "normal"), "positive")
    rows = [("normal", normal == ("positive" if "NORMAL" in specs else "negative"), f"normal {normal}")]
    expected = [_parse(spec) for spec in specs if spec != "NORMAL"]
    used: set[int] = set()
    for want in expected:
        if want["status"] == "negative":
            got = [m.status for m in mentions if m.finding == want["finding"]]
            rows.append(("status", all(status == "negative" for status in got), f"{want['finding']} negative, got {got}"))
            continue
        found = [(index, m) for index, m in enumerate(mentions)
                 if m.finding == want["finding"] and m.status != "negative" and index not in used]
        rows.append(("finding", bool(found), f"{want['finding']} missing"))
        if found:
            index, best = max(found, key=lambda item: sum(ok for _, ok in _checks(want, item[1])))
            used.add(index)
            rows += [(name, ok, f"{want['finding']}.{name}: got {getattr(best, name)}") for name, ok in _checks(want, best)]
    asserted = {want["finding"] for want in expected if want["status"] != "negative"}
    for m in mentions:
        if m.finding != "normal" and m.status != "negative" and m.finding not in asserted:
            rows.append(("extra", False, f"extra {m.finding} {m.status} {m.evidence!r}"))
            asserted.add(m.finding)
    return rows


@pytest.fixture(scope="module")
def labeler():
    return ReportLabeler()


@pytest.fixture(scope="module")
def agreement(labeler):
    totals: dict[str, list[int]] = {}
    misses = []
    for (text, specs), result in zip(CASES, labeler.label_many([text for text, _ in CASES])):
        for name, ok, detail in compare(specs, list(result)):
            totals.setdefault(name, [0, 0])
            totals[name][0] += ok
            totals[name][1] += 1
            if not ok:
                misses.append((text, detail))
    return totals, misses


def test_the_case_set_covers_the_regions():
    assert len(CASES) >= 120
    texts = " ".join(text.lower() for text, _ in CASES)
    for word in ("phalanx", "scaphoid", "colles", "radial head", "fat pad", "clavicle", "compression fracture",
                 "femoral neck", "tibial plateau", "weber b", "jones", "lisfranc", "orbital floor", "buckle",
                 "salter-harris", "k-wires", "external fixator", "coin", "bb pellets", "nonunion", "malunion"):
        assert word in texts, word


def test_overall_agreement_has_a_floor(agreement):
    totals, misses = agreement
    agree = sum(ok for name, (ok, _) in totals.items() if name != "extra")
    scored = sum(n for name, (_, n) in totals.items() if name != "extra")
    assert agree / scored >= OVERALL_FLOOR, misses
    assert "extra" not in totals, [miss for miss in misses if miss[1].startswith("extra")]
    for name, floor in ATTRIBUTE_FLOORS.items():
        ok, n = totals[name]
        assert ok / n >= floor, (name, ok, n, [miss for miss in misses if miss[1].startswith(name)
                                               or f".{name}" in miss[1]])


def _found(labeler, text, finding):
    return [m for m in labeler.label(text) if m.finding == finding and m.status != "negative"]


# --- the attributes fixed in walk 23c ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, temporality", [
    ("Transverse fracture of the left patella with 5 mm of distraction.", "unspecified"),  # morphology is no acuity
    ("Comminuted intra-articular fracture of the right calcaneus.", "unspecified"),
    ("Impacted fracture of the surgical neck of the left humerus.", "unspecified"),
    ("Nasal bones: Mildly depressed fracture of the nasal bones.", "unspecified"),
    ("Healed comminuted fracture of the left tibia.", "old"),  # was acute: the nearer morphology word won
    ("Old transverse fracture of the patella.", "old"),
    ("Acute nondisplaced fracture of the left fibular neck.", "acute"),
])
def test_fracture_morphology_is_no_acuity(labeler, text, temporality):
    assert {m.temporality for m in _found(labeler, text, "fracture")} == {temporality}


@pytest.mark.parametrize("text, finding, site, side", [
    ("XR SHOULDER RIGHT\nAnterior glenohumeral dislocation with a Hill-Sachs deformity of the humeral head.", "fracture", "humerus", "right"),
    ("Bony Bankart lesion of the left glenoid.", "fracture", "scapula", "left"),
    ("Salter-Harris type II injury of the distal right radius.", "fracture", "radius", "right"),
    ("Left foot. Widening between the first and second metatarsals, concerning for a Lisfranc injury.", "dislocation", "foot", "left"),
    ("Glass in the soft tissues of the left index finger.", "foreign_body", "finger", "left"),
    ("Nondisplaced fracture of the proximal phalanx of the right great toe.", "fracture", "foot", "right"),
    ("Left hand: Nondisplaced fracture at the base of the proximal phalanx of the ring finger.", "fracture", "finger", "left"),
    ("Left forearm: Fracture of the proximal ulnar shaft.", "fracture", "ulna", "left"),
    ("Avulsion of the medial epicondyle on the right, displaced 6 mm.", "fracture", "elbow", "right"),
    ("Comminuted fracture of the left greater tuberosity.", "fracture", "humerus", "left"),
    ("Fracture of the odontoid base (type II dens fracture).", "fracture", "cervical_spine", None),
    ("Sewing needle fragment within the left thenar soft tissues.", "foreign_body", "hand", "left"),
    ("Nonunion of a proximal tibial shaft fracture on the right with a broken intramedullary nail.", "fracture", "tibia", "right"),
])
def test_msk_findings_sites_and_sides(labeler, text, finding, site, side):
    assert (site, side) in {(m.site, m.laterality) for m in _found(labeler, text, finding)}, labeler.label(text)


@pytest.mark.parametrize("text", [
    "Status post left TKA with a radiolucent line around the tibial component suspicious for loosening.",
    "Intertrochanteric fracture of the left femur fixed with a cephalomedullary nail.",
    "Periprosthetic lucency around the right femoral stem, concerning for loosening.",
    "Right elbow: Status post tension band wiring of an olecranon fracture.",
])
def test_arthroplasty_and_fixation_words_are_hardware(labeler, text):
    assert {m.device_type for m in _found(labeler, text, "device")} == {"orthopedic_hardware"}


@pytest.mark.parametrize("text, finding, normal", [
    ("Left knee: Removal of hardware. Screw tracts in the proximal tibia.", "device", "negative"),
    ("Volar plate avulsion fracture at the base of the middle phalanx of the left index finger.", "device", "negative"),
    ("Patchy ground glass opacity in the right lower lobe.", "foreign_body", "negative"),
    ("Ground-glass attenuation in both lower lobes.", "foreign_body", None),
    ("Grade 1 anterolisthesis of L5 on S1 with bilateral L5 pars defects.", "fracture", "negative"),
    ("XR FINGER LEFT\nNo fracture or dislocation. Soft tissue swelling about the PIP joint.", "fracture", "negative"),
    ("Knees: Moderate medial compartment joint space narrowing bilaterally. No fracture.", "fracture", "negative"),
])
def test_not_this_finding_but_not_normal_either(labeler, text, finding, normal):
    mentions = labeler.label(text)
    assert not [m for m in mentions if m.finding == finding and m.status != "negative"], mentions
    if normal is not None:
        assert [m.status for m in mentions if m.finding == "normal"] == [normal], mentions


def test_of_sites_is_validated():
    from radloop.labeling.rules_loader import _check_site_metadata
    from medspacy.target_matcher import TargetRule

    with pytest.raises(ValueError, match="of_sites"):
        _check_site_metadata(TargetRule("phalanx", "finger", metadata={"of_sites": ["toes"]}), "sites.json, rule 1")
    _check_site_metadata(TargetRule("phalanx", "finger", metadata={"of_sites": ["foot"]}), "sites.json, rule 1")


def test_pipeline_revision_was_bumped():
    assert PIPELINE_REVISION >= 8
