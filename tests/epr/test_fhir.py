from __future__ import annotations

import base64
import copy
import hashlib

import pytest
from fhir.resources.R4B.bundle import Bundle

from rcp.epr.fhir import binary_id, check_provide_bundle, outcome_summary, provide_document_bundle
from tests.epr.samples import sample_document


def _by_type(bundle: dict, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_first_version_is_an_iti65_transaction_that_validates() -> None:
    document = sample_document()
    bundle = provide_document_bundle(document, idempotency_key="ABC")
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "transaction"
    (docref_entry,) = _by_type(bundle, "DocumentReference")
    docref = docref_entry["resource"]
    assert docref["type"]["coding"][0] == {
        "system": "http://loinc.org", "code": "34794-8",
        "display": "Compte rendu de réunion de concertation pluridisciplinaire"}
    assert docref["status"] == "current" and docref["docStatus"] == "final"
    assert "relatesTo" not in docref
    assert docref["masterIdentifier"]["value"] == f"urn:oid:{document.unique_id}"
    assert docref_entry["request"]["ifNoneExist"] == f"identifier=urn:ietf:rfc:3986|urn:oid:{document.unique_id}"
    # The patient: by INS (conditional reference + identifier), the IPP in the contained source patient.
    assert docref["subject"]["reference"] == "Patient?identifier=urn:oid:1.2.250.1.213.1.4.10|279035121518989"
    source = docref["contained"][0]
    assert {i["value"] for i in source["identifier"]} == {"279035121518989", "0012345"}
    assert _by_type(bundle, "Patient") == []
    # The PDF: a Binary written with PUT to an id derived from the unique id, hashed as FHIR R4 asks (SHA-1).
    (binary,) = _by_type(bundle, "Binary")
    assert binary["request"] == {"method": "PUT", "url": f"Binary/{binary_id(document.unique_id)}"}
    assert base64.b64decode(binary["resource"]["data"]) == document.pdf
    attachment = docref["content"][0]["attachment"]
    assert attachment["url"] == binary["fullUrl"]
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(document.pdf).digest()).decode()
    # Authors: with an RPPS -> conditional create by IdNatPS; without -> contained.
    (practitioner,) = _by_type(bundle, "Practitioner")
    assert practitioner["request"]["ifNoneExist"] == "identifier=urn:oid:1.2.250.1.71.4.2.1|810003334827"
    assert [a["reference"] for a in docref["author"]] == [practitioner["fullUrl"], "#author-2"]
    (submission,) = _by_type(bundle, "List")
    assert submission["resource"]["code"]["coding"][0]["code"] == "submissionset"
    assert submission["resource"]["entry"][0]["item"]["reference"] == docref_entry["fullUrl"]


def test_corrected_version_replaces_and_supersedes_the_previous() -> None:
    first = sample_document()
    second = sample_document(version=2, set_root=first.set_id)
    bundle = provide_document_bundle(second, idempotency_key="DEF")
    docref = _by_type(bundle, "DocumentReference")[0]["resource"]
    assert docref["docStatus"] == "amended"
    (relates,) = docref["relatesTo"]
    assert relates["code"] == "replaces"
    assert relates["target"]["identifier"]["value"] == f"urn:oid:{first.unique_id}"
    (patch,) = _by_type(bundle, "Parameters")
    assert patch["request"] == {"method": "PATCH", "url": relates["target"]["reference"]}
    operation = {p["name"]: p for p in patch["resource"]["parameter"][0]["part"]}
    assert operation["value"]["valueCode"] == "superseded"


def test_the_same_version_builds_the_same_resources() -> None:
    document = sample_document()
    one = provide_document_bundle(document, idempotency_key="K1")
    two = provide_document_bundle(document, idempotency_key="K1")
    assert one == two


def test_code_checks_catch_what_the_models_do_not() -> None:
    bundle = provide_document_bundle(sample_document(), idempotency_key="K")
    wrong = copy.deepcopy(bundle)
    _by_type(wrong, "DocumentReference")[0]["resource"]["type"]["coding"][0]["code"] = "11488-4"
    Bundle.model_validate(wrong)  # the model accepts any code ...
    with pytest.raises(ValueError, match="34794-8"):  # ... our check does not
        check_provide_bundle(wrong)
    unconditional = copy.deepcopy(bundle)
    del _by_type(unconditional, "DocumentReference")[0]["request"]["ifNoneExist"]
    with pytest.raises(ValueError, match="ifNoneExist"):
        check_provide_bundle(unconditional)


def test_operation_outcome_summary() -> None:
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "business-rule", "diagnostics": "Patient not found"}]}
    assert outcome_summary(body) == "error/business-rule: Patient not found"
    assert outcome_summary(b"<html>Bad gateway</html>") == "<html>Bad gateway</html>"
