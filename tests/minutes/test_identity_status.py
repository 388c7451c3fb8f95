"""What each identity status (RNIV) lets out of the service: the INS only for a qualified identity.

One table, one row per status: the DICOM KOS and Encapsulated PDF (Other Patient IDs), the fiche (its sections,
the PDF's reading order), HL7 MDM PID-3 / PID-32 and the FHIR MHD bundle (subject, the contained source Patient
and its FR Core identity-reliability extension). Real builders throughout (pydicom/highdicom, hl7apy STRICT,
fhir.resources), no mocks.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import hl7
import pytest

from rcp.epr.document import SignedDocument
from rcp.epr.fhir import IDENTITY_RELIABILITY_URL, provide_document_bundle
from rcp.epr.hl7 import mdm_message
from rcp.imaging.synthetic import SyntheticPatient, ct_series
from rcp.minutes.delivery import to_signed_document
from rcp.minutes.dicom import encapsulated_fiche, key_image_notes
from rcp.minutes.fiche import Fiche, Physician
from rcp.minutes.render import fiche_pdf, identity_document_label, sections
from rcp.minutes.versions import Draft, sign

INS = "279035121518989"
SIGNER = Physician(name="Dr Bruno Oncologue", specialty="medical_oncologist", user_id=2)
PATIENT = SyntheticPatient("IPP0042", "CHU-ANGERS", "Lefèvre", "Hélène-Françoise", date(1958, 3, 28), "F")

#: status, attributes -> (INS in DICOM / fiche / HL7 PID-3 / FHIR, PID-32 repetitions)
TABLE = [
    ("provisional", [], False, ["PROV"]),
    ("recovered", [], False, ["RECUP"]),
    ("validated", [], False, ["VALI"]),
    ("validated", ["homonym"], False, ["VALI", "HOMA"]),
    ("qualified", [], True, ["QUAL"]),
    ("qualified", ["homonym"], True, ["QUAL", "HOMA"]),
    # RNIV EXI SI 09: a doubtful or fictitious identity stays provisional.
    ("provisional", ["doubtful"], False, ["PROV", "DOUT"]),
    ("provisional", ["fictitious", "homonym"], False, ["PROV", "FICT", "HOMA"]),
]


@pytest.mark.parametrize(("status", "attributes", "ins_leaves", "pid32"), TABLE)
def test_the_ins_leaves_only_for_a_qualified_identity(content: Any, now: datetime, status: str,
                                                      attributes: list[str], ins_leaves: bool,
                                                      pid32: list[str]) -> None:
    series = ct_series(PATIENT, slices=2, rows=16, columns=16)
    base = content()
    patient = {**base["patient"], "local_id": "IPP0042", "local_id_issuer": "CHU-ANGERS",
               "local_id_issuer_oid": "1.2.250.1.999.49.1", "identity_status": status,
               "identity_attributes": attributes}
    checked = status in {"validated", "qualified"}  # on a document: the passport, checked that day
    if checked:
        patient.update(identity_document="passport", identity_date="2026-11-02")
    marks = [{"study_uid": str(series[0].StudyInstanceUID), "series_uid": str(series[0].SeriesInstanceUID),
              "sop_uid": str(series[0].SOPInstanceUID), "description": "Lésion"}]
    fiche = Fiche.from_content(content(patient=patient, key_images=marks,
                                       study_uids=[str(series[0].StudyInstanceUID)]))
    version = sign(fiche, draft=Draft(case_id=fiche.case_id), seen_revision=0, signer=SIGNER,
                   invited_ids={1, 2, 3, 4}, existing=[], at=now)
    fiche = version.fiche()
    assert fiche.patient.identity_status == status  # frozen in the signed content

    # DICOM: the KOS and the Encapsulated PDF carry the INS (Other Patient IDs) only when qualified.
    pdf = fiche_pdf(fiche, version)
    for ds in [*key_image_notes(fiche, version, series), encapsulated_fiche(pdf, fiche, version, series[0])]:
        others = [str(i.PatientID) for i in ds.get("OtherPatientIDsSequence") or []]
        assert (INS in others) is ins_leaves
        assert ds.PatientID == "IPP0042"  # the archive's own identifier stays

    # The fiche (PDF reading order): the INS row only when qualified; the status always.
    rows = [text for section in sections(fiche) for _, text in section.rows]
    assert (INS in rows) is ins_leaves
    assert "IPP0042 (CHU-ANGERS)" in rows
    # The status says from which document (in the page's language, as sections() writes it).
    assert any(identity_document_label("passport") in text for text in rows) is checked

    # HL7 MDM: PID-3 the INS (type INS) only when qualified, always the IPP with its authority OID; PID-32.
    document = to_signed_document(fiche, version, pdf)
    pid = hl7.parse(mdm_message(document, control_id="C1")).segment("PID")
    ids = str(pid(3)).split("~")
    assert any(i.startswith(INS) and i.endswith("^INS") for i in ids) is ins_leaves
    assert "IPP0042^^^CHU-ANGERS&1.2.250.1.999.49.1&ISO^PI" in ids
    assert str(pid(32)).split("~") == pid32

    # FHIR MHD: the subject is the INS when qualified, else the IPP in its hospital's OID; the source Patient
    # carries the identity-reliability extension.
    bundle = provide_document_bundle(document, idempotency_key="k1")
    docref = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    subject = docref["subject"]["identifier"]
    assert subject == ({"system": "urn:oid:1.2.250.1.213.1.4.10", "value": INS} if ins_leaves
                       else {"system": "urn:oid:1.2.250.1.999.49.1", "value": "IPP0042"})
    source = next(c for c in docref["contained"] if c["resourceType"] == "Patient")
    assert any(i["value"] == INS for i in source["identifier"]) is ins_leaves
    # FR Core: one extension; identityStatus the status, a comment per identity attribute (table 0445 codes).
    (reliability,) = [e for e in source["extension"] if e["url"] == IDENTITY_RELIABILITY_URL]
    status = [x["valueCoding"]["code"] for x in reliability["extension"] if x["url"] == "identityStatus"]
    comments = [x["valueCodeableConcept"]["coding"][0]["code"] for x in reliability["extension"]
                if x["url"] == "comment"]
    assert [*status, *comments] == pid32
    modes = [x["valueCoding"]["code"] for x in reliability["extension"] if x["url"] == "validationMode"]
    dates = [x["valueDate"] for x in reliability["extension"] if x["url"] == "validationDate"]
    assert (modes, dates) == ((["PA"], ["2026-11-02"]) if checked else ([], []))
    # The queued document (the outbox keeps it as JSON) reads back with the same identity.
    assert SignedDocument.from_json(document.to_json()).patient == document.patient
