"""The one finding vocabulary every part uses (report rules, Label Studio config, models, app).

Extending the vocabulary of the report labeller is done by adding rule files; names used across
parts are listed here so that a typo is caught at one place.
"""

from __future__ import annotations

STATUSES = ("positive", "negative", "uncertain")
TEMPORALITIES = ("acute", "old", "unspecified")
LATERALITIES = ("left", "right", "bilateral")

#: Image-level findings shown to annotators and predicted by image models.
IMAGE_FINDINGS = ("fracture", "foreign_body", "device", "normal", "dislocation")

#: The 14 chest findings (NIH ChestX-ray14 / NegBio Open-i names, lower case).
CHEST_FINDINGS = (
    "atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
    "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural_thickening", "hernia",
)

#: Musculoskeletal findings beyond fracture that a multi-region archive needs.
MSK_FINDINGS = ("dislocation",)

FINDINGS = ("fracture", "foreign_body", "device", "normal") + CHEST_FINDINGS + MSK_FINDINGS

#: Findings that can be drawn as boxes.
BOX_FINDINGS = ("fracture", "foreign_body")

SITES = (
    "rib", "clavicle", "sternum", "scapula", "humerus", "radius", "ulna", "wrist", "hand", "finger",
    "elbow", "shoulder", "hip", "pelvis", "femur", "knee", "tibia", "fibula", "ankle", "foot", "skull",
    "cervical_spine", "thoracic_spine", "lumbar_spine", "forearm",
)

DEVICE_TYPES = (
    "central_line", "picc", "endotracheal_tube", "tracheostomy_tube", "enteric_tube", "chest_tube",
    "pacemaker", "sternotomy_wires", "surgical_clips", "orthopedic_hardware", "stent", "prosthetic_valve",
    "port", "cast_splint", "other_device",
)

#: Body regions images are grouped by (DICOM BodyPartExamined / dataset class names map onto these).
BODY_REGIONS = (
    "chest", "elbow", "fingers", "forearm", "hand", "humerus", "shoulder", "wrist", "pelvis", "hip",
    "knee", "ankle", "foot", "leg", "spine", "skull", "abdomen", "extremity", "other",
)


def check_finding(name: str) -> str:
    """Return ``name`` if it is in the vocabulary, else raise ``ValueError`` listing valid names."""
    if name not in FINDINGS:
        raise ValueError(f"unknown finding {name!r}; valid: {', '.join(FINDINGS)}")
    return name
