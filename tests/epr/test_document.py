from __future__ import annotations

import dataclasses
import json

import pytest

import rcp.epr
from rcp.epr.document import DocumentAuthor, DocumentPatient, SignedDocument
from tests.epr.samples import sample_document


def test_public_surface() -> None:
    assert set(rcp.epr.__all__) >= {"SignedDocument", "enqueue", "run_worker", "deliveries_for", "retry"}
    for name in rcp.epr.__all__:
        assert hasattr(rcp.epr, name)


def test_json_round_trip_is_exact() -> None:
    document = sample_document(version=2)
    assert SignedDocument.from_json(json.loads(json.dumps(document.to_json()))) == document
    assert "pdf" not in document.metadata_json()


def test_hash_must_match_the_pdf() -> None:
    document = sample_document()
    with pytest.raises(ValueError, match="sha256"):
        dataclasses.replace(document, pdf=document.pdf + b"tampered")


def test_versions_and_replaces_go_together() -> None:
    document = sample_document()
    with pytest.raises(ValueError, match="replaces"):
        dataclasses.replace(document, version=2)
    with pytest.raises(ValueError, match="replaces"):
        dataclasses.replace(document, replaces="1.2.3")


def test_patient_and_author_values_check_themselves() -> None:
    with pytest.raises(ValueError, match="INS-NIR") as caught:
        DocumentPatient(ins="12345", identity_status="qualified", family_name="X")
    assert "12345" not in str(caught.value)  # never echo patient data
    assert DocumentPatient(ins="2790321518989" + "12", identity_status="qualified", family_name="X").ins.endswith("12")
    assert DocumentPatient(ins="279032A15189812", identity_status="qualified", family_name="X")
    with pytest.raises(ValueError, match="ipp_assigner"):
        DocumentPatient(ins="279035121518989", identity_status="qualified", ipp="1", family_name="X")
    with pytest.raises(ValueError, match="sex"):
        DocumentPatient(ins="279035121518989", identity_status="qualified", family_name="X", sex="F")
    # The INS leaves only for a qualified identity; without it, the IPP names the patient.
    with pytest.raises(ValueError, match="qualified"):
        DocumentPatient(ins="279035121518989", identity_status="validated", family_name="X")
    with pytest.raises(ValueError, match="IPP"):
        DocumentPatient(identity_status="validated", family_name="X")
    with pytest.raises(ValueError, match="ins_oid"):
        DocumentPatient(ins="279035121518989", ins_oid="1.2.3", identity_status="qualified", family_name="X")
    assert DocumentPatient(ipp="1", ipp_assigner="CHU", family_name="X").identity_status == "provisional"
    with pytest.raises(ValueError, match="RPPS"):
        DocumentAuthor(family_name="A", id_kind="RPPS", id_value="123")
    assert DocumentAuthor(family_name="A", id_kind="ADELI", id_value="123456789").national_id == "0123456789"
    assert DocumentAuthor(family_name="A", id_kind="RPPS", id_value="10003334827").national_id == "810003334827"
