"""Pseudonymous identifiers: nothing that identifies a patient is ever stored.

Study ids are ``S-`` + 16 hex of HMAC-SHA256(workspace.pseudonym_key, "<namespace>:<source key>"): stable
within a workspace (re-ingest finds the same study), not reversible without the workspace's secret key, and
different between workspaces.  DICOM SOP Instance UIDs are kept the same way (:func:`instance_pseudonym`),
only to recognise an instance sent twice.  Image ids are ``I-`` + the first 16 hex of the file's SHA-256
(content, not identity); :func:`pixel_hash` recognises the same pixels in another file.  The DICOM attributes
in :data:`PATIENT_IDENTIFIER_KEYWORDS` are never read into a record.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

__all__ = [
    "PATIENT_IDENTIFIER_KEYWORDS", "PIXEL_HASH_VERSION", "content_hash", "image_id_for_hash", "instance_pseudonym",
    "pixel_hash", "report_pseudonym", "study_pseudonym",
]

#: DICOM attributes that identify a patient or a visit; ingest never copies them anywhere.
PATIENT_IDENTIFIER_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "OtherPatientNames",
    "AccessionNumber", "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
    "PerformingPhysicianName", "OperatorsName", "StudyID", "PatientAddress", "PatientTelephoneNumbers",
)
#: Part of every pixel hash: a change to what :func:`pixel_hash` covers must change it.
PIXEL_HASH_VERSION = 1
#: Integer pixels are hashed in the first of these that holds their range (same values, same bytes).
_CANONICAL_INTEGER_DTYPES = ("<u1", "<u2", "<i2", "<i4", "<i8")


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of a file's bytes (the idempotency key of an image)."""
    return hashlib.sha256(data).hexdigest()


def image_id_for_hash(sha256_hex: str) -> str:
    """Catalog image id for a content hash: ``I-`` + 16 hex."""
    return "I-" + sha256_hex[:16]


def pixel_hash(values: np.ndarray, *, photometric: str = "MONOCHROME2", frames: int = 1) -> str:
    """SHA-256 hex digest of decoded pixel values: the same image however its file encodes it.

    The values are the decoded *stored* values (for DICOM before the modality LUT and the VOI window), so an
    instance re-saved in another transfer syntax, re-encoded losslessly or with an edited header hashes alike.
    Integer values are hashed as the narrowest little-endian type of :data:`_CANONICAL_INTEGER_DTYPES` that
    holds their range (8-bit data in 16-bit words, or big-endian words, hash like the same values in 8 bits);
    floating-point values as little-endian float64.  The shape, the photometric interpretation (an inverted
    MONOCHROME1 image is another image than the same values in MONOCHROME2) and the number of frames (only the
    first is decoded) are hashed with them.

    Args:
        values: (H, W) or (H, W, C) decoded pixel values, any numeric dtype.
        photometric: how the values are to be seen: MONOCHROME1 | MONOCHROME2 | RGB.
        frames: frames in the file (a multi-frame object is not the same image as its first frame alone).
    """
    values = np.asarray(values)
    if values.dtype.kind == "b":
        values = values.astype(np.uint8)
    if values.dtype.kind in "iu":
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        canonical = next(np.dtype(name) for name in _CANONICAL_INTEGER_DTYPES
                         if np.iinfo(name).min <= low and high <= np.iinfo(name).max)
    else:
        canonical = np.dtype("<f8")
    header = f"radloop-pixels:{PIXEL_HASH_VERSION}|{photometric}|{frames}|{values.shape}|{canonical.str}|"
    digest = hashlib.sha256(header.encode("ascii"))
    digest.update(np.ascontiguousarray(values, dtype=canonical).data)
    return digest.hexdigest()


def study_pseudonym(key: bytes, namespace: str, source_key: str) -> str:
    """Pseudonymous study id ``S-`` + 16 hex for a source study key (e.g. a StudyInstanceUID).

    Args:
        key: the workspace's secret (``Workspace.pseudonym_key``).
        namespace: where the key comes from: ``study`` (DICOM StudyInstanceUID or a CSV study id),
            ``openi`` (report uid CXR<n>), ``file`` (<dataset>/<source image stem>), ...
        source_key: the source's own key; it is never stored.
    """
    return "S-" + _keyed_digest(key, namespace, source_key)[:16]


def report_pseudonym(key: bytes, report_id: str) -> str:
    """Pseudonym ``R-`` + 16 hex of a report id (``radloop label-reports --pseudonymize-ids``): HMAC-SHA256 with
    the workspace's secret key, as study ids.  Stable within a workspace (recompute it there to join labels back
    to reports), not reversible without ``secret.key``, different between workspaces."""
    return "R-" + _keyed_digest(key, "report", report_id)[:16]


def instance_pseudonym(key: bytes, sop_instance_uid: str) -> str:
    """Pseudonym ``SOP-`` + 32 hex of a DICOM SOPInstanceUID (the UID itself is never stored).

    32 hex (128 bits) rather than a study id's 16: it is compared across every image of an archive.
    """
    return "SOP-" + _keyed_digest(key, "sop", sop_instance_uid)[:32]


def _keyed_digest(key: bytes, namespace: str, source_key: str) -> str:
    return hmac.new(key, f"{namespace}:{source_key}".encode("utf-8"), hashlib.sha256).hexdigest()
