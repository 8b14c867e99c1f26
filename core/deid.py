"""Pseudonymous identifiers: nothing that identifies a patient is ever stored.

Study ids are ``S-`` + 16 hex of HMAC-SHA256(workspace.pseudonym_key, "<namespace>:<source key>"): stable
within a workspace (re-ingest finds the same study), not reversible without the workspace's secret key, and
different between workspaces.  Image ids are ``I-`` + the first 16 hex of the file's SHA-256 (content, not
identity).  The DICOM attributes in :data:`PATIENT_IDENTIFIER_KEYWORDS` are never read into a record.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["PATIENT_IDENTIFIER_KEYWORDS", "content_hash", "image_id_for_hash", "study_pseudonym"]

#: DICOM attributes that identify a patient or a visit; ingest never copies them anywhere.
PATIENT_IDENTIFIER_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "OtherPatientNames",
    "AccessionNumber", "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
    "PerformingPhysicianName", "OperatorsName", "StudyID", "PatientAddress", "PatientTelephoneNumbers",
)


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of a file's bytes (the idempotency key of an image)."""
    return hashlib.sha256(data).hexdigest()


def image_id_for_hash(sha256_hex: str) -> str:
    """Catalog image id for a content hash: ``I-`` + 16 hex."""
    return "I-" + sha256_hex[:16]


def study_pseudonym(key: bytes, namespace: str, source_key: str) -> str:
    """Pseudonymous study id ``S-`` + 16 hex for a source study key (e.g. a StudyInstanceUID).

    Args:
        key: the workspace's secret (``Workspace.pseudonym_key``).
        namespace: where the key comes from: ``study`` (DICOM StudyInstanceUID or a CSV study id),
            ``openi`` (report uid CXR<n>), ``file`` (<dataset>/<source image stem>), ...
        source_key: the source's own key; it is never stored.
    """
    digest = hmac.new(key, f"{namespace}:{source_key}".encode("utf-8"), hashlib.sha256).hexdigest()
    return "S-" + digest[:16]
