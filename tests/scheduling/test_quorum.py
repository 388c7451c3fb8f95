"""The INCa quorum rule, without any server."""

from __future__ import annotations

from rcp.scheduling.quorum import ORGAN_BOARD_REQUIRED, Attendee, evaluate_quorum


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
