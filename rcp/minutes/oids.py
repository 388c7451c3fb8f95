"""Stable OIDs of the fiche documents: the document set per case, the document per signed version, its withdrawal.

Derived from stable inputs (``2.25.<uuid>`` form, DICOM PS3.5 B.2 / ISO/IEC 9834-8), so rebuilding a document
years later gives the same ids, a correction's ``replaces`` points at the version it corrects, and every copy of
a version (PDF, CDA ``id``/``setId``, HL7 TXA-12, FHIR masterIdentifier) names it alike. Its own module because
both the CDA writer (``rcp.minutes.cda``) and the EPR delivery (``rcp.minutes.delivery``, which carries the CDA)
need them.

    >>> withdrawal_id("2.25.1").startswith("2.25.")
    True
"""

from __future__ import annotations

import uuid

from rcp.minutes.fiche import Fiche
from rcp.minutes.versions import SignedVersion

__all__ = ["document_ids", "withdrawal_id"]


def _oid(*parts: str) -> str:
    """A ``2.25`` OID from a name-based UUID (RFC 4122 version 5, ISO/IEC 9834-8): the same inputs, the same OID."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '/'.join(parts)).int}"


def document_ids(fiche: Fiche, version: SignedVersion) -> tuple[str, str]:
    """(set id, unique id) of a case's fiche document and of one of its versions.

    The set id names the case across its versions (and, with the patient and meeting in it, does not collide with
    another installation's case of the same number); the unique id adds the version's content hash.
    """
    p = fiche.patient
    case = ("rcp-fiche", str(fiche.case_id), str(fiche.meeting_id), fiche.meeting_date.isoformat(), p.ins,
            p.local_id, p.local_id_issuer)
    return _oid(*case), _oid(*case, str(version.number), version.sha256)


def withdrawal_id(unique_id: str) -> str:
    """The OID of the withdrawal of the version ``unique_id``: one withdrawal per version, so derived from it."""
    return _oid("rcp-withdrawal", unique_id)
