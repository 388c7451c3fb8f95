"""The INCa quorum rule, without any server."""

from __future__ import annotations

from rcp.scheduling.quorum import (
    ORGAN_BOARD_REQUIRED,
    TREATMENT_SPECIALTIES,
    Attendee,
    evaluate_quorum,
    treatment_gaps,
)


def test_three_required_specialties_meet_quorum() -> None:
    q = evaluate_quorum([Attendee(1, "surgeon"), Attendee(2, "medical_oncologist"), Attendee(3, "radiotherapist")],
                        ORGAN_BOARD_REQUIRED)
    assert q.met and q.missing == () and q.status_code == "ORG-126"


def test_each_attendee_counts_once_and_duplicates_do_not_add() -> None:
    q = evaluate_quorum([Attendee(1, "surgeon"), Attendee(2, "surgeon"), Attendee(3, "radiologist")], [])
    assert not q.met and q.specialties == ("surgeon", "radiologist") and q.short_by == 1


def test_missing_required_specialty_is_named() -> None:
    q = evaluate_quorum([Attendee(1, "surgeon"), Attendee(2, "radiologist"), Attendee(3, "pathologist")],
                        ORGAN_BOARD_REQUIRED)
    assert not q.met and q.missing == ("medical_oncologist", "radiotherapist") and q.status_code == "ORG-133"


def test_outside_quorum_and_non_physicians_do_not_count() -> None:
    q = evaluate_quorum([Attendee(1, "surgeon"), Attendee(2, "radiologist", counts=False),
                         Attendee(3, "nurse_coordinator"), Attendee(4, "secretary")], [])
    assert q.specialties == ("surgeon",) and q.short_by == 2


def test_minimum_is_configurable_per_board() -> None:
    people = [Attendee(1, "surgeon"), Attendee(2, "radiologist")]
    assert evaluate_quorum(people, [], minimum=2).met
    assert not evaluate_quorum(people, [], minimum=4).met


# -- the treatment rule: a proposed treatment needs its specialty in the quorum --------------------------------

_NCIT = "2.16.840.1.113883.3.26.1.1"
_SCT = "2.16.840.1.113883.6.96"
RADIOTHERAPY, CHEMOTHERAPY, SURGERY = (_NCIT, "C15313"), (_NCIT, "C15632"), (_SCT, "387713003")
#: The weak quorum of issue 14: three physician specialties, none of them treats.
WEAK = [Attendee(1, "radiologist"), Attendee(2, "pathologist"), Attendee(3, "general_practitioner")]


def test_weak_quorum_cannot_answer_for_radiotherapy_surgery_or_chemotherapy() -> None:
    assert evaluate_quorum(WEAK, []).met  # the count alone is satisfied...
    gaps = treatment_gaps([RADIOTHERAPY, SURGERY, CHEMOTHERAPY], WEAK)  # ...but no treatment is answered for
    assert [(g.code, g.needs) for g in gaps] == [("C15313", ("radiotherapist",)), ("387713003", ("surgeon",)),
                                                 ("C15632", ("medical_oncologist",))]


def test_the_specialty_present_in_the_quorum_answers_for_its_treatment() -> None:
    people = [*WEAK, Attendee(4, "radiotherapist")]
    assert [g.code for g in treatment_gaps([RADIOTHERAPY, CHEMOTHERAPY], people)] == ["C15632"]
    # Outside the quorum does not count, as for the quorum itself.
    outside = [*WEAK, Attendee(4, "radiotherapist", counts=False)]
    assert [g.code for g in treatment_gaps([RADIOTHERAPY], outside)] == ["C15313"]


def test_treatments_without_a_specialty_and_alternatives() -> None:
    surveillance, palliative = ("1.2.250.1.213.1.1.4.322", "MED-226"), (_NCIT, "C15252")
    assert treatment_gaps([surveillance, palliative], WEAK) == ()
    # Interventional endoscopy: a gastroenterologist or a pulmonologist does it.
    endoscopy = (_NCIT, "C157891")
    assert treatment_gaps([endoscopy], [*WEAK, Attendee(5, "pulmonologist")]) == ()
    assert treatment_gaps([endoscopy], WEAK)[0].needs == ("gastroenterologist", "pulmonologist")
    # A code given twice is reported once.
    assert len(treatment_gaps([RADIOTHERAPY, RADIOTHERAPY], WEAK)) == 1


def test_every_mapped_treatment_is_an_frcp_treatment_type_and_every_specialty_is_known() -> None:
    from rcp.minutes import codes  # the value set file the fiche codes its proposals with
    from rcp.scheduling.specialties import specialty

    members = {(c.system, c.code) for c in codes.value_set(codes.TREATMENT_TYPE)}
    assert set(TREATMENT_SPECIALTIES) <= members
    for needs in TREATMENT_SPECIALTIES.values():
        assert all(specialty(k).physician for k in needs)
    # Every therapeutic proposal type's default code is mapped: none can slip through uncovered.
    for kind in (codes.ProposalType.surgery, codes.ProposalType.systemic_therapy, codes.ProposalType.radiotherapy):
        coding = codes.proposal_coding(kind)
        assert coding is not None and (coding.system, coding.code) in TREATMENT_SPECIALTIES
