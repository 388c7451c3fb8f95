"""The one identity-matching rule (rcp/identifiers.py), as a table: each row a file's patient module against the
service's patient, and what the rule says. Rows 3-7 are issue 14's list of files once attached to the wrong case."""

from __future__ import annotations

import doctest
from datetime import date

import pydicom
import pytest
from pydicom.dataset import Dataset

import rcp.identifiers
from rcp.identifiers import DicomPatient, Identifier, ServicePatient, ins_key_ok, is_uid, match

INS = "255081416802538"
OURS = ServicePatient(
    identifiers=(Identifier("IPP", "100001", "CHU de Lyon"), Identifier("INS-NIR", INS)),
    family_name="Müller-Nguyen", given_names="Anaïs Marie", birth_date=date(1968, 11, 2), sex="female",
)


def dicom(pid: str = "100001", issuer: str = "CHU de Lyon", name: str = "MULLER NGUYEN^ANAIS",
          birth: str = "19681102", sex: str = "F", others: tuple[tuple[str, str], ...] = ()) -> DicomPatient:
    return DicomPatient(patient_id=pid, issuer=issuer, other_ids=others, name=name, birth_date=birth, sex=sex)


TABLE: list[tuple[str, DicomPatient, str, tuple[str, ...]]] = [
    # (what, the file's patient, matched by, fields that refuse)
    ("same IPP and hospital, same traits", dicom(), "IPP", ()),
    ("hospital spelt in another case, traits partly absent", dicom(issuer="chu de lyon", birth="", sex=""), "IPP", ()),
    ("same IPP and issuer, another name and birth date (DOE^JANE)", dicom(name="DOE^JANE", birth="19700101"),
     "IPP", ("family_name", "given_name", "birth_date")),
    ("another IPP, same family name and birth date, other given name and sex",
     dicom(pid="999999", name="MULLER NGUYEN^PAUL", sex="M"), "", ("identifier", "given_name", "sex")),
    ("same IPP value, no issuer, other name", dicom(issuer="", name="DUPONT^LUC"), "",
     ("identifier", "family_name", "given_name")),
    ("same IPP value, no issuer, same traits: the fallback", dicom(issuer=""), "traits", ()),
    ("no identifier at all, the four traits equal (normalised)", dicom(pid="", issuer="", name="müller nguyen^anaïs"),
     "traits", ()),
    ("no identifier, sex absent: the fallback needs all four", dicom(pid="", issuer="", sex=""), "", ("identifier",)),
    ("no identifier, birth date absent", dicom(pid="", issuer="", birth=""), "", ("identifier",)),
    ("no identifier, another first given name", dicom(pid="", issuer="", name="MULLER NGUYEN^MARIE"), "",
     ("identifier", "given_name")),
    ("the IPP of another patient of the service", dicom(pid="100002", name="DURAND^PAUL", birth="19500101", sex="M"),
     "", ("identifier", "family_name", "given_name", "birth_date", "sex")),
    ("another hospital's IPP and issuer, all traits equal (a CD): reconcile, never match",
     dicom(pid="A-77", issuer="CH de Bourg"), "", ("identifier",)),
    ("same IPP value at another hospital", dicom(issuer="CH de Bourg"), "", ("identifier",)),
    ("an unknown person", dicom(pid="X1", issuer="CH de Bourg", name="INCONNU^X", birth="19000101", sex="M"), "",
     ("identifier", "family_name", "given_name", "birth_date", "sex")),
    ("the INS as PatientID, issuer its OID", dicom(pid=INS, issuer="1.2.250.1.213.1.4.8"), "INS-NIR", ()),
    ("the INS in Other Patient IDs, local id unknown", dicom(pid="Z", issuer="CH X", others=((INS, "INS-NIR"),)),
     "INS-NIR", ()),
    ("the INS without its authority: no identifier, so the four traits decide", dicom(pid=INS, issuer=""), "traits",
     ()),
    ("the INS without its authority, another given name", dicom(pid=INS, issuer="", name="MULLER NGUYEN^PAUL"), "",
     ("identifier", "given_name")),
    ("the INS with the wrong sex", dicom(pid=INS, issuer="INS-NIR", sex="M"), "INS-NIR", ("sex",)),
    ("sex O or unknown is no contradiction", dicom(sex="O"), "IPP", ()),
    ("accents, case and hyphens do not matter; the first given name does", dicom(name="müller-nguyen^Anaïs-Marie"),
     "IPP", ()),
    ("another first given name", dicom(name="MULLER NGUYEN^MARIE ANAIS"), "IPP", ("given_name",)),
]


