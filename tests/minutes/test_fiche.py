from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rcp.errors import Invalid
from rcp.minutes.codes import ProposalType
from rcp.minutes.fiche import Fiche, ins_key_ok, parse_draft_field

Make = Callable[..., dict[str, Any]]
NCIT = "2.16.840.1.113883.3.26.1.1"


def fields_of(exc: pytest.ExceptionInfo[Invalid]) -> dict[str, str]:
    return exc.value.fields


def test_complete_fiche_round_trips_through_its_content(content: Make) -> None:
    fiche = Fiche.from_content(content())
    fiche.check_complete()
    assert fiche.patient.family_name == "Lefèvre"
    assert fiche.tumour_site is not None and fiche.tumour_site.display.startswith("Tumeur maligne du quadrant")
    assert fiche.proposal is not None and fiche.proposal.type is ProposalType.surgery
    assert fiche.quorum().met and fiche.quorum_status.code == "ORG-126"
    assert fiche.case_status_coding is not None and fiche.case_status_coding.code == "ORG-134"
    again = Fiche.from_content(fiche.to_content())
    assert again == fiche
    assert fiche.to_content()["quorum"]["status"]["code"] == "ORG-126"


def test_outside_quorum_attendee_does_not_count(content: Make) -> None:
    data = content()
    data["attendees"][2]["quorum_member"] = False
    fiche = Fiche.from_content(data)
    quorum = fiche.quorum()
    assert not quorum.met and quorum.missing == ("radiotherapist",)
    assert fiche.quorum_status.code == "ORG-133"


def test_every_bad_field_is_named_at_once(content: Make) -> None:
    bad = content(
        patient={"family_name": "", "ins": "279035121518988", "local_id": "X"},
        performance_status={"grade": 7},
        tumour_site={"code": "C50.2", "system": "2.16.840.1.113883.6.96"},
        proposal={"type": "magic"},
        clinical_tnm={"t": "T9", "n": "N0", "m": "M0", "edition": "8"},
        key_images=[{"study_uid": "1.2.3", "series_uid": "1.2.3.4", "sop_uid": "not-a-uid"}],
    )
    with pytest.raises(Invalid) as exc:
        Fiche.from_content(bad)
    fields = fields_of(exc)
    assert set(fields) >= {"patient.ins", "performance_status.grade", "tumour_site", "proposal.type",
                           "clinical_tnm.t", "key_images.0.sop_uid"}
    # Messages never echo what was typed.
    assert all("279035121518988" not in m and "not-a-uid" not in m for m in fields.values())


def test_ins_control_key() -> None:
    assert ins_key_ok("279035121518989")
    assert not ins_key_ok("279035121518988")
    assert not ins_key_ok("27903512151898")
    # Corsica: 2A counts as 19 for the key.
    body = "18502" + "2A" + "123456"
    key = 97 - int(body.replace("2A", "19")) % 97
    assert ins_key_ok(f"{body}{key:02d}")


def test_patient_needs_an_identifier(content: Make) -> None:
    with pytest.raises(Invalid) as exc:
        Fiche.from_content(content(patient={"family_name": "X", "ins": "", "local_id": ""}))
    assert "patient.local_id" in fields_of(exc)


def test_check_complete_lists_the_gaps(content: Make) -> None:
    fiche = Fiche.from_content(content(proposal=None, responsible_physician=None, patient_informed=None,
                                       question="", guideline={"conforms": None}))
    with pytest.raises(Invalid) as exc:
        fiche.check_complete()
    assert set(fields_of(exc)) == {"proposal", "responsible_physician", "patient_informed", "question",
                                   "guideline.conforms"}


def test_registered_only_case_needs_no_proposal(content: Make) -> None:
    fiche = Fiche.from_content(content(case_status="registered", proposal=None, guideline={"conforms": None}))
    fiche.check_complete()
    assert fiche.case_status_coding is not None and fiche.case_status_coding.code == "ORG-128"


