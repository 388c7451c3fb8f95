"""People of the service (physicians, coordinators, guests) as structured names, and their RPPS number.

One value, :class:`PersonName`, says how a person is named everywhere: the pages, the fiche and its PDF, the HL7
v2 XCN fields and the FHIR Practitioner. It is built from the user's own columns (``rcp.auth.models.User``:
``family_name``, ``given_name``, ``prefix``, ``rpps``), never by splitting a display string, because no split of
"Dr Amélie Rousseau" can be right: some write the given name first, some the family name first.

French usage writes the family name in capitals after the given name ("Dr Amélie ROUSSEAU"); that is what
:meth:`PersonName.display` shows, and also the one free-text form :meth:`PersonName.parse` accepts, because the
capitals say which word is the family name::

    >>> name = PersonName.parse("Dr Amélie ROUSSEAU")
    >>> (name.prefix, name.given, name.family)
    ('Dr', 'Amélie', 'ROUSSEAU')
    >>> PersonName(family="Rousseau", given="Amélie", prefix="Dr").display()
    'Dr Amélie ROUSSEAU'
    >>> PersonName.parse("Dr Amélie Rousseau")
    Traceback (most recent call last):
    ...
    rcp.errors.Invalid: This name cannot be split into family and given names.

A name that could not be split when the columns were introduced (migration 0013) is kept whole, as typed, with
``unsplit=True``: the pages mark it "name to complete", and its owner cannot sign until it is completed
(``rcp.minutes.store.signer_account``) — never a silent wrong split.

The RPPS (Répertoire partagé des professionnels intervenant dans le système de santé) number has 11 digits, the
last a Luhn check digit over the first ten (ANS, RPPS identification: "clé de Luhn"); :func:`check_rpps` refuses
a number whose key does not match. Documents carry it as the national practitioner identifier (IdNatPS, "8" +
RPPS) under the ANS OID 1.2.250.1.71.4.2.1 (``rcp.epr``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from rcp.errors import Invalid
from rcp.i18n import N_
from rcp.identifiers import luhn_ok

__all__ = [
    "IDNATPS_OID",
    "PREFIXES",
    "PersonName",
    "check_rpps",
    "luhn_ok",
    "normal_prefix",
    "rpps_check_digit",
    "split_title",
]

#: The ANS OID of national practitioner identifiers (IdNatPS: "8" + RPPS, "0" + ADELI).
IDNATPS_OID = "1.2.250.1.71.4.2.1"

#: Titles of practice (ANS TRE_R11 CiviliteExercice, which FR Core binds to HumanName.suffix): our spelling on
#: pages → the national code documents carry.
PREFIXES: dict[str, str] = {"": "", "Dr": "DR", "Pr": "PR"}
#: How people type them.
_PREFIX_ALIASES = {
    "dr": "Dr", "dr.": "Dr", "docteur": "Dr", "pr": "Pr", "pr.": "Pr", "prof": "Pr", "prof.": "Pr",
    "professeur": "Pr",
}
_LIMIT = 100


def _clean(value: str) -> str:
    return " ".join(value.split())


def _plain(value: str) -> str:
    """Lower case without accents: the order of a French phone book ("Élise" beside "Elise")."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _refuse(field: str, message: str, summary: str = "Check the highlighted name field.") -> Invalid:
    return Invalid(summary, fields={field: message})


def _is_family_word(word: str) -> bool:
    """A word in capitals (at least two letters: "J." is an initial, not a family name)."""
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def split_title(text: str) -> tuple[str, str]:
    """("Dr", "Amélie Rousseau") from "Docteur Amélie Rousseau"; ("", text) when it starts with no known title."""
    first, _, rest = _clean(text).partition(" ")
    if rest and first in PREFIXES:
        return first, rest
    if rest and first.casefold() in _PREFIX_ALIASES:
        return _PREFIX_ALIASES[first.casefold()], rest
    return "", _clean(text)


def normal_prefix(value: str, field: str = "prefix") -> str:
    """``Dr``, ``Pr`` or ``""`` from what was typed ("Docteur", "dr.", "Pr"); ``Invalid`` naming ``field``."""
    text = _clean(value)
    if text in PREFIXES:
        return text
    known = _PREFIX_ALIASES.get(text.casefold())
    if known is None:
        raise _refuse(field, N_("unknown title; expected Dr, Pr or nothing"))
    return known