@pytest.mark.parametrize(("what", "theirs", "by", "refused"), TABLE, ids=[row[0] for row in TABLE])
def test_the_rule(what: str, theirs: DicomPatient, by: str, refused: tuple[str, ...]) -> None:
    verdict = match(OURS, theirs)
    assert (verdict.by, verdict.refused) == (by, refused), what
    assert bool(verdict) == (bool(by) and not refused)
    # The message names fields, never values.
    for value in ("MULLER", "Müller", "100001", INS, "1968", "DOE", "ANAIS"):
        assert value not in verdict.message


def test_a_bare_ipp_of_ours_matches_nothing() -> None:
    bare = ServicePatient(identifiers=(Identifier("IPP", "100001", ""),), family_name="Müller-Nguyen")
    assert match(bare, dicom()).refused == ("identifier",)
    assert match(bare, dicom(issuer="")).refused == ("identifier",)


def test_from_a_dataset_with_other_patient_ids_as_the_service_writes_them() -> None:
    ds = Dataset()
    ds.PatientID = "Z"
    ds.IssuerOfPatientID = "CH X"
    ds.PatientName = "MULLER NGUYEN^ANAIS"
    ds.PatientBirthDate = "19681102"
    ds.PatientSex = "F"
    qualifier = Dataset()
    qualifier.UniversalEntityID = "1.2.250.1.213.1.4.8"
    qualifier.UniversalEntityIDType = "ISO"
    item = Dataset()
    item.PatientID = INS
    item.IssuerOfPatientID = "INS-NIR"
    item.IssuerOfPatientIDQualifiersSequence = [qualifier]
    ds.OtherPatientIDsSequence = [item]
    patient = DicomPatient.from_dataset(ds)
    assert patient.other_ids == ((INS, "1.2.250.1.213.1.4.8"),)
    assert match(OURS, patient).by == "INS-NIR"
    assert patient.as_json() == {"patient_id": "Z", "issuer": "CH X", "family_name": "MULLER NGUYEN",
                                 "given_names": "ANAIS", "birth_date": "1968-11-02", "sex": "F"}


def test_ins_key_and_uid_syntax() -> None:
    assert ins_key_ok(INS) and not ins_key_ok(INS[:-1] + "9") and not ins_key_ok(INS[:-1])
    body = "15603" + "2A" + "123045"
    assert ins_key_ok(body + f"{97 - int(body.replace('2A', '19')) % 97:02d}")
    assert is_uid(str(pydicom.uid.generate_uid())) and not is_uid("1.2/3") and not is_uid("1" * 65)
    assert is_uid("1.2.03") and not is_uid("1.2.03", strict=True)


def test_doctests() -> None:
    assert doctest.testmod(rcp.identifiers).failed == 0


def test_public_surface() -> None:
    assert rcp.identifiers.__all__ == [
        "FINESS_PREFIX", "IDENTIFIER_MESSAGES", "IDENTITY_ATTRIBUTES", "IDENTITY_STATUSES", "IDNATSTRUCT_OID",
        "INS_AUTHORITIES", "INS_NIA_OID", "INS_NIR_OID", "INS_OIDS", "INS_SYSTEMS", "INS_TEST_OIDS",
        "RCP_NATIONAL_OIDS", "TYPED_STATUSES", "VALIDATION_MODES", "DicomPatient", "Identifier", "Match",
        "ServicePatient", "check_finess", "check_ins", "check_national_id", "finess_key_ok", "first_given_name",
        "identity_problems", "ins_authority", "ins_key_ok", "ins_may_leave", "ins_system", "ins_type_code", "is_ins",
        "is_uid", "luhn_key", "luhn_ok", "match", "pid32_codes", "plain_name"]
    for name in rcp.identifiers.__all__:
        assert hasattr(rcp.identifiers, name), name


