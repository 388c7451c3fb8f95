from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from rcp.errors import Conflict, Forbidden, Invalid
from rcp.minutes.fiche import Fiche, Physician
from rcp.minutes.versions import (
    AlreadySigned,
    Draft,
    FieldConflict,
    NotAllowedToSign,
    QuorumNotMet,
    StaleDraft,
    TreatmentNotCovered,
    amend,
    canonical_json,
    content_sha256,
    sign,
)

Make = Callable[..., dict[str, Any]]
#: The account that signs (as rcp.minutes.store.signer_account loads it): an attendee of the fiche, user 2.
SIGNER = Physician(name="Dr Bruno Oncologue", specialty="medical_oncologist", user_id=2)
INVITED = {1, 2, 3, 4}


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()
    assert content_sha256({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()
    assert canonical_json({"a": {"y": 1, "x": 2}}) == canonical_json(json.loads('{"a":{"x":2,"y":1}}'))


def test_field_edit_bumps_only_that_field(now: datetime) -> None:
    draft = Draft(case_id=1)
    assert draft.get("question").version == 0 and draft.revision == 0
    d1 = draft.edit("question", "Chirurgie ?", base_version=0, editor_id=7, at=now)
    d2 = d1.edit("clinical_summary", "Résumé", base_version=0, editor_id=8, at=now)
    assert d2.get("question").version == 1 and d2.get("question").editor_id == 7
    assert d2.get("clinical_summary").version == 1
    assert d2.revision == 2
    assert draft.revision == 0  # drafts are values: the old one is unchanged


def test_edit_from_an_old_version_is_a_visible_conflict(now: datetime) -> None:
    draft = Draft(case_id=1).edit("question", "A", base_version=0, editor_id=7, at=now)
    with pytest.raises(FieldConflict) as exc:
        draft.edit("question", "B", base_version=0, editor_id=8, at=now)
    assert exc.value.status == 409 and exc.value.field == "question"
    assert exc.value.current.value == "A" and exc.value.current.version == 1
    assert "question" in exc.value.fields
    # Same text from an old base is not a conflict.
    assert draft.edit("question", "A", base_version=0, editor_id=8, at=now) is draft


def test_edit_checks_values(now: datetime) -> None:
    with pytest.raises(Invalid):
        Draft(case_id=1).edit("performance_status", {"grade": 9}, base_version=0, editor_id=1, at=now)


def _signed(content: Make, now: datetime) -> tuple[Fiche, Draft]:
    draft = Draft(case_id=12).edit("question", "Q", base_version=0, editor_id=2, at=now)
    return Fiche.from_content(content()), draft


def test_sign_freezes_content_with_hash(content: Make, now: datetime) -> None:
    fiche, draft = _signed(content, now)
    version = sign(fiche, draft=draft, seen_revision=1, signer=SIGNER, invited_ids=INVITED, existing=[], at=now)
    assert version.number == 1 and version.replaces is None and version.signed_by == 2
    assert version.sha256 == hashlib.sha256(version.canonical).hexdigest()
    assert version.verify()
    with pytest.raises(TypeError):
        version.content["question"] = "changed"  # type: ignore[index]
    with pytest.raises(AttributeError):
        version.number = 2  # type: ignore[misc]
    assert version.fiche() == fiche


def test_sign_refusals(content: Make, now: datetime) -> None:
    fiche, draft = _signed(content, now)
    kwargs: dict[str, Any] = {"draft": draft, "seen_revision": 1, "invited_ids": INVITED, "existing": [], "at": now}
    with pytest.raises(NotAllowedToSign, match="invited"):
        sign(fiche, **{**kwargs, "invited_ids": {1, 3}}, signer=SIGNER)
    # A board secretary never signs, even invited and present; nor a physician absent from the discussion.
    secretary = Physician(name="Sophie Marchand", specialty="secretary", user_id=4)
    with pytest.raises(NotAllowedToSign, match="medical specialty"):
        sign(fiche, **{**kwargs, "invited_ids": {*INVITED, 4}}, signer=secretary)
    absent = Physician(name="Dr Paul Absent", specialty="surgeon", user_id=9)
    with pytest.raises(NotAllowedToSign, match="present"):
        sign(fiche, **{**kwargs, "invited_ids": {*INVITED, 9}}, signer=absent)
    # Any physician who was there signs, whoever the fiche names as responsible physician.
    surgeon = Physician(name="Dr Anne Chirurgienne", specialty="surgeon", user_id=1)
    by_surgeon = sign(fiche, **kwargs, signer=surgeon)
    assert (by_surgeon.signed_by, by_surgeon.signer) == (1, surgeon)
    with pytest.raises(StaleDraft):
        sign(fiche, **{**kwargs, "seen_revision": 0}, signer=SIGNER)
    no_quorum = content()
    no_quorum["attendees"] = no_quorum["attendees"][:2]
    with pytest.raises(QuorumNotMet) as exc:
        sign(Fiche.from_content(no_quorum), **kwargs, signer=SIGNER)
    assert "radiotherapist" in exc.value.message and exc.value.status == 409
    first = sign(fiche, **kwargs, signer=SIGNER)
    with pytest.raises(AlreadySigned):
        sign(fiche, **{**kwargs, "existing": [first]}, signer=SIGNER)
    assert issubclass(NotAllowedToSign, Forbidden) and issubclass(AlreadySigned, Conflict)


def test_incomplete_fiche_cannot_be_signed(content: Make, now: datetime) -> None:
    fiche = Fiche.from_content(content(patient_informed=False))
    with pytest.raises(Invalid) as exc:
        sign(fiche, draft=Draft(case_id=12), seen_revision=0, signer=SIGNER, invited_ids=INVITED, existing=[], at=now)
    assert "patient_informed" in exc.value.fields


def test_amend_makes_a_new_version_referencing_the_old(content: Make, now: datetime) -> None:
    fiche, draft = _signed(content, now)
    v1 = sign(fiche, draft=draft, seen_revision=1, signer=SIGNER, invited_ids=INVITED, existing=[], at=now)
    corrected = Fiche.from_content(content(question="Question corrigée ?"))
    later = now + timedelta(hours=1)
    with pytest.raises(Invalid):
        amend(corrected, replaces=v1, existing=[v1], reason=" ", signer=SIGNER, invited_ids=INVITED, at=later)
    with pytest.raises(Conflict, match="changes nothing"):
        amend(fiche, replaces=v1, existing=[v1], reason="typo", signer=SIGNER, invited_ids=INVITED, at=later)
    v2 = amend(corrected, replaces=v1, existing=[v1], reason="typo in the question", signer=SIGNER,
               invited_ids=INVITED, at=later)
    assert (v2.number, v2.replaces, v2.reason) == (2, 1, "typo in the question")
    assert v2.sha256 != v1.sha256 and v1.verify() and v2.verify()
    with pytest.raises(StaleDraft, match="latest"):
        amend(Fiche.from_content(content(question="x")), replaces=v1, existing=[v1, v2], reason="again",
              signer=SIGNER, invited_ids=INVITED, at=later)


#: A board that requires nothing: radiologist + pathologist + GP meet its count of three (issue 14).
_OPEN_BOARD = {"name": "RCP ouverte", "discussion_nature": {"code": "ORG-117", "system": "1.2.250.1.213.1.1.4.322"},
               "required_specialties": [], "minimum_specialties": 3}
_WEAK = [{"user_id": 2, "name": "Dr Bruno Radiologue", "specialty": "radiologist"},
         {"user_id": 5, "name": "Dr Paule Pathologiste", "specialty": "pathologist"},
         {"user_id": 6, "name": "Dr Gilles Généraliste", "specialty": "general_practitioner"}]
_RADIOLOGIST = Physician(name="Dr Bruno Radiologue", specialty="radiologist", user_id=2)
_NCIT = "2.16.840.1.113883.3.26.1.1"


def _weak_fiche(content: Make, proposal: dict[str, Any], attendees: list[dict[str, Any]] | None = None) -> Fiche:
    return Fiche.from_content(content(board=_OPEN_BOARD, attendees=attendees or _WEAK, proposal=proposal,
                                      responsible_physician={"name": "Dr Bruno Radiologue",
                                                             "specialty": "radiologist", "user_id": 2}))


def test_radiotherapy_without_a_radiotherapist_is_flagged_and_refused(content: Make, now: datetime) -> None:
    fiche = _weak_fiche(content, {"type": "radiotherapy", "treatments": [{"code": "C15313", "system": _NCIT}]})
    assert fiche.quorum().met  # the count is met...
    assert [(g.code, g.needs) for g in fiche.treatment_gaps()] == [("C15313", ("radiotherapist",))]
    with pytest.raises(TreatmentNotCovered) as exc:  # ...but the proposal is not valid
        sign(fiche, draft=Draft(case_id=12), seen_revision=0, signer=_RADIOLOGIST, invited_ids={2, 5, 6},
             existing=[], at=now)
    assert exc.value.status == 409 and exc.value.code == "treatment_specialty_missing"
    assert "radiothérapie (C15313) needs a radiation oncologist" in exc.value.message
    assert exc.value.fields == {"proposal.treatments": "C15313 needs radiotherapist"}


def test_each_treatment_of_a_combined_proposal_needs_its_specialty(content: Make, now: datetime) -> None:
    combined = {"type": "combined", "treatments": [{"code": "387713003", "system": "2.16.840.1.113883.6.96"},
                                                   {"code": "C15632", "system": _NCIT}]}
    surgeon = {"user_id": 7, "name": "Dr Anne Chirurgienne", "specialty": "surgeon"}
    fiche = _weak_fiche(content, combined, [*_WEAK, surgeon])
    assert [g.code for g in fiche.treatment_gaps()] == ["C15632"]  # chemotherapy without a medical oncologist
    with pytest.raises(TreatmentNotCovered, match="chimiothérapie"):
        sign(fiche, draft=Draft(case_id=12), seen_revision=0, signer=_RADIOLOGIST, invited_ids={2, 5, 6, 7},
             existing=[], at=now)
    # A proposal by type only (no detailed code) stands for its type's code: surgery needs the surgeon.
    assert [g.code for g in _weak_fiche(content, {"type": "surgery"}).treatment_gaps()] == ["387713003"]


def test_asking_for_the_missing_opinion_or_a_registered_case_signs(content: Make, now: datetime) -> None:
    ask = _weak_fiche(content, {"type": "further_investigations", "details": "Avis radiothérapeute à demander."})
    assert ask.treatment_gaps() == ()
    signed = sign(ask, draft=Draft(case_id=12), seen_revision=0, signer=_RADIOLOGIST, invited_ids={2, 5, 6},
                  existing=[], at=now)
    assert signed.number == 1
    # A correction that brings radiotherapy in without a radiotherapist is refused like a first signature.
    radiotherapy = _weak_fiche(content, {"type": "radiotherapy"})
    with pytest.raises(TreatmentNotCovered):
        amend(radiotherapy, replaces=signed, existing=[signed], reason="radiothérapie finalement", signer=_RADIOLOGIST,
              invited_ids={2, 5, 6}, at=now + timedelta(hours=1))
