"""The XDS codes the fiche travels with (rcp.epr.xds), as the MHD DocumentReference and the XDM package carry them."""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from lxml import etree

from rcp.epr.document import DocumentOrganisation, SignedDocument
from rcp.epr.fhir import check_provide_bundle, provide_document_bundle
from rcp.epr.xdm import METADATA_PATH, xdm_package
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


def test_the_xdm_metadata_names_the_establishment_and_its_sector() -> None:
    organisation = DocumentOrganisation(finess="690000880", name="CHU de Lyon", facility_type="SA03")
    document = replace(sample_document(), organisation=organisation, cda=b"<?xml version='1.0'?><ClinicalDocument/>")
    package = zipfile.ZipFile(io.BytesIO(xdm_package(document, document.cda, recipients=["x@medecin.mssante.fr"],
                                                     source_oid="1.2.3", at=datetime(2026, 12, 4, tzinfo=UTC))))
    metadata = etree.fromstring(package.read(METADATA_PATH))
    rim = {"rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"}
    facility = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
    entries = metadata.findall(".//rim:ExtrinsicObject", rim)
    assert len(entries) == 2
    for entry in entries:
        assert [c.get("nodeRepresentation") for c in entry.iterfind(
            f"rim:Classification[@classificationScheme='{facility}']", rim)] == ["SA03"]
        institutions = [v.text for v in entry.iterfind(
            ".//rim:Slot[@name='authorInstitution']/rim:ValueList/rim:Value", rim)]
        assert len(institutions) == len(document.authors) >= 1  # one per author
        assert set(institutions) == {"CHU de Lyon^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1690000880"}
    assert sorted(package.namelist()) == sorted(["README.TXT", "INDEX.HTM", METADATA_PATH,
                                                 "IHE_XDM/SUBSET01/DOC0001.XML", "IHE_XDM/SUBSET01/DOC0002.PDF"])