def test_an_unstated_case_status_is_never_assumed(content: Make) -> None:
    """Issue 15, item 3: a draft nobody marked "discussed" is not discussed; signing names the missing status,
    and the proposal is still asked for (an unset status hides no gap)."""
    unset = content()
    del unset["case_status"]
    for value in (unset, content(case_status=None), content(case_status="")):
        fiche = Fiche.from_content(value)
        assert fiche.case_status == "" and fiche.case_status_coding is None and not fiche.discussed
        assert fiche.to_content()["case_status_coding"] is None
    fiche = Fiche.from_content(content(case_status=None, proposal=None))
    with pytest.raises(Invalid) as exc:
        fiche.check_complete()
    assert set(fields_of(exc)) == {"case_status", "proposal"}
    assert parse_draft_field("case_status", None) == ""
    with pytest.raises(Invalid):
        parse_draft_field("case_status", "maybe")


def test_guideline_departure_needs_a_reason(content: Make) -> None:
    with pytest.raises(Invalid) as exc:
        Fiche.from_content(content(guideline={"conforms": False, "reason": " "}))
    assert "guideline.reason" in fields_of(exc)


def test_trial_needs_a_name(content: Make) -> None:
    with pytest.raises(Invalid) as exc:
        Fiche.from_content(content(clinical_trial={"proposed": True}))
    assert "clinical_trial.trial" in fields_of(exc)


@pytest.mark.parametrize(
    ("proposal", "ok"),
    [
        ({"type": "surgery", "treatments": [{"code": "C15313", "system": NCIT}]}, False),
        ({"type": "radiotherapy", "treatments": [{"code": "C15313", "system": NCIT}]}, True),
        ({"type": "combined", "treatments": [{"code": "C15313", "system": NCIT}]}, False),
        ({"type": "combined", "treatments": [{"code": "C15313", "system": NCIT},
                                             {"code": "C15632", "system": NCIT}]}, True),
        ({"type": "further_investigations", "details": ""}, False),
        ({"type": "further_investigations", "details": "IRM mammaire bilatérale"}, True),
        ({"type": "other", "details": "x", "treatments": [{"code": "C15632", "system": NCIT}]}, True),
        ({"type": "surveillance"}, True),
        ({"type": "systemic_therapy", "treatments": [{"code": "XX", "system": NCIT}]}, False),
    ],
)
def test_proposal_types_and_treatments(content: Make, proposal: dict[str, Any], ok: bool) -> None:
    if ok:
        fiche = Fiche.from_content(content(proposal=proposal))
        assert fiche.proposal is not None and fiche.proposal.codings()
    else:
        with pytest.raises(Invalid) as exc:
            Fiche.from_content(content(proposal=proposal))
        assert any(k.startswith("proposal.") for k in fields_of(exc))


def test_parse_draft_field_rejects_unknown_fields_and_bad_values() -> None:
    with pytest.raises(Invalid) as exc:
        parse_draft_field("salary", 3)
    assert "salary" in exc.value.fields
    with pytest.raises(Invalid) as exc:
        parse_draft_field("question", 42)
    assert exc.value.fields == {"question": "expected text"}
    assert parse_draft_field("question", "Quelle stratégie ?") == "Quelle stratégie ?"


def test_an_organ_boards_content_has_no_care_key(content: Callable[..., dict[str, Any]]) -> None:
    """The transversal board's purpose is written only when known: an organ board's fiche keeps the content (and
    so the hash of an unchanged correction) it had before the key existed."""
    assert "care" not in Fiche.from_content(content()).to_content()["board"]
    board = {**content()["board"], "discussion_nature": {"code": "ORG-132", "system": "1.2.250.1.213.1.1.4.322"},
             "organ": None, "system": None, "care": {"code": "ORG-130", "system": "1.2.250.1.213.1.1.4.322"}}
    transversal = Fiche.from_content(content(board=board)).to_content()["board"]
    assert transversal["care"]["display"] == "Oncogériatrie"