def test_an_nia_matches_its_dicom_item_and_keeps_its_own_names() -> None:
    """The NIA is its own system (FR Core table 0203 INS-NIA; PAM France authority ASIP-SANTE-INS-NIA), and a file
    naming it under the NIA's authority is the patient's."""
    from rcp.identifiers import INS_NIA_OID, ins_authority, ins_system, ins_type_code

    assert (ins_system(INS_NIA_OID), ins_type_code(INS_NIA_OID)) == ("INS-NIA", "INS-NIA")
    assert ins_authority(INS_NIA_OID) == "ASIP-SANTE-INS-NIA&1.2.250.1.213.1.4.9&ISO"
    ours = ServicePatient((Identifier("INS-NIA", "255081416802538", INS_NIA_OID),), "Lefèvre", "Hélène",
                          date(1955, 8, 1), "female")
    found = match(ours, DicomPatient("X1", "OTHER", other_ids=(("255081416802538", INS_NIA_OID),),
                                     name="LEFEVRE^HELENE", birth_date="19550801", sex="F"))
    assert found and found.by == "INS-NIA"


@pytest.mark.parametrize(("status", "attributes", "fields"), [
    ("validated", ["doubtful"], ["identity_status"]),
    ("provisional", ["fictitious"], []),
    ("provisional", ["doubtful", "fictitious"], ["identity_attributes"]),
    ("qualified", ["homonym"], []),
])
def test_doubtful_and_fictitious_identities_stay_provisional(status: str, attributes: list[str],
                                                            fields: list[str]) -> None:
    from rcp.identifiers import identity_problems

    assert [f for f, _ in identity_problems(status, attributes)] == fields


@pytest.mark.parametrize(("value", "expected"), [
    ("750712184", "750712184"),  # AP-HP (entité juridique): Luhn key 4
    ("49 000 792 9", "490007929"),  # as the FINESS site prints it
    ("2A0000000", "2A0000000"),  # Corsica: the format only (module docstring)
    ("", ""),
])
def test_finess_numbers_with_their_key_are_accepted(value: str, expected: str) -> None:
    from rcp.identifiers import check_finess

    assert check_finess(value) == expected


@pytest.mark.parametrize(("value", "rule"), [
    ("750712185", "check digit"),  # one digit mistyped
    ("750712148", "check digit"),  # two digits swapped
    ("75071218", "9 characters"),
    ("7507121840", "9 characters"),
    ("75O712184", "9 characters"),  # a letter O for a zero
    ("2C0000000", "9 characters"),
])
def test_a_mistyped_finess_is_refused_naming_the_rule(value: str, rule: str) -> None:
    from rcp.identifiers import IDENTIFIER_MESSAGES, check_finess

    with pytest.raises(ValueError) as refused:
        check_finess(value)
    assert rule in str(refused.value) and str(refused.value) in IDENTIFIER_MESSAGES
    assert value not in str(refused.value)


def test_the_luhn_rule_is_the_rpps_one() -> None:
    """One Luhn rule for RPPS and FINESS numbers (rcp.people re-exports it for its callers)."""
    from rcp.identifiers import luhn_key, luhn_ok
    from rcp.people import luhn_ok as people_luhn
    from rcp.people import rpps_check_digit

    assert people_luhn is luhn_ok
    assert luhn_key("1000345678") == rpps_check_digit("1000345678")
    assert [luhn_ok(x) for x in ("79927398713", "79927398710", "", "12a")] == [True, False, False, False]


def test_national_rcp_ids_are_short_and_plain() -> None:
    from rcp.identifiers import check_national_id

    assert [check_national_id(x) for x in (" 5201 ", "520114", "27011113", "")] == ["5201", "520114", "27011113", ""]
    for bad in ("27 011 113", "RCP/1", "x" * 21, "é1"):
        with pytest.raises(ValueError, match="1 to 20 letters or digits"):
            check_national_id(bad)
