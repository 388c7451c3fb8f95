"""A board's charter: its coded FRCP type and default required specialties, without any server."""

from __future__ import annotations

import pytest

from rcp.minutes import codes
from rcp.scheduling.charter import BOARD_TYPES, board_type, default_required
from rcp.scheduling.quorum import ORGAN_BOARD_REQUIRED


def test_the_copied_board_types_are_the_published_value_sets() -> None:
    """charter.py copies JDV_RCP_Appareil_CISIS and JDV_TraitementSoins_FRCP_CISIS (scheduling cannot import the
    minutes); the copy must stay the files the fiche is coded with, display included."""
    published = {(c.system, c.code, c.display, "organ") for c in codes.value_set(codes.RCP_SYSTEM)}
    published |= {(c.system, c.code, c.display, "transversal") for c in codes.value_set(codes.SUPPORTIVE_CARE)}
    assert {(t.system, t.code, t.display, t.nature) for t in BOARD_TYPES} == published
    assert len({t.code for t in BOARD_TYPES}) == len(BOARD_TYPES)  # a code alone names its concept


def test_standard_organ_boards_require_surgeon_medical_oncologist_radiotherapist() -> None:
    thorax = board_type("312419003")
    assert (thorax.nature, thorax.nature_code) == ("organ", "ORG-117")
    assert default_required(thorax) == ORGAN_BOARD_REQUIRED == ("surgeon", "medical_oncologist", "radiotherapist")
    assert default_required(board_type("76752008")) == ORGAN_BOARD_REQUIRED
    assert default_required(None) == ORGAN_BOARD_REQUIRED


def test_haematology_and_transversal_boards_have_their_own_defaults() -> None:
    assert default_required(board_type("57171008")) == ("medical_oncologist",)
    geriatrics = board_type("ORG-130")
    assert (geriatrics.nature, geriatrics.nature_code) == ("transversal", "ORG-132")
    assert default_required(geriatrics) == ("geriatric_oncologist",)
    assert default_required(board_type("C15252")) == ("palliative_care",)
    assert default_required(board_type("ORG-129")) == ()


def test_an_unknown_code_names_the_value_sets() -> None:
    with pytest.raises(ValueError, match="JDV_RCP_Appareil_CISIS") as exc:
        board_type("thoracic")
    assert "JDV_TraitementSoins_FRCP_CISIS" in str(exc.value)
