"""Sample signed documents for the EPR tests (test INS identities, fake practitioners)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime

from rcp.epr.document import INS_NIR_TEST_OID, DocumentAuthor, DocumentPatient, SignedDocument

__all__ = ["sample_document", "sample_pdf"]


def sample_pdf(size: int = 4000) -> bytes:
    body = b"%PDF-1.4\n% RCP test document\n" + b"0" * max(0, size - 40) + b"\n%%EOF\n"
    return body


def sample_document(*, version: int = 1, set_root: str | None = None, replaces: str | None = None,
                    pdf_size: int = 4000, ins: str = "279035121518989") -> SignedDocument:
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
            ins=ins, ins_oid=INS_NIR_TEST_OID, identity_status="qualified", ipp="0012345", ipp_assigner="CHU-TEST",
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
