"""The XDS codes the fiche travels with (rcp.epr.xds), as the MHD DocumentReference carries them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from rcp.epr.document import SignedDocument
from rcp.epr.fhir import check_provide_bundle, provide_document_bundle
from tests.epr.samples import sample_document


def _labels(document: SignedDocument) -> list[tuple[str, str]]:
    bundle = provide_document_bundle(document, idempotency_key="XDS-LABELS-1")
    Bundle.model_validate(bundle)
    check_provide_bundle(bundle)
    [reference] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"]
    labels: list[dict[str, Any]] = reference["securityLabel"]
    return [(c["system"], c["code"]) for label in labels for c in label["coding"]]


def test_a_document_hidden_from_the_patient_is_labelled_invisible_patient() -> None:
    document = sample_document()
    normal = ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "N")
    assert _labels(document) == [normal]
    hidden = replace(document, hidden_from_patient=True)
    assert _labels(hidden) == [normal, ("urn:oid:1.2.250.1.213.1.1.4.13", "INVISIBLE_PATIENT")]
    # The option travels through the outbox's stored payload.
    assert SignedDocument.from_json(hidden.to_json()).hidden_from_patient
    assert not SignedDocument.from_json({k: v for k, v in document.to_json().items()
                                         if k != "hidden_from_patient"}).hidden_from_patient
