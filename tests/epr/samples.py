"""Sample signed documents for the EPR tests (test INS identities, fake practitioners)."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from datetime import UTC, date, datetime

from rcp.epr.document import (
    INS_NIR_TEST_OID,
    DocumentAuthor,
    DocumentOrganisation,
    DocumentPatient,
    DocumentWithdrawal,
    SignedDocument,
)

__all__ = ["FINESS", "full_document", "sample_cda", "sample_document", "sample_pdf", "withdrawn"]

#: A FINESS of the form the ANS examples use (test value).
FINESS = "490000031"


def sample_cda() -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3">'
            b"<title>Fiche RCP</title></ClinicalDocument>\n")


def sample_pdf(size: int = 4000) -> bytes:
    body = b"%PDF-1.4\n% RCP test document\n" + b"0" * max(0, size - 40) + b"\n%%EOF\n"
    return body


def sample_document(*, version: int = 1, set_root: str | None = None, replaces: str | None = None,
                    pdf_size: int = 4000, ins: str = "279035121518989",
                    ipp_assigner: str = "CHU-TEST") -> SignedDocument:
    root = set_root or f"2.25.{uuid.uuid4().int}"
    pdf = sample_pdf(pdf_size)
    return SignedDocument(
        set_id=root,
        version=version,
        unique_id=f"{root}.{version}",
        replaces=(f"{root}.{version - 1}" if version > 1 else None) if replaces is None else replaces,
        title="RCP thoracique — 23/11/2026",
        status="amended" if version > 1 else "final",
        patient=DocumentPatient(
            ins=ins, ins_oid=INS_NIR_TEST_OID, identity_status="qualified" if ins else "validated", ipp="0012345",
            ipp_assigner=ipp_assigner,
            ipp_assigner_oid="1.2.250.1.999.2", family_name="DUPONT", given_names="Jeanne Marie",
            birth_date=date(1979, 3, 15), sex="female",
        ),
        authors=(
            DocumentAuthor(family_name="MARTIN", given_names="Claire", prefix="Dr", id_kind="RPPS", id_value="10003334827",
                           specialty="medical_oncologist", specialty_code="G15_10/SM36",
                           specialty_label="Oncologie médicale"),
            DocumentAuthor(family_name="N'GUYEN", given_names="Paul", specialty="surgeon"),
        ),
        board="RCP thoracique & ORL",
        meeting_date=date(2026, 11, 23),
        signed_at=datetime(2026, 11, 23, 15, 30, tzinfo=UTC),
        pdf=pdf,
        sha256=hashlib.sha256(pdf).hexdigest(),
    )


def full_document(**kwargs: object) -> SignedDocument:
    """A sample document as the service now sends it: with its establishment, encounter and CDA."""
    return dataclasses.replace(sample_document(**kwargs),  # type: ignore[arg-type]
                               organisation=DocumentOrganisation(finess=FINESS, name="CHU d'Angers"),
                               encounter_id="12.34", cda=sample_cda())


def withdrawn(document: SignedDocument, *, wrong_patient: bool = False) -> SignedDocument:
    """The same version withdrawn as entered in error by its second author."""
    return dataclasses.replace(document, status="entered-in-error", withdrawal=DocumentWithdrawal(
        withdrawal_id=document.unique_id + ".9", at=datetime(2026, 11, 24, 9, 15, tzinfo=UTC),
        reason="Fiche saisie sur le mauvais dossier", by=document.authors[0], wrong_patient=wrong_patient))