@dataclass(frozen=True, kw_only=True)
class PersonName:
    """A person's name in its parts; checks itself (each error names the field: ``family_name``...)."""

    family: str
    given: str = ""
    #: "Dr", "Pr" or "" (:data:`PREFIXES`).
    prefix: str = ""
    #: The whole name as typed, kept in ``family`` because it could not be split (see the module docstring).
    unsplit: bool = False

    def __post_init__(self) -> None:
        if not self.family.strip():
            raise _refuse("family_name", N_("required: the family name"))
        for field, value in (("family_name", self.family), ("given_name", self.given)):
            if len(value) > _LIMIT:
                raise _refuse(field, N_("at most 100 characters"))
            if any(unicodedata.category(c).startswith("C") for c in value):
                raise _refuse(field, N_("control characters are not allowed in a name"))
        if self.prefix not in PREFIXES:
            raise _refuse("prefix", N_("unknown title; expected Dr, Pr or nothing"))

    @classmethod
    def of(cls, *, family: str, given: str = "", prefix: str = "") -> PersonName:
        """From typed parts: spaces tidied, the title normalised ("Docteur" → "Dr")."""
        return cls(family=_clean(family), given=_clean(given), prefix=normal_prefix(prefix))

    @classmethod
    def parse(cls, text: str, *, field: str = "display_name") -> PersonName:
        """Read "[title] Given FAMILY", "[title] FAMILY Given" or "[title] Family, Given".

        The family name is the run of words in capitals at the start or the end (or what comes before a comma);
        every other word must start with a capital and not be all capitals. Anything else — "Amélie Rousseau",
        "jean de LA TOUR", all capitals — is ambiguous and refused with ``Invalid`` naming ``field``: give the
        parts separately instead.
        """
        prefix, rest = split_title(text)
        if not rest or (not prefix and _clean(rest).casefold() in _PREFIX_ALIASES):
            raise _refuse(field, N_("required: a name, e.g. Dr Amélie ROUSSEAU"))
        words = rest.split(" ")
        if "," in rest:
            family, _, given = rest.partition(",")
            if not family.strip() or not given.strip() or "," in given:
                raise cls._unsplittable(field)
            return cls(family=_clean(family), given=_clean(given), prefix=prefix)
        caps = [_is_family_word(w) for w in words]
        given_ok = all(caps[i] or w[:1].isupper() for i, w in enumerate(words))
        if all(caps) or not any(caps) or not given_ok:
            raise cls._unsplittable(field)
        k = caps.index(True)
        if all(caps[k:]):  # Given FAMILY
            return cls(family=" ".join(words[k:]), given=" ".join(words[:k]), prefix=prefix)
        k = caps.index(False)
        if not any(caps[k:]):  # FAMILY Given
            return cls(family=" ".join(words[:k]), given=" ".join(words[k:]), prefix=prefix)
        raise cls._unsplittable(field)

    @staticmethod
    def _unsplittable(field: str) -> Invalid:
        return Invalid("This name cannot be split into family and given names.", fields={
            field: N_("cannot tell the family name from the given name: write the family name in capitals "
                      "(Dr Amélie ROUSSEAU), or give family_name and given_name separately")})

    # -- how documents and pages write it --

    def display(self) -> str:
        """French usage: title, given name, FAMILY NAME ("Dr Amélie ROUSSEAU"); an unsplit name as typed."""
        if self.unsplit:
            return " ".join(p for p in (self.prefix, self.family) if p)
        return " ".join(p for p in (self.prefix, self.given, self.family.upper()) if p)

    def sort_key(self) -> tuple[str, str, str]:
        """Family name, then given name, without case or accents ("Élise DURAND" beside "Elise Durand")."""
        return _plain(self.family), _plain(self.given), self.prefix

    @property
    def prefix_code(self) -> str:
        """The national code of the title (TRE_R11 CiviliteExercice: DR, PR), "" without one."""
        return PREFIXES[self.prefix]

    def as_xcn(self) -> tuple[str, str, str]:
        """(XCN.2 family name, XCN.3 given name, XCN.6 prefix) of HL7 v2.5 XCN, unescaped.

        An unsplit name travels whole in XCN.2 (there is no free-text component in XCN); its owner cannot sign,
        so it never names an author.
        """
        return self.family, "" if self.unsplit else self.given, self.prefix_code

    def as_dicom_pn(self) -> str:
        """DICOM Person Name (PS3.5 6.2): family^given^middle^prefix, each component at most 64 characters in
        all; an unsplit name as one component with a trailing caret (free text, PS3.5 6.2.1.2)."""
        def part(value: str) -> str:
            return value.replace("^", " ").replace("=", " ").replace("\\", " ")

        if self.unsplit:
            return part(self.display())[:63] + "^"
        return "^".join((part(self.family)[:30], part(self.given)[:25], "", self.prefix)).rstrip("^")

    def as_fhir_humanname(self) -> dict[str, Any]:
        """FHIR R4 HumanName per FR Core (fr-core-human-name): the title of practice in ``suffix`` (JDV_J79,
        TRE_R11 codes), given names one per item; an unsplit name only as ``text``."""
        if self.unsplit:
            return {"use": "official", "text": self.display()}
        name: dict[str, Any] = {"use": "official", "family": self.family}
        if self.given:
            name["given"] = self.given.split(" ")
        if self.prefix:
            name["suffix"] = [self.prefix_code]
        return name

    def as_json(self) -> dict[str, Any]:
        return {"family_name": self.family, "given_name": self.given, "prefix": self.prefix,
                "name_to_complete": self.unsplit, "display": self.display()}


# -- RPPS --------------------------------------------------------------------------------------------------------


def rpps_check_digit(first_ten: str) -> str:
    """The Luhn key that completes ten digits into an RPPS number (tests and the demo make valid ones)."""
    if len(first_ten) != 10 or not first_ten.isdigit():
        raise ValueError("'first_ten' must be 10 digits")
    return next(str(k) for k in range(10) if luhn_ok(first_ten + str(k)))


def check_rpps(value: str, *, field: str = "rpps") -> str:
    """An RPPS number (11 digits, Luhn key) with spaces removed, or "" for none; ``Invalid`` naming ``field``.

    >>> check_rpps("100 0333 4827")
    '10003334827'
    """
    digits = "".join(value.split())
    if not digits:
        return ""
    if len(digits) != 11 or not digits.isascii() or not digits.isdigit():
        raise _refuse(field, N_("an RPPS number has 11 digits"), "Check the RPPS number.")
    if not luhn_ok(digits):
        raise _refuse(field, N_("this RPPS number fails its check digit (Luhn key): check for a typing error"),
                      "Check the RPPS number.")
    return digits
