"""The one quorum sentence (rcp.scheduling.quorum_statement): the meeting page's and the room's, in both languages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rcp import i18n
from rcp.scheduling.quorum import Attendee, evaluate_quorum
from rcp.scheduling.quorum_statement import quorum_statement
from rcp.scheduling.schemas import QuorumOut

ORGAN = ["surgeon", "medical_oncologist", "radiotherapist"]
NBSP = "\u00a0"


@pytest.fixture
def locale() -> Iterator[None]:
    token = i18n.current_locale.set("fr")
    try:
        yield
    finally:
        i18n.current_locale.reset(token)


def test_the_room_and_the_meeting_page_say_which_count_and_what_is_missing(locale: None) -> None:
    short = evaluate_quorum([Attendee(1, "surgeon"), Attendee(2, "radiologist")], ORGAN)
    i18n.use_locale("en")
    assert quorum_statement(short, basis="present") == (
        "Quorum present now: not met — missing: medical oncologist, radiation oncologist")
    assert quorum_statement(short, basis="expected") == (
        "Expected quorum (from invitations): not met — missing: medical oncologist, radiation oncologist")
    i18n.use_locale("fr")
    assert quorum_statement(short, basis="present") == (
        f"Quorum des présents{NBSP}: non atteint — manque{NBSP}: oncologue médical, oncologue radiothérapeute")
    assert quorum_statement(short, basis="expected").startswith(f"Quorum attendu (d'après les invitations){NBSP}:")


def test_met_and_short_by_and_the_api_form(locale: None) -> None:
    met = evaluate_quorum([Attendee(1, "surgeon"), Attendee(2, "medical_oncologist"), Attendee(3, "radiotherapist")],
                          ORGAN)
    few = evaluate_quorum([Attendee(1, "surgeon")], ["surgeon"])
    i18n.use_locale("en")
    assert quorum_statement(met, basis="present") == "Quorum present now: met"
    assert quorum_statement(few, basis="present") == "Quorum present now: not met — missing: 2 more specialties needed"
    # The meeting page's quorum is the API's QuorumOut: the same sentence from the same facts.
    out = QuorumOut(met=few.met, specialties=list(few.specialties), missing=list(few.missing), short_by=few.short_by,
                    minimum=few.minimum, status_code=few.status_code)
    assert quorum_statement(out, basis="present") == quorum_statement(few, basis="present")
    i18n.use_locale("fr")
    assert quorum_statement(met, basis="expected") == f"Quorum attendu (d'après les invitations){NBSP}: atteint"
