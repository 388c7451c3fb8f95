"""rcp.people: how a person's name is read, written and checked (pure rules, no database)."""

from __future__ import annotations

import pytest

from rcp.errors import Invalid
from rcp.people import PersonName, check_rpps, luhn_ok, rpps_check_digit


@pytest.mark.parametrize(("text", "parts"), [
    ("Dr Amélie ROUSSEAU", ("Dr", "Amélie", "ROUSSEAU")),
    ("Docteur Amélie ROUSSEAU", ("Dr", "Amélie", "ROUSSEAU")),
    ("pr. Jean-Pierre DE LA TOUR", ("Pr", "Jean-Pierre", "DE LA TOUR")),
    ("ROUSSEAU Amélie", ("", "Amélie", "ROUSSEAU")),
    ("DE LA TOUR Jean-Pierre Marie", ("", "Jean-Pierre Marie", "DE LA TOUR")),
    ("Rousseau, Amélie", ("", "Amélie", "Rousseau")),
    ("Dr  Rousseau ,  Amélie ", ("Dr", "Amélie", "Rousseau")),
    ("Dr J. MARTIN", ("Dr", "J.", "MARTIN")),
])
def test_a_name_whose_family_name_is_marked_is_split(text: str, parts: tuple[str, str, str]) -> None:
    name = PersonName.parse(text)
    assert (name.prefix, name.given, name.family) == parts
    assert not name.unsplit


@pytest.mark.parametrize("text", [
    "Dr Amélie Rousseau",  # given first or family first? no way to tell
    "Rousseau Amélie",
    "AMÉLIE ROUSSEAU",  # all capitals
    "Jean de LA TOUR",  # a lower-case particle: whose is it?
    "ROUSSEAU Amélie MARTIN",  # capitals on both sides
    "Rousseau, Amélie, Claire",
    "secretariat",
])
def test_an_ambiguous_name_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(Invalid) as refused:
        PersonName.parse(text, field="guest_display_name")
    assert list(refused.value.fields) == ["guest_display_name"]
    assert "family name in capitals" in refused.value.fields["guest_display_name"]


@pytest.mark.parametrize("text", ["", "   ", "Dr", "Docteur "])
def test_no_name_at_all_is_refused(text: str) -> None:
    with pytest.raises(Invalid) as refused:
        PersonName.parse(text)
    assert refused.value.fields["display_name"].startswith("required")


def test_french_usage_title_given_name_family_name_in_capitals() -> None:
    name = PersonName.of(family="Rousseau", given="Amélie", prefix="Docteur")
    assert name.display() == "Dr Amélie ROUSSEAU"
    assert PersonName(family="Le Goff", given="Élise").display() == "Élise LE GOFF"
    assert PersonName(family="Durand").display() == "DURAND"


def test_an_unsplit_name_is_shown_as_typed() -> None:
    name = PersonName(family="Amélie Rousseau", prefix="Dr", unsplit=True)
    assert name.display() == "Dr Amélie Rousseau"
    assert name.as_fhir_humanname() == {"use": "official", "text": "Dr Amélie Rousseau"}
    assert name.as_json()["name_to_complete"] is True


def test_sorted_by_family_name_then_given_name_without_accents_or_case() -> None:
    names = [PersonName(family="Martin", given="Zoé"), PersonName(family="élie", given="Anne"),
             PersonName(family="ELIE", given="Adèle"), PersonName(family="Durand", given="Marc", prefix="Pr")]
    assert [n.display() for n in sorted(names, key=PersonName.sort_key)] == [
        "Pr Marc DURAND", "Adèle ELIE", "Anne ÉLIE", "Zoé MARTIN"]


def test_hl7_xcn_and_fhir_humanname_pieces() -> None:
    name = PersonName(family="Rousseau", given="Amélie Claire", prefix="Dr")
    assert name.as_xcn() == ("Rousseau", "Amélie Claire", "DR")
    # FR Core fr-core-human-name: the title of practice (TRE_R11) in suffix; given names one per item.
    assert name.as_fhir_humanname() == {"use": "official", "family": "Rousseau", "given": ["Amélie", "Claire"],
                                        "suffix": ["DR"]}
    assert PersonName(family="Durand").as_fhir_humanname() == {"use": "official", "family": "Durand"}
    # DICOM PN (PS3.5 6.2): family^given^middle^prefix; free text as one component with a trailing caret.
    assert name.as_dicom_pn() == "Rousseau^Amélie Claire^^Dr"
    assert PersonName(family="Durand").as_dicom_pn() == "Durand"
    assert PersonName(family="Amélie Rousseau", prefix="Dr", unsplit=True).as_dicom_pn() == "Dr Amélie Rousseau^"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"family": " "}, "family_name"),
    ({"family": "X" * 101}, "family_name"),
    ({"family": "Durand", "given": "Marc\x00"}, "given_name"),
    ({"family": "Durand", "prefix": "Sir"}, "prefix"),
])
def test_bad_parts_name_their_field(kwargs: dict[str, str], field: str) -> None:
    with pytest.raises(Invalid) as refused:
        PersonName(**kwargs)  # type: ignore[arg-type]
    assert list(refused.value.fields) == [field]


def test_an_unknown_typed_title_is_refused() -> None:
    with pytest.raises(Invalid) as refused:
        PersonName.of(family="Durand", prefix="Monseigneur")
    assert list(refused.value.fields) == ["prefix"]


def test_rpps_eleven_digits_with_a_luhn_key() -> None:
    number = "1000033348" + rpps_check_digit("1000033348")
    assert len(number) == 11 and luhn_ok(number)
    assert check_rpps(f" {number[:5]} {number[5:]} ") == number
    assert check_rpps("") == ""
    wrong_key = number[:10] + str((int(number[10]) + 1) % 10)
    for bad, says in ((wrong_key, "check digit"), ("1234", "11 digits"), ("1000033348A", "11 digits")):
        with pytest.raises(Invalid) as refused:
            check_rpps(bad)
        assert says in refused.value.fields["rpps"]


def test_luhn_catches_a_single_wrong_digit_and_a_swap() -> None:
    number = "2000012345" + rpps_check_digit("2000012345")
    for i in range(11):
        for d in "0123456789":
            if d != number[i]:
                assert not luhn_ok(number[:i] + d + number[i + 1:])
    swapped = number[:6] + number[7] + number[6] + number[8:]  # "...23..." typed "...32..."
    assert swapped != number and not luhn_ok(swapped)
