"""Pure agenda rules: reorder, move, readiness, the board's next slot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rcp.errors import Invalid
from rcp.scheduling.agenda import move, next_slot, readiness, reorder
from rcp.scheduling.schemas import valid_nir


def test_reorder_accepts_a_permutation() -> None:
    assert reorder([1, 2, 3], [3, 1, 2]) == [3, 1, 2]


@pytest.mark.parametrize(("requested", "field_text"), [([1, 2, 9], "unknown"), ([1, 1, 2, 3], "duplicate"),
                                                        ([1, 2], "missing")])
def test_reorder_refuses_anything_else_naming_the_field(requested: list[int], field_text: str) -> None:
    with pytest.raises(Invalid) as caught:
        reorder([1, 2, 3], requested)
    assert field_text in caught.value.fields["case_ids"]


def test_move_up_down_and_ends() -> None:
    assert move([1, 2, 3], 3, -1) == [1, 3, 2]
    assert move([1, 2, 3], 1, -1) == [1, 2, 3]
    assert move([1, 2, 3], 1, +1) == [2, 1, 3]


def test_readiness_names_what_is_missing() -> None:
    r = readiness(question="Chirurgie ?", study_uids=[], referring_physician="", checklist={"pathology": False})
    assert not r.ready and r.missing == ("studies", "referring", "pathology")
    assert readiness(question="Q", study_uids=["1.2"], referring_physician="Dr X").ready


def test_next_slot_is_the_boards_weekday_in_its_zone() -> None:
    # Thursday 14:00 Paris in winter is 13:00 UTC; after Thursday 26 Nov 2026 13:30 UTC comes 3 Dec.
    after = datetime(2026, 11, 26, 13, 30, tzinfo=UTC)
    assert next_slot(weekday=3, at="14:00", timezone="Europe/Paris", after=after) == datetime(
        2026, 12, 3, 13, 0, tzinfo=UTC)
    # In summer the same wall-clock time is 12:00 UTC.
    assert next_slot(weekday=3, at="14:00", timezone="Europe/Paris",
                     after=datetime(2026, 6, 1, tzinfo=UTC)).hour == 12


def test_ins_control_key() -> None:
    assert valid_nir("255081416802538")
    assert not valid_nir("255081416802539")
    assert not valid_nir("25508141680253")
    assert valid_nir("1" + "56" + "03" + "2A" + "123045" + f"{97 - int('156031912304' + '5') % 97:02d}")
