"""Staging as the oncologist wrote it (rcp.minutes.staging): real-world TNM strings, refusals naming the part,
the edition required at signature, the other classifications, and the round trip into the fiche page, the PDF
and the EPR messages (HL7 MDM OBX, FHIR). Pure: no server."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

import hl7
import pypdf
import pytest

from rcp import i18n
from rcp.epr.document import SignedDocument
from rcp.epr.fhir import provide_document_bundle
from rcp.epr.hl7 import mdm_message
from rcp.errors import Invalid
from rcp.minutes.delivery import to_signed_document
from rcp.minutes.fiche import Fiche, Physician, parse_draft_field
from rcp.minutes.render import fiche_html, fiche_pdf
from rcp.minutes.staging import OtherStage, StagingError, Tnm, parse_diagnosis_date
from rcp.minutes.versions import Draft, sign

Make = Callable[..., dict[str, Any]]
#: The account that signs: an attendee of the fiche (tests/minutes/conftest.py), user 2.
SIGNER = Physician(name="Dr Bruno Oncologue", specialty="medical_oncologist", user_id=2)

#: (as written, prefix, T, N, M, label, pathological). Strings from real RCP agendas and pathology reports.
PARSED = [
    ("ypT0N0M0", "yp", "T0", "N0", "M0", "ypT0 N0 M0", True),
    ("cT2aN1M0", "c", "T2a", "N1", "M0", "cT2a N1 M0", False),
    # No M written: M stays not stated (never M0, never the MX UICC removed in the 7th edition).
    ("rpT1 N0", "rp", "T1", "N0", "", "rpT1 N0", True),
    ("pT3N1bM0", "p", "T3", "N1b", "M0", "pT3 N1b M0", True),
    ("cT1miN0M0", "c", "T1mi", "N0", "M0", "cT1mi N0 M0", False),
    ("pTisN0M0", "p", "Tis", "N0", "M0", "pTis N0 M0", True),
    ("ycT2N0M0", "yc", "T2", "N0", "M0", "ycT2 N0 M0", False),
    ("aT2N0M0", "a", "T2", "N0", "M0", "aT2 N0 M0", True),
    ("YPT0N0M0", "yp", "T0", "N0", "M0", "ypT0 N0 M0", True),
    ("ypt0 n0 m0", "yp", "T0", "N0", "M0", "ypT0 N0 M0", True),
    ("  cT2a   N0  M0 ", "c", "T2a", "N0", "M0", "cT2a N0 M0", False),
    ("pT1bN0(sn)M0", "p", "T1b", "N0(sn)", "M0", "pT1b N0(sn) M0", True),
    ("pT1c N0sn", "p", "T1c", "N0(sn)", "", "pT1c N0(sn)", True),
    ("T1cN0M0", "", "T1c", "N0", "M0", "T1c N0 M0", False),
    ("cT4bN3cM1c", "c", "T4b", "N3c", "M1c", "cT4b N3c M1c", False),
    ("pTis(DCIS) N0", "p", "Tis(DCIS)", "N0", "", "pTis(DCIS) N0", True),
    ("cT2(m) N1 M1(pul)", "c", "T2(m)", "N1", "M1(PUL)", "cT2(m) N1 M1(PUL)", False),
    ("pTaN0M0", "p", "Ta", "N0", "M0", "pTa N0 M0", True),
    ("cTXN1mi", "c", "TX", "N1mi", "", "cTX N1mi", False),
    ("pT1a1 N0", "p", "T1a1", "N0", "", "pT1a1 N0", True),
]


@pytest.mark.parametrize(("text", "prefix", "t", "n", "m", "label", "pathological"), PARSED)
def test_real_world_strings(text: str, prefix: str, t: str, n: str, m: str, label: str, pathological: bool) -> None:
    tnm = Tnm.from_text(text)
    assert (tnm.prefix, tnm.t, tnm.n, tnm.m) == (prefix, t, n, m)
    assert tnm.label() == label
    assert tnm.pathological is pathological
    assert tnm.edition == "" and tnm.edition_to_confirm  # never defaulted


def test_per_category_prefixes_are_kept_where_they_differ() -> None:
    # Pathology reports: pT and pN, with the clinical M (there is no pM0).
    mixed = Tnm.from_text("pT3 pN1b cM0")
    assert (mixed.prefix, mixed.n_prefix, mixed.m_prefix, mixed.label()) == ("p", "", "c", "pT3 N1b cM0")
    clinical_n = Tnm.from_text("cT2 pN1 M0")
    assert (clinical_n.pathological, clinical_n.n_prefix, clinical_n.label()) == (False, "p", "cT2 pN1 M0")
    assert Tnm.from_text("ypT0 ypN0 M0").label() == "ypT0 N0 M0"
    assert Tnm.from_text("T2pN1M0").label() == "T2 pN1 M0"


def test_the_edition_written_after_the_categories() -> None:
    assert Tnm.from_text("ypT0 N0 M0 (TNM 8th ed.)").edition == "8"
    assert Tnm.from_text("cT2N0M0 UICC 7").edition == "7"
    assert Tnm.from_text("cT2N0M0 TNM8").edition == "8"
    # What display() writes reads back as the same classification.
    tnm = Tnm.from_json({"text": "ypT0N0M0", "edition": "8"})
    again = Tnm.from_text(tnm.display(str))
    assert again == tnm
    assert tnm.display(str) == "ypT0 N0 M0 (TNM 8th ed.)"


#: (as written, the part named, a word of the message)
REFUSED = [
    ("T9N0M0", "t", "T category"),
    ("cT5 N0 M0", "t", "T category"),
    ("cT1eN0M0", "t", "T category"),
    ("cT2N4M0", "n", "N category"),
    ("cT2N1dM0", "n", "N category"),
    ("cT2N0M0b", "m", "M category"),
    ("cT2N0M2", "m", "M category"),
    ("cT2N0MX", "m", "MX"),
    ("pT2N0 pM0", "m", "pM0"),
    ("N1M0", "t", "T category first"),
    ("xT2N0M0", "text", "prefixes"),
    ("pyT2N0M0", "prefix", "prefix"),
    ("yaT2N0M0", "prefix", "prefix"),
    ("stade avancé", "text", "TNM classification"),
    ("cT2 yN1 M0", "n", "whole classification"),
    ("cT2 N0 N1", "n", "twice"),
    ("cT2 M0 N1", "n", "order"),
    ("cT2 N0 M0 R0", "text", "descriptors"),
    ("cT2N0M0 UICC 9", "edition", "7 or 8"),
]


@pytest.mark.parametrize(("text", "part", "word"), REFUSED)
def test_refused_strings_name_the_part(text: str, part: str, word: str) -> None:
    with pytest.raises(StagingError) as exc:
        Tnm.from_text(text)
    assert exc.value.part == part
    assert word in str(exc.value)


def test_draft_field_errors_name_the_field() -> None:
    with pytest.raises(Invalid) as exc:
        parse_draft_field("clinical_tnm", {"text": "cT9N0M0", "edition": "8"})
    assert set(exc.value.fields) == {"clinical_tnm.t"}
    with pytest.raises(Invalid) as exc:
        parse_draft_field("pathological_tnm", {"prefix": "p", "t": "T2", "n": "N0", "m": "M0b", "edition": "8"})
    assert set(exc.value.fields) == {"pathological_tnm.m"}
    with pytest.raises(Invalid) as exc:
        parse_draft_field("clinical_tnm", {"text": "cT2N0M0", "edition": "9"})
    assert set(exc.value.fields) == {"clinical_tnm.edition"}
    with pytest.raises(Invalid) as exc:
        parse_draft_field("clinical_tnm", {"text": "cT2N0M0", "stage": "IIZ"})
    assert set(exc.value.fields) == {"clinical_tnm.stage"}
    # A ypT0 is a pathological classification: the clinical field refuses it instead of storing a cT0.
    with pytest.raises(Invalid) as exc:
        parse_draft_field("clinical_tnm", {"text": "ypT0N0M0", "edition": "8"})
    assert set(exc.value.fields) == {"clinical_tnm.prefix"}
    assert "pathological_tnm" in exc.value.fields["clinical_tnm.prefix"]
    # Messages name the rule, never echo what was typed.
    with pytest.raises(Invalid) as exc:
        parse_draft_field("clinical_tnm", {"text": "cTzebra N0", "edition": "8"})
    assert all("zebra" not in m for m in exc.value.fields.values())


def test_draft_field_keeps_prefix_edition_and_stage() -> None:
    tnm = parse_draft_field("pathological_tnm", {"text": "ypT0 N0 M0", "edition": "8", "stage": "0"})
    assert tnm.as_json() == {"prefix": "yp", "t": "T0", "n": "N0", "m": "M0", "edition": "8", "stage": "0"}
    # The stored form reads back to the same value.
    assert parse_draft_field("pathological_tnm", tnm.as_json()) == tnm
    # A draft may lack the edition: it is flagged, not guessed.
    draft = parse_draft_field("clinical_tnm", {"text": "cT2aN1M0"})
    assert draft.edition == "" and draft.edition_to_confirm
    assert parse_draft_field("clinical_tnm", {"text": "cT2aN1M0", "stage": "stade iiia"}).stage == "IIIA"


def test_stored_before_prefixes_reads_as_the_field_said() -> None:
    # Signed fiches stored {"t", "n", "m", "edition"} under clinical_tnm / pathological_tnm: c and p, as shown then.
    old = parse_draft_field("pathological_tnm", {"t": "T1b", "n": "N0", "m": "M0", "edition": "8", "stage": ""})
    assert old.label() == "pT1b N0 M0"
    assert parse_draft_field("clinical_tnm", {"t": "T2", "n": "N0", "m": "M0", "edition": "7"}).label() == "cT2 N0 M0"


def test_fiches_signed_under_the_former_rule_still_read() -> None:
    # Signed content is never rewritten: what the former check accepted (MX, edition 6, "(12)") still reads, as then.
    old = parse_draft_field("clinical_tnm", {"t": "T2(12)", "n": "N2mi", "m": "MX", "edition": "6", "stage": ""})
    assert old.label() == "cT2(12) N2mi MX" and old.display(str) == "cT2(12) N2mi MX (TNM 6)"
    # The new forms apply the UICC 8th edition rules.
    with pytest.raises(Invalid) as exc:
        parse_draft_field("clinical_tnm", {"prefix": "c", "t": "T2", "n": "N0", "m": "MX", "edition": "8"})
    assert set(exc.value.fields) == {"clinical_tnm.m"}
    with pytest.raises(Invalid) as exc:
        parse_draft_field("clinical_tnm", {"t": "T9", "n": "N0", "m": "M0", "edition": "8"})
    assert set(exc.value.fields) == {"clinical_tnm.t"}


def test_signature_needs_the_edition(content: Make) -> None:
    fiche = Fiche.from_content(content(clinical_tnm={"text": "ycT2N0M0"},
                                       pathological_tnm={"text": "ypT0N0M0", "edition": "8"}))
    with pytest.raises(Invalid) as exc:
        fiche.check_complete()
    assert set(exc.value.fields) == {"clinical_tnm.edition"}
    assert "7 or 8" in exc.value.fields["clinical_tnm.edition"]
    signed = Fiche.from_content(content(clinical_tnm={"text": "ycT2N0M0", "edition": "7"},
                                        pathological_tnm={"text": "ypT0N0M0", "edition": "8"}))
    signed.check_complete()
    stored = signed.to_content()
    assert stored["clinical_tnm"]["prefix"] == "yc" and stored["pathological_tnm"]["prefix"] == "yp"
    assert Fiche.from_content(stored) == signed


def test_diagnosis_date_laterality_and_other_classifications(content: Make) -> None:
    fiche = Fiche.from_content(content(
        diagnosis_date="2026-09", laterality="right",
        other_classifications=[{"system": "figo", "value": "ib2"}, {"system": "gleason", "value": "3 + 4"},
                               {"system": "ann_arbor", "value": "iiibs"}, {"system": "isup", "value": "2"}],
    ))
    assert fiche.diagnosis_date == "2026-09" and fiche.laterality == "right"
    assert [o.label() for o in fiche.other_classifications] == ["FIGO IB2", "Gleason 3+4=7", "Ann Arbor IIIBS",
                                                                "ISUP 2"]
    assert Fiche.from_content(fiche.to_content()) == fiche
    with pytest.raises(Invalid) as exc:
        Fiche.from_content(content(
            diagnosis_date="2026-13-01", laterality="up",
            other_classifications=[{"system": "figo", "value": "V"}, {"system": "dukes", "value": "B"},
                                   {"system": "gleason", "value": "3+4=8"}, {"system": "ann_arbor", "value": "IIAB"}],
        ))
    assert set(exc.value.fields) == {"diagnosis_date", "laterality", "other_classifications.0.value"}
    with pytest.raises(Invalid) as exc:
        parse_draft_field("other_classifications", [{"system": "rai", "value": "II"}, {"system": "dukes"}])
    assert set(exc.value.fields) == {"other_classifications.1.system"}
    for value in ("3+4=8", "6+1"):
        with pytest.raises(StagingError) as one:
            OtherStage.from_json({"system": "gleason", "value": value})
        assert one.value.part == "value"
    with pytest.raises(StagingError):
        OtherStage.from_json({"system": "ann_arbor", "value": "IIAB"})
    with pytest.raises(Invalid) as exc:
        Fiche.from_content(content(diagnosis_date="2027-01-05")).check_complete()
    assert set(exc.value.fields) == {"diagnosis_date"}


def test_diagnosis_date_forms() -> None:
    assert parse_diagnosis_date("2019-01-29") == "2019-01-29"
    assert parse_diagnosis_date("2019-01") == "2019-01"
    assert parse_diagnosis_date(None) == ""
    for bad in ("29/01/2019", "2019-02-30", "1850-01", 2019):
        with pytest.raises(StagingError):
            parse_diagnosis_date(bad)


# -- round trip: the fiche page, the PDF and the EPR messages show the staging as written ------------------------


def _signed_document(content: Make, now: datetime) -> tuple[Fiche, bytes, SignedDocument]:
    fiche = Fiche.from_content(content(
        clinical_tnm={"text": "ycT2 N1 M0", "edition": "8"},
        pathological_tnm={"text": "ypT0N0M0", "edition": "8", "stage": "0"},
        other_classifications=[{"system": "figo", "value": "IB2"}], diagnosis_date="2026-03-02", laterality="left",
    ))
    version = sign(fiche, draft=Draft(case_id=fiche.case_id), seen_revision=0, signer=SIGNER,
                   invited_ids={1, 2, 3, 4}, existing=[], at=now)
    pdf = fiche_pdf(fiche, version, translate=i18n.translations("en").ugettext)
    return fiche, pdf, to_signed_document(fiche, version, pdf)


def test_the_pdf_and_the_page_show_the_prefix_as_written(content: Make, now: datetime) -> None:
    fiche, pdf, _document = _signed_document(content, now)
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    for fragment in ("ycT2 N1 M0 (TNM 8th ed.)", "ypT0 N0 M0 (TNM 8th ed.), stage 0", "FIGO IB2", "Left"):
        assert fragment in text, fragment
    assert "cT0" not in text and "pT0" not in text.replace("ypT0", "")
    page = fiche_html(fiche)  # the default locale, French
    assert "ypT0 N0 M0 (TNM 8e éd.), stade 0" in page and "Gauche" in page and "FIGO IB2" in page
    assert "data-edition-to-confirm" not in page


def test_the_epr_messages_carry_the_staging_as_written(content: Make, now: datetime) -> None:
    _fiche, _pdf, document = _signed_document(content, now)
    # The outbox stores the document as JSON; the worker rebuilds it from there.
    document = SignedDocument.from_json(document.to_json())
    message = hl7.parse(mdm_message(document, control_id="staging-1"))
    observations = {str(obx(3)(1)(1)): str(obx(5)) for obx in message.segments("OBX")[1:]}
    assert observations == {"75620-5": "ycT2 N1 M0 (TNM 8th ed.)", "75621-3": "ypT0 N0 M0 (TNM 8th ed.), stage 0",
                            "21914-7": "FIGO IB2"}
    assert [str(obx(2)) for obx in message.segments("OBX")] == ["ED", "ST", "ST", "ST"]

    bundle = provide_document_bundle(document, idempotency_key="staging-1")
    docref = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    stagings = {o["code"]["coding"][0]["code"]: o for o in docref["contained"] if o["resourceType"] == "Observation"}
    assert stagings["75621-3"]["valueString"] == "ypT0 N0 M0 (TNM 8th ed.), stage 0"
    assert stagings["75621-3"]["method"]["text"] == "UICC TNM 8th edition"
    assert stagings["75620-5"]["valueString"] == "ycT2 N1 M0 (TNM 8th ed.)"
    related = {r.get("reference") for r in docref["context"]["related"]}
    assert {f"#{o['id']}" for o in stagings.values()} <= related
