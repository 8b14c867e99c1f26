"""The body region and laterality of a DICOM image: BodyPartExamined / ImageLaterality, else the part and side
a free-text description names (``DESCRIPTION_TAGS``, e.g. "LEFT WRIST" in AcquisitionDeviceProcessingDescription).

Split out of :mod:`radloop.core.dicom_io`, which re-exports these names and fills :class:`DicomMetadata` with them.
"""

from __future__ import annotations

import pydicom

__all__ = ["BODY_PART_REGIONS", "DESCRIPTION_REGIONS", "DESCRIPTION_SIDES", "DESCRIPTION_TAGS", "GENERIC_REGIONS",
           "UNPAIRED_REGIONS", "dicom_body_region", "dicom_laterality"]

#: DICOM BodyPartExamined (upper case) -> radloop body region (core.vocabulary.BODY_REGIONS).
BODY_PART_REGIONS = {
    "CHEST": "chest", "THORAX": "chest", "LUNG": "chest", "RIB": "chest", "RIBS": "chest",
    "HAND": "hand", "FINGER": "fingers", "FINGERS": "fingers", "WRIST": "wrist", "FOREARM": "forearm",
    "ELBOW": "elbow", "HUMERUS": "humerus", "ARM": "humerus", "SHOULDER": "shoulder", "CLAVICLE": "shoulder",
    "PELVIS": "pelvis", "HIP": "hip", "KNEE": "knee", "ANKLE": "ankle", "FOOT": "foot", "LEG": "leg",
    "FEMUR": "leg", "TIBIA": "leg", "LOWLEG": "leg", "UPRLEG": "leg", "SPINE": "spine", "CSPINE": "spine",
    "TSPINE": "spine", "LSPINE": "spine", "SSPINE": "spine", "SKULL": "skull", "HEAD": "skull",
    "ABDOMEN": "abdomen", "EXTREMITY": "extremity",
}
#: regions too generic to keep when a description names the part (BodyPartExamined EXTREMITY on a lower-leg CR)
GENERIC_REGIONS = (None, "extremity", "other")
#: attributes read, in this order, for the part (and the side) when BodyPartExamined (the Laterality
#: attributes) are missing or generic; the first that names any decides, and naming two keeps the generic
DESCRIPTION_TAGS = ("AcquisitionDeviceProcessingDescription", "ProtocolName", "SeriesDescription",
                    "StudyDescription", "RequestedProcedureDescription")
#: names (upper case, whole words; "-", "_", "/" and brackets count as spaces) -> region, for free-text
#: descriptions.  Bare ARM and HEAD are left out: "arm" is any part of the limb, "head" as often the femoral head.
DESCRIPTION_REGIONS = {
    "chest": ("CHEST", "THORAX", "CXR", "LUNG", "LUNGS", "RIB", "RIBS", "STERNUM"),
    "fingers": ("FINGER", "FINGERS", "THUMB", "THUMBS"),
    "hand": ("HAND", "HANDS", "METACARPAL", "METACARPALS"),
    "wrist": ("WRIST", "WRISTS", "SCAPHOID", "CARPAL", "CARPUS"),
    "forearm": ("FOREARM", "FOREARMS", "RADIUS", "ULNA"),
    "elbow": ("ELBOW", "ELBOWS", "OLECRANON"),
    "humerus": ("HUMERUS", "HUMERAL", "UPPER ARM"),
    "shoulder": ("SHOULDER", "SHOULDERS", "CLAVICLE", "SCAPULA"),
    "pelvis": ("PELVIS", "PELVIC", "SACRUM", "SACROILIAC"),
    "hip": ("HIP", "HIPS"),
    "knee": ("KNEE", "KNEES", "PATELLA", "KNEECAP"),
    "ankle": ("ANKLE", "ANKLES"),
    "foot": ("FOOT", "FEET", "TOE", "TOES", "CALCANEUS", "HEEL"),
    "leg": ("LEG", "LEGS", "LOWER LEG", "UPPER LEG", "TIBIA", "TIBIAL", "FIBULA", "FIBULAR", "TIB", "FIB", "FEMUR",
            "FEMORAL", "THIGH", "SHIN"),
    "spine": ("SPINE", "SPINAL", "CSPINE", "TSPINE", "LSPINE", "C SPINE", "T SPINE", "L SPINE", "CERVICAL",
              "LUMBAR", "VERTEBRA", "VERTEBRAE", "COCCYX"),
    "skull": ("SKULL", "CRANIUM", "FACIAL BONES", "MANDIBLE"),
    "abdomen": ("ABDOMEN", "ABDOMINAL", "KUB"),
}
#: side words of descriptions -> DICOM laterality; BILATERAL names both sides, so it gives none
DESCRIPTION_SIDES = {"L": ("LEFT", "LT", "BILATERAL", "BILAT"), "R": ("RIGHT", "RT", "BILATERAL", "BILAT")}
#: midline regions: a side in their descriptions is a view ("LEFT LATERAL DECUBITUS"), not the image's laterality
UNPAIRED_REGIONS = ("chest", "spine", "skull", "abdomen", "pelvis")


def _text(dataset: pydicom.Dataset, keyword: str) -> str | None:
    """An attribute as text; of a multi-valued one the first value (not the list's repr)."""
    value = dataset.get(keyword)
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0] if len(value) else None
    text = str(value).strip() if value is not None else ""
    return text or None


def _named(text: str | None, names: dict[str, tuple[str, ...]]) -> set[str]:
    """The keys of ``names`` whose words occur in ``text`` as whole words."""
    words = f" {' '.join(''.join(c if c.isalnum() else ' ' for c in (text or '').upper()).split())} "
    return {key for key, values in names.items() if any(f" {value} " in words for value in values)}


def dicom_body_region(dataset: pydicom.Dataset) -> tuple[str | None, str | None]:
    """(body region, attribute it came from): BodyPartExamined, else when that is missing or generic
    (EXTREMITY, OTHER, unknown) the first of ``DESCRIPTION_TAGS`` that names a part, if it names just one."""
    part = _text(dataset, "BodyPartExamined")
    region = BODY_PART_REGIONS.get(part.upper().replace(" ", "").replace("-", "").replace("_", "")) if part else None
    if region is None and len(named := _named(part, DESCRIPTION_REGIONS)) == 1:
        region = named.pop()
    if region in GENERIC_REGIONS:
        for keyword in DESCRIPTION_TAGS:
            if named := _named(_text(dataset, keyword), DESCRIPTION_REGIONS):
                if len(named) == 1:
                    return named.pop(), keyword
                break  # two parts named: keep the generic region
    return region, "BodyPartExamined" if region else None


def dicom_laterality(dataset: pydicom.Dataset, region: str | None = None) -> tuple[str | None, str | None]:
    """(laterality, attribute it came from): ImageLaterality / Laterality, else the side (``L`` / ``R``) the first
    of ``DESCRIPTION_TAGS`` naming one names ("LEFT WRIST"); both sides named, or a midline ``region``, give none."""
    for keyword in ("ImageLaterality", "Laterality"):
        if value := _text(dataset, keyword):
            return value, keyword
    for keyword in DESCRIPTION_TAGS if region not in UNPAIRED_REGIONS else ():
        if named := _named(_text(dataset, keyword), DESCRIPTION_SIDES):
            return (named.pop(), keyword) if len(named) == 1 else (None, None)
    return None, None
