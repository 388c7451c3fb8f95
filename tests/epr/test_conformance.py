"""What the French systems check in our messages: HL7 v2.5 MDM (T02, T10, T11) parsed back STRICTLY by hl7apy
(only OBX-5's encapsulated-data length relaxed: tests/fixtures/hl7_strict.py), and every FHIR Bundle validated by
fhir.resources, with the CI-SIS metadata (ANS "Transmission de documents CDA en HL7 v2", IHE MHD, FR Core)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import hl7
import pytest
from fhir.resources.R4B.bundle import Bundle

from rcp.epr.fhir import ENCOUNTER_OID, provide_document_bundle, withdrawal_bundle
from rcp.epr.hl7 import hl7_ts, mdm_message
from rcp.epr.receivers import Verdict, open_receiver
from tests.epr.samples import FINESS, full_document, sample_cda, withdrawn
from tests.fixtures.hl7_strict import encapsulated, strict_parse, timestamps_have_offsets


def _mdm(document: object, control_id: str = "K1") -> str:
    return mdm_message(document, control_id=control_id, encounter_oid=ENCOUNTER_OID,  # type: ignore[arg-type]
                       now=datetime(2026, 11, 23, 15, 31, tzinfo=UTC))


def test_timestamps_are_paris_time_with_their_offset() -> None:
    assert hl7_ts(datetime(2026, 11, 23, 15, 30, tzinfo=UTC)) == "20261123163000+0100"
    assert hl7_ts(datetime(2026, 6, 30, 22, 30, tzinfo=UTC)) == "20260701003000+0200"


def test_t02_carries_cda_and_pdf_and_validates_strictly() -> None:
    document = full_document(pdf_size=300_000)  # far beyond ED.5's 65,536 characters in base64
    text = _mdm(document)
    parsed = strict_parse(text)
    assert timestamps_have_offsets(text) == []
    msh = parsed.msh
    assert msh.msh_4.value == FINESS
    assert msh.msh_7.value == "20261123163100+0100"
    assert msh.msh_9.value == "MDM^T02^MDM_T02"
    assert (msh.msh_17.value, msh.msh_18.value) == ("FRA", "UNICODE UTF-8")
    assert msh.msh_21.value == "2.1^CISIS_CDA_HL7_V2"
    assert parsed.evn.evn_2.value == "20261123163000+0100"
    # The IPP with its assigning authority whole, and its OID (CX-4 NAME&OID&ISO).
    assert [r.value for r in parsed.pid.pid_3][-1] == "0012345^^^CHU-TEST&1.2.250.1.999.2&ISO^PI"
    assert parsed.pv1.pv1_19.value == f"12.34^^^RCP&{ENCOUNTER_OID}&ISO^VN"
    txa = parsed.txa
    assert txa.txa_5.value.startswith("810003334827^MARTIN^Claire^^^DR^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO")
    assert txa.txa_22.value.endswith("^RPPS^^20261123163000+0100")  # PPN.15: when the signer authenticated
    assert (txa.txa_17.value, txa.txa_19.value) == ("LA", "AV")
    # OBX 1 the CDA (ANS: ^TEXT^XML^Base64^), OBX 2 the PDF.
    assert encapsulated(text) == [("XML", sample_cda()), ("PDF", document.pdf)]
    tree = hl7.parse(text)
    assert str(tree.extract_field("OBX", 1, 5, 1, 2)) == "TEXT"


def test_t10_names_its_parent_and_validates_strictly() -> None:
    first = full_document()
    second = full_document(version=2, set_root=first.set_id)
    text = _mdm(second, "K10")
    parsed = strict_parse(text)
    assert parsed.msh.msh_9.value == "MDM^T10^MDM_T02"
    assert parsed.txa.txa_13.value == f"{first.unique_id}^RCP"
    assert str(hl7.parse(text).extract_field("OBX", 1, 11)) == "C"
    assert timestamps_have_offsets(text) == []


def test_t11_withdraws_the_version_and_validates_strictly() -> None:
    document = withdrawn(full_document())
    text = _mdm(document, "K11")
    parsed = strict_parse(text)
    assert parsed.msh.msh_9.value == "MDM^T11^MDM_T01"
    assert parsed.msh.msh_4.value == FINESS
    assert parsed.evn.evn_1.value == "T11"
    assert parsed.evn.evn_2.value == "20261124101500+0100"  # the withdrawal, not the signature
    assert parsed.evn.evn_5.value.startswith("810003334827^MARTIN")  # who withdrew it
    assert parsed.txa.txa_12.value == f"{document.unique_id}^RCP"
    assert parsed.txa.txa_19.value == "CA"
    assert "OBX" not in text and timestamps_have_offsets(text) == []


def test_a_patient_without_a_qualified_ins_goes_by_the_ipp() -> None:
    text = _mdm(full_document(ins=""))
    parsed = strict_parse(text)
    assert [r.value for r in parsed.pid.pid_3] == ["0012345^^^CHU-TEST&1.2.250.1.999.2&ISO^PI"]
    assert [r.value for r in parsed.pid.pid_32] == ["VALI"]


def test_a_long_authority_name_is_never_cut() -> None:
    """HD.1 is IS(20): a longer name is left out and the OID names the authority (a cut name could be another's)."""
    name = "Centre Hospitalier Universitaire d'Angers"
    parsed = strict_parse(_mdm(full_document(ipp_assigner=name)))
    assert [r.value for r in parsed.pid.pid_3][-1] == "0012345^^^&1.2.250.1.999.2&ISO^PI"
    bundle = provide_document_bundle(full_document(ipp_assigner=name), idempotency_key="K")
    docref = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    source = docref["contained"][0]
    assert {i.get("assigner", {}).get("display") for i in source["identifier"]} >= {name}


def _docref(bundle: dict) -> dict:  # type: ignore[type-arg]
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")


@pytest.mark.parametrize("version", [1, 2])
def test_mhd_bundle_has_the_ci_sis_metadata_and_both_contents(version: int) -> None:
    first = full_document()
    document = first if version == 1 else full_document(version=2, set_root=first.set_id)
    bundle = provide_document_bundle(document, idempotency_key="K")
    Bundle.model_validate(bundle)
    docref = _docref(bundle)
    assert docref["category"][0]["coding"][0]["code"] == "11"
    assert docref["context"]["facilityType"]["coding"][0] == {"system": "urn:oid:1.2.250.1.71.4.2.4",
                                                              "code": "SA01"}
    assert docref["context"]["practiceSetting"]["coding"][0]["code"] == "ETABLISSEMENT"
    assert docref["context"]["related"] == [{"identifier": {"system": "urn:ietf:rfc:3986",
                                                            "value": f"urn:oid:{document.set_id}"}}]
    assert docref["context"]["encounter"][0]["identifier"] == {"system": f"urn:oid:{ENCOUNTER_OID}",
                                                               "value": "12.34"}
    assert docref["date"] == "2026-11-23T16:30:00+01:00" and bundle["timestamp"].endswith("+01:00")
    # The establishment authors and keeps the document (FR Core Organization, FINESS).
    organisation = next(c for c in docref["contained"] if c["resourceType"] == "Organization")
    assert {i["value"] for i in organisation["identifier"]} == {FINESS, "1" + FINESS}
    assert {"reference": "#author-organisation", "type": "Organization"} in docref["author"]
    patient = next(c for c in docref["contained"] if c["resourceType"] == "Patient")
    assert patient["meta"]["profile"] == ["https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins"]
    # Two contents: the CDA with the FRCP format code, the PDF; each Binary with an absolute urn:uuid fullUrl.
    formats = [(c["attachment"]["contentType"], c["format"]["code"]) for c in docref["content"]]
    assert formats == [("text/xml", "urn:asip:ci-sis:frcp:2011"),
                       ("application/pdf", "urn:ihe:iti:xds:2017:mimeTypeSufficient")]
    binaries = {e["fullUrl"]: e for e in bundle["entry"] if e["resource"]["resourceType"] == "Binary"}
    for content, data in zip(docref["content"], (document.cda, document.pdf), strict=True):
        url = content["attachment"]["url"]
        assert url.startswith("urn:uuid:") and base64.b64decode(binaries[url]["resource"]["data"]) == data
    if version == 2:
        target = docref["relatesTo"][0]["target"]["identifier"]
        assert target == {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{first.unique_id}"}


def test_withdrawal_bundle_marks_the_document_entered_in_error() -> None:
    document = withdrawn(full_document())
    bundle = withdrawal_bundle(document, idempotency_key="W")
    Bundle.model_validate(bundle)
    [entry] = bundle["entry"]
    assert entry["request"] == {"method": "PATCH", "url": "DocumentReference?identifier=urn:ietf:rfc:3986|"
                                                          f"urn:oid:{document.unique_id}"}
    parts = {p["name"]: p for p in entry["resource"]["parameter"][0]["part"]}
    assert parts["value"]["valueCode"] == "entered-in-error"
    assert entry["fullUrl"].startswith("urn:uuid:") and bundle["timestamp"] == "2026-11-24T10:15:00+01:00"
    with pytest.raises(ValueError, match="withdrawal"):
        withdrawal_bundle(full_document(), idempotency_key="W")


async def test_file_drop_writes_the_cda_and_the_withdrawal(tmp_path: Path) -> None:
    drop = open_receiver(f"file://{tmp_path}")
    document = full_document()
    assert (await drop.deliver(document, idempotency_key="K")).verdict is Verdict.delivered
    folder = tmp_path / document.unique_id
    assert (folder / "document.xml").read_bytes() == sample_cda()
    assert (folder / "document.pdf").read_bytes() == document.pdf
    metadata = json.loads((folder / "document.json").read_text())
    assert metadata["cda"] == "document.xml" and metadata["organisation"]["finess"] == FINESS
    for _ in range(2):  # a resend writes nothing more
        outcome = await drop.deliver(withdrawn(document), idempotency_key="W")
        assert outcome.verdict is Verdict.delivered
    note = json.loads((tmp_path / f"{document.unique_id}.entered-in-error.json").read_text())
    assert note["status"] == "entered-in-error" and note["withdrawal"]["reason"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([document.unique_id,
                                                                 f"{document.unique_id}.entered-in-error.json"])


def test_a_custodian_other_than_the_establishment_keeps_the_document() -> None:
    document = full_document()
    assert document.organisation is not None
    keeper = replace(document, organisation=replace(document.organisation, custodian_finess="750712184",
                                                    custodian_name="GCS e-santé"))
    docref = _docref(provide_document_bundle(keeper, idempotency_key="K"))
    assert docref["custodian"] == {"reference": "#custodian-organisation", "type": "Organization"}
    held = next(c for c in docref["contained"] if c["id"] == "custodian-organisation")
    assert {i["value"] for i in held["identifier"]} == {"750712184", "1750712184"}
    assert _docref(provide_document_bundle(document, idempotency_key="K"))["custodian"]["reference"] == \
        "#author-organisation"
