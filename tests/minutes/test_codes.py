from __future__ import annotations

import pytest

from rcp.minutes import codes
from rcp.minutes.codes import Coding, ProposalType

TA = "1.2.250.1.213.1.1.4.322"


def test_every_shipped_value_set_parses_with_its_oid() -> None:
    expected = {
        codes.QUORUM_STATUS: ("1.2.250.1.213.1.1.4.2.281.16", 3),
        codes.DISCUSSION_NATURE: ("1.2.250.1.213.1.1.4.2.281.8", 2),
        codes.CASE_STATUS: ("1.2.250.1.213.1.1.4.2.281.17", 2),
        codes.CANCER_PHASE: ("1.2.250.1.213.1.1.4.2.281.13", 2),
        codes.PERFORMANCE_STATUS: ("1.2.250.1.213.1.1.4.2.281.1", 5),
        codes.TREATMENT_TYPE: ("1.2.250.1.213.1.1.5.595", 18),
        codes.RCP_SYSTEM: ("1.2.250.1.213.1.1.5.597", 14),
    }
    for name, (oid, size) in expected.items():
        vs = codes.value_set(name)
        assert vs.oid == oid
        assert len(vs) == size
    assert len(codes.value_set(codes.TUMOUR)) > 700
    assert len(codes.value_set(codes.MORPHOLOGY)) > 1000
    assert len(codes.value_set(codes.RCP_ORGAN)) > 50


def test_quorum_and_case_status_codes() -> None:
    assert codes.quorum_status(True) == Coding("ORG-126", TA, "Quorum atteint")
    assert codes.quorum_status(False).code == "ORG-133"
    assert codes.quorum_status(None).code == "GEN-010"
    assert codes.case_status(True).display == "Cas discuté"
    assert codes.case_status(False).code == "ORG-128"


def test_performance_status_grades_map_to_who_codes() -> None:
    assert [codes.performance_status(g).code for g in range(5)] == [
        "MED-240", "MED-264", "MED-265", "MED-266", "MED-267"]
    assert codes.performance_interpretation(0).code == "LA9622-7"
    assert codes.performance_interpretation(0).system == "2.16.840.1.113883.6.1"
    for bad in (-1, 5, True, "2"):
        with pytest.raises(ValueError, match="0 to 4"):
            codes.performance_status(bad)  # type: ignore[arg-type]


def test_lookup_keeps_accents_and_needs_system_for_ambiguous_codes() -> None:
    vs = codes.value_set(codes.TREATMENT_TYPE)
    assert vs.lookup("C15313").display == "radiothérapie"
    assert codes.value_set(codes.RCP_SYSTEM).lookup("81745001").display == "œil"
    with pytest.raises(KeyError, match="not in value set JDV_TypeTraitement_FRCP_CISIS"):
        vs.lookup("nope")
    with pytest.raises(KeyError, match="system"):
        vs.lookup("C15313", TA)


def test_validate_checks_code_and_system_and_returns_official_display() -> None:
    vs = codes.value_set(codes.TUMOUR)
    got = vs.validate(Coding("C50.2", "2.16.840.1.113883.6.3", "whatever"))
    assert got.display == "Tumeur maligne du quadrant supéro-interne du sein"
    with pytest.raises(ValueError, match="not in value set JDV_Tumeur_CISIS"):
        vs.validate(Coding("C50.2", "2.16.840.1.113883.6.96"))
    assert Coding("C50.2", "2.16.840.1.113883.6.3") in vs
    assert Coding("Z99", "2.16.840.1.113883.6.3") not in vs


def test_coding_checks_itself() -> None:
    with pytest.raises(ValueError, match="'system' must be an OID"):
        Coding("X", "snomed")
    with pytest.raises(ValueError, match="'code'"):
        Coding("", "1.2.3")
    assert Coding("C15313", "2.16.840.1.113883.3.26.1.1").system_name == "NCIt"


def test_proposal_types_map_to_treatment_codes() -> None:
    surgery = codes.proposal_coding(ProposalType.surgery)
    assert surgery is not None and surgery.code == "387713003"
    assert codes.proposal_coding(ProposalType.combined) is None
    investigations = codes.proposal_coding(ProposalType.further_investigations)
    assert investigations is not None and investigations.code == "ORG-064"
    treatment_vs = codes.value_set(codes.TREATMENT_TYPE)
    for kind, members in codes.PROPOSAL_TREATMENTS.items():
        for system, code in members:
            assert treatment_vs.lookup(code, system), (kind, code)
        default = codes.proposal_coding(kind)
        if default is not None and kind is not ProposalType.further_investigations:
            assert default in treatment_vs
            assert codes.treatment_kind(default) is kind
