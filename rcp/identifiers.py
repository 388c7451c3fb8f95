"""Patient identifiers and the one rule that says whether a DICOM study belongs to a patient of the service.

Images meet a patient in several places — attaching a study to a case, importing files, writing a KOS or a PDF
back — and each must answer the same question the same way, so the answer lives here, once:

**Is this DICOM patient (PS3.3 C.7.1.1 Patient Module) the service's patient?**

1. *An identifier in common*: the file's PatientID (or an item of its Other Patient IDs Sequence) together with
   its IssuerOfPatientID equals one of the patient's local identifiers (IPP) with its assigning authority — both
   present, both equal. An IPP without an assigning authority matches nothing: ``100001`` is a different person
   in every hospital, so a bare value would find studies of any hospital's patient. Or the INS (NIR or NIA), issued
   by the INS authority (``INS-NIR``, ``INS-NIA`` or their OIDs, as ``rcp.minutes.dicom`` writes it), equals the
   patient's INS.
   *Or, when the file carries no usable identifier* (no PatientID with its issuer, no INS — a bare PatientID
   is not one): birth family name, first given name, birth date and sex all present on both sides and all equal
   (``by="traits"``). A file that does carry an identifier of another domain (a CD from another hospital) is
   never matched by its traits: it is refused, or reconciled by an explicit choice (``rcp.imaging.reconcile``,
   IHE Import Reconciliation Workflow).
2. *No strict trait contradicts*: birth family name, first given name, birth date and sex, whenever present on
   both sides, are equal (after the normalisation of the national identity rules: no accents, capitals,
   separators as spaces). A contradiction refuses the match whatever the identifier says: a file that carries
   the case's IPP over another person's name is a filing error, and filing it would put images under the
   wrong patient.

``match`` returns a ``Match`` that is true or false and says why in *field names* only (``birth_date``,
``identifier``...), so its message can be shown to anyone; the values are shown only to those allowed to see both
identities (``DicomPatient.as_json`` for the uploader of a file, who sees both the file and the case).

Also here, because every package checks them the same way: the INS-NIR control key, DICOM UID syntax, the Luhn
key (RPPS, FINESS), the FINESS number of an establishment and the national identifiers of a board (regional
cancer network, 3C, RCP) that the fiche RCP's header carries.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rcp.i18n import N_

__all__ = [
    "FINESS_PREFIX",
    "IDENTIFIER_MESSAGES",
    "IDENTITY_ATTRIBUTES",
    "IDENTITY_STATUSES",
    "IDNATSTRUCT_OID",
    "INS_AUTHORITIES",
    "INS_NIA_OID",
    "INS_NIR_OID",
    "INS_OIDS",
    "INS_SYSTEMS",
    "INS_TEST_OIDS",
    "RCP_NATIONAL_OIDS",
    "TYPED_STATUSES",
    "VALIDATION_MODES",
    "DicomPatient",
    "Identifier",
    "Match",
    "ServicePatient",
    "check_finess",
    "check_ins",
    "check_national_id",
    "finess_key_ok",
    "first_given_name",
    "identity_problems",
    "ins_authority",
    "ins_key_ok",
    "ins_may_leave",
    "ins_system",
    "ins_type_code",
    "is_ins",
    "is_uid",
    "luhn_key",
    "luhn_ok",
    "match",
    "pid32_codes",
    "plain_name",
]

#: INS-NIR (national health identifier) OID; .9 is the NIA (the number INSEE gives a person pending a NIR), .10
#: the test NIR and .11 the demo NIR (ANS "Référentiel INS", guide d'implémentation de l'INS: test and demo
#: identities must never be used in production).
INS_NIR_OID = "1.2.250.1.213.1.4.8"
INS_NIA_OID = "1.2.250.1.213.1.4.9"
INS_TEST_OIDS = frozenset({"1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"})
INS_OIDS = frozenset({INS_NIR_OID, INS_NIA_OID, *INS_TEST_OIDS})
#: What an IssuerOfPatientID (or its Universal Entity ID) says when the PatientID is an INS.
INS_AUTHORITIES = frozenset({"INS-NIR", "INS-NIA", "INS", *INS_OIDS})
#: The two kinds of INS, as the service stores them (``PatientIdentifier.system``) and as FR Core / PAM France
#: table 0203 names them: INS-NIR (the NIR, OID .8 — or .10/.11 for test and demo NIRs) and INS-NIA (the NIA,
#: OID .9, the number INSEE gives a person born abroad while their NIR is pending).
INS_SYSTEMS = ("INS-NIR", "INS-NIA")
#: Per INS OID: (FR Core fr-core-cs-v2-0203 identifier type, PAM France PID-3 CX.4.1 assigning authority name).
#: PAM France writes every INS with identifier type (CX.5) ``INS``; the authority (name & OID) tells them apart.
#: Test and demo NIRs keep the NIR's namespace (HD.1 is IS(20) in HL7 v2.5): their OID marks them.
_INS_KINDS = {
    INS_NIR_OID: ("INS-NIR", "ASIP-SANTE-INS-NIR"),
    INS_NIA_OID: ("INS-NIA", "ASIP-SANTE-INS-NIA"),
    "1.2.250.1.213.1.4.10": ("INS-NIR-TEST", "ASIP-SANTE-INS-NIR"),
    "1.2.250.1.213.1.4.11": ("INS-NIR-DEMO", "ASIP-SANTE-INS-NIR"),
}

#: The strict traits of the national identity rules, in the order a message names them.
STRICT_TRAITS = ("family_name", "given_name", "birth_date", "sex")

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_STRICT_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


# --- identifiers ------------------------------------------------------------------------------------------------


def is_uid(value: str, *, strict: bool = False) -> bool:
    """A DICOM UID (PS3.5 9.1): digits and dots, at most 64 characters.

    ``strict`` also refuses leading zeros in a component and single-component UIDs, as PS3.5 9.1 requires of UIDs
    *we* write; files from elsewhere are read with the lenient form (leading zeros are common in the field), which
    still keeps a UID safe as a path component.

    >>> is_uid("1.2.840.10008.1.2"), is_uid("1.2.03"), is_uid("1.2.03", strict=True), is_uid("../1")
    (True, True, False, False)
    """
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return False
    return bool((_STRICT_UID if strict else _UID).match(value))


def ins_key_ok(nir: str) -> bool:
    """Whether a 15-character INS-NIR has the right control key: 97 - (first 13 characters mod 97).

    Corsican départements 2A / 2B (characters 6-7) count as 19 / 18 for the key (INSEE rule).

    >>> ins_key_ok("255081416802538"), ins_key_ok("255081416802539"), ins_key_ok("25508141680253")
    (True, False, False)
    """
    if len(nir) != 15:
        return False
    body, key = nir[:13].upper(), nir[13:]
    corsica = {"2A": "19", "2B": "18"}.get(body[5:7])
    if corsica:
        body = body[:5] + corsica + body[7:]
    if not (body.isdigit() and key.isdigit()):
        return False
    return 97 - int(body) % 97 == int(key)


def luhn_ok(digits: str) -> bool:
    """ISO/IEC 7812-1 Annex B (Luhn): from the right, every second digit doubled (minus 9 past 9); sum % 10 == 0.

    The key of RPPS numbers (``rcp.people.check_rpps``) and of FINESS numbers (:func:`finess_key_ok`).

    >>> luhn_ok("750712184"), luhn_ok("750712185"), luhn_ok("")
    (True, False, False)
    """
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_key(body: str) -> str:
    """The Luhn digit that completes ``body`` (tests and the demo make valid RPPS and FINESS numbers with it).

    >>> luhn_key("75071218")
    '4'
    """
    if not body or not body.isascii() or not body.isdigit():
        raise ValueError(f"'body' must be digits (got {len(body)} characters, not all digits)")
    return next(str(k) for k in range(10) if luhn_ok(body + str(k)))


#: The ANS OID of national structure identifiers (IdNatStruct); a FINESS number is written "1" + FINESS under it
#: (ANS, "Identification des structures": 1 = FINESS, 3 = SIRET, 4 = RPPS-rang), as the FRCP examples write the
#: custodian and the establishment of the meeting.
IDNATSTRUCT_OID = "1.2.250.1.71.4.2.2"
FINESS_PREFIX = "1"
#: The national identifiers of an RCP in the fiche's header (FRCP 2022.01, encompassingEncounter/id, each 1..1):
#: the regional cancer network (RRC), the RCP manager (3C, "Gestionnaire RCP") and the RCP itself, each the
#: extension of its root (the official example: RRC 5201, 3C 520114, RCP 27011113).
RCP_NATIONAL_OIDS = {
    "regional_network": "1.2.250.1.161.1.20.1.1",
    "coordination_centre": "1.2.250.1.161.1.20.2.1",
    "board": "1.2.250.1.161.1.20.3.1",
}

_FINESS_LENGTH = N_("A FINESS number has 9 characters: the département (2 characters, 2A or 2B for Corsica) and "
                    "7 digits, the last a check digit.")
_FINESS_KEY = N_("This FINESS number fails its check digit (Luhn key): check for a typing error.")
_NATIONAL_ID = N_("A national identifier has 1 to 20 letters or digits, as the regional cancer network gives it.")
#: The messages of :func:`check_finess` and :func:`check_national_id`: stable English sentences the pages
#: translate (``rcp.scheduling.pages``); they name the rule, never the value received.
IDENTIFIER_MESSAGES = frozenset({_FINESS_LENGTH, _FINESS_KEY, _NATIONAL_ID})
_FINESS = re.compile(r"^(?:[0-9]{2}|2[AB])[0-9]{7}$")
_NATIONAL = re.compile(r"^[A-Za-z0-9]{1,20}$")


def finess_key_ok(finess: str) -> bool:
    """Whether a 9-character FINESS number (établissement or entité juridique) has the right check digit.

    The ninth character is a Luhn key over the first eight (ATIH / ANS FINESS numbering: two characters of
    département, six of order, one key), e.g. the AP-HP's 750712184. Corsican numbers start with 2A or 2B:
    how their key reads the letters is not settled in the sources the service follows, so for them only the
    format is checked (they are accepted), rather than refusing a real establishment.

    >>> finess_key_ok("750712184"), finess_key_ok("490007929"), finess_key_ok("750712185")
    (True, True, False)
    >>> finess_key_ok("2A0000000"), finess_key_ok("75071218")
    (True, False)
    """
    value = finess.upper()
    if not _FINESS.match(value):
        return False
    return value[:2] in {"2A", "2B"} or luhn_ok(value)


def check_finess(value: str) -> str:
    """A FINESS number with spaces removed (the ANS site prints ``75 071 218 4``), or "" for none.

    ``ValueError`` with one of :data:`IDENTIFIER_MESSAGES` (the rule, never the value).

    >>> check_finess(" 75 071 218 4 ")
    '750712184'
    >>> check_finess("750712185")
    Traceback (most recent call last):
    ...
    ValueError: This FINESS number fails its check digit (Luhn key): check for a typing error.
    """
    found = "".join(value.split()).upper()
    if not found:
        return ""
    if not _FINESS.match(found):
        raise ValueError(_FINESS_LENGTH)
    if not finess_key_ok(found):
        raise ValueError(_FINESS_KEY)
    return found


def check_national_id(value: str) -> str:
    """A national identifier of a regional cancer network, a 3C or an RCP (:data:`RCP_NATIONAL_OIDS`), trimmed,
    or "" for none (the fiche then says nullFlavor UNK: never an invented id).

    >>> check_national_id(" 27011113 ")
    '27011113'
    """
    found = value.strip()
    if found and not _NATIONAL.match(found):
        raise ValueError(_NATIONAL_ID)
    return found


def is_ins(system: str) -> bool:
    """Whether an identifier system is the INS (NIR or NIA).

    >>> is_ins("INS-NIR"), is_ins("INS-NIA"), is_ins("IPP")
    (True, True, False)
    """
    return system in INS_SYSTEMS


def ins_system(oid: str) -> str:
    """The system an INS is stored under, from its OID: ``INS-NIA`` for the NIA (.9), else ``INS-NIR``.

    >>> ins_system(INS_NIA_OID), ins_system(INS_NIR_OID), ins_system("1.2.250.1.213.1.4.10")
    ('INS-NIA', 'INS-NIR', 'INS-NIR')
    """
    return "INS-NIA" if oid == INS_NIA_OID else "INS-NIR"


def ins_type_code(oid: str) -> str:
    """FR Core identifier type (fr-core-cs-v2-0203) of an INS with this OID: INS-NIR, INS-NIA, INS-NIR-TEST, ...

    >>> ins_type_code(INS_NIA_OID), ins_type_code("1.2.250.1.213.1.4.11")
    ('INS-NIA', 'INS-NIR-DEMO')
    """
    return _INS_KINDS.get(oid, _INS_KINDS[INS_NIR_OID])[0]


def ins_authority(oid: str) -> str:
    """HL7 v2 assigning authority (CX.4, HD: namespace & OID & ISO) of an INS, as IHE PAM France writes PID-3.

    >>> ins_authority(INS_NIA_OID)
    'ASIP-SANTE-INS-NIA&1.2.250.1.213.1.4.9&ISO'
    """
    known = oid if oid in _INS_KINDS else INS_NIR_OID
    return f"{_INS_KINDS[known][1]}&{known}&ISO"


@dataclass(frozen=True)
class Identifier:
    """An identifier of the service's patient: ``system`` is ``IPP`` (with its assigning authority), ``INS-NIR``
    or ``INS-NIA``."""

    system: str
    value: str
    assigner: str = ""


# --- identity status (référentiel national d'identitovigilance, RNIV 1, 2021) -----------------------------------

#: The four statuses of the RNIV, from the weakest: *provisional* (no identity document seen), *recovered* (INS
#: returned by the INSi service but no document checked), *validated* (a high-trust document checked, INS not
#: confirmed), *qualified* (both). Only the hospital's identity server reaches *qualified*: it calls INSi.
IDENTITY_STATUSES = ("provisional", "recovered", "validated", "qualified")
#: What an identity typed in the service may claim: the service never calls INSi, so never *qualified*.
TYPED_STATUSES = ("provisional", "validated")
#: The identity attributes of the RNIV, recorded beside the status and shown wherever the patient is.
IDENTITY_ATTRIBUTES = ("doubtful", "fictitious", "homonym")
#: The high-trust identity documents (RNIV "dispositifs d'identification à haut niveau de confiance") a status is
#: validated on, with their FR Core code (fr-core-cs-mode-validation-identity: the identity-reliability
#: extension's ``validationMode``; the same codes as PAM France's ZFD).
VALIDATION_MODES = {"passport": "PA", "id_card": "CN", "residence_permit": "CS", "birth_certificate": "AN",
                    "family_record_book": "LE"}
#: HL7 v2 table 0445 as IHE PAM France uses it in PID-32 and FR Core codes it (fr-core-cs-v2-0445; the statuses
#: also in fr-core-cs-identity-status, the attributes in fr-core-cs-identity-status-comment): the four RNIV
#: statuses PROV, RECUP, VALI, QUAL; the attributes DOUT (identité douteuse), FICT (identité fictive) and HOMA
#: (homonyme avéré, the RNIV "homonyme" attribute).
_PID32 = {"provisional": "PROV", "recovered": "RECUP", "validated": "VALI", "qualified": "QUAL",
          "doubtful": "DOUT", "fictitious": "FICT", "homonym": "HOMA"}
#: The reverse, for identities received from the hospital (PID-32 repetitions). VIDE ("identité non encore
#: qualifiée", older feeds) reads as provisional; the other management codes of the table (DPOT, COLP...) are
#: not identity attributes and are ignored.
PID32_STATUS = {**{code: status for status, code in _PID32.items() if status in IDENTITY_STATUSES},
                "VIDE": "provisional"}
PID32_ATTRIBUTE = {code: attribute for attribute, code in _PID32.items() if attribute in IDENTITY_ATTRIBUTES}


def identity_problems(status: str, attributes: Iterable[str]) -> list[tuple[str, str]]:
    """What the national rules forbid in a status with these attributes (field, message), empty when allowed.

    RNIV 1 §3.2.3 [EXI SI 09]: an identity marked doubtful or fictitious stays *provisional* (no other status may
    be given, and INSi is not called for it); the fictitious and doubtful attributes are never combined (the FR
    Core invariants fr-core-identity-reliability-1 and -2 say the same).

    >>> identity_problems("validated", ["doubtful"])[0][0]
    'identity_status'
    >>> identity_problems("provisional", ["doubtful", "homonym"])
    []
    """
    chosen = set(attributes)
    problems: list[tuple[str, str]] = []
    if chosen & {"doubtful", "fictitious"} and status != "provisional":
        problems.append(("identity_status", "a doubtful or fictitious identity stays provisional (RNIV EXI SI 09)"))
    if {"doubtful", "fictitious"} <= chosen:
        problems.append(("identity_attributes", "an identity is not both doubtful and fictitious (RNIV)"))
    return problems


def ins_may_leave(status: str) -> bool:
    """Whether the INS may be written into a document or message: only for a *qualified* identity (RNIV, "Règles
    d'utilisation de l'INS": the INS is referenced and shared only once the identity is qualified). Every writer
    (DICOM KOS/PDF, HL7, FHIR, the fiche PDF) asks here.

    >>> [ins_may_leave(s) for s in IDENTITY_STATUSES]
    [False, False, False, True]
    """
    return status == "qualified"


def pid32_codes(status: str, attributes: Iterable[str] = ()) -> list[str]:
    """PID-32 (identity reliability code, repeating) for a status and its attributes.

    >>> pid32_codes("validated", ["homonym"])
    ['VALI', 'HOMA']
    """
    return [_PID32[status if status in IDENTITY_STATUSES else "provisional"],
            *(_PID32[a] for a in attributes if a in IDENTITY_ATTRIBUTES)]


def check_ins(value: str, oid: str, *, sex: str = "unknown", birth_date: date | None = None,
              production: bool = False) -> list[tuple[str, str]]:
    """What is wrong with an INS (field, message), empty when it may be recorded.

    The key (``ins_key_ok``); the OID (.8 NIR, .9 NIA, .10/.11 test and demo — refused in production); and the
    traits the number encodes (INSEE: character 1 the sex, 1 male or 2 female, 7/8 for a temporary number;
    characters 2-3 the year of birth, 4-5 the month, 20 or more when the month was unknown) against the
    patient's sex and birth date.

    >>> check_ins("255081416802538", INS_NIR_OID, sex="female", birth_date=date(1955, 8, 1))
    []
    >>> [f for f, _ in check_ins("255081416802538", INS_NIR_OID, sex="male", birth_date=date(1956, 8, 1))]
    ['sex', 'birth_date']
    >>> check_ins("255081416802538", "1.2.250.1.213.1.4.10", production=True)[0][0]
    'oid'
    """
    problems: list[tuple[str, str]] = []
    value = value.strip().upper()
    if not ins_key_ok(value):
        problems.append(("value", "not a valid INS: 15 characters whose last two are the control key"))
        return problems
    if oid not in INS_OIDS:
        problems.append(("oid", (f"an INS OID is {INS_NIR_OID} (NIR), {INS_NIA_OID} (NIA), or .10/.11 for "
                                 "test identities")))
    elif production and oid in INS_TEST_OIDS:
        problems.append(("oid", "a test or demo INS (OID .10 or .11) cannot be recorded in production"))
    encoded = {"1": "male", "3": "male", "7": "male", "2": "female", "4": "female", "8": "female"}.get(value[0])
    if encoded and sex in {"female", "male"} and sex != encoded:
        problems.append(("sex", f"the INS is that of a {encoded} patient (its first digit)"))
    if birth_date is not None:
        month = int(value[3:5])
        if int(value[1:3]) != birth_date.year % 100 or (1 <= month <= 12 and month != birth_date.month):
            problems.append(("birth_date", "the INS encodes another year or month of birth (characters 2 to 5)"))
    return problems


# --- the two sides ------------------------------------------------------------------------------------------------


def _plain(text: str) -> str:
    """A name as the national identity rules compare it: no accents, capitals, any separator one space.

    >>> _plain("  Müller-Nguyen "), _plain("D'ARC"), _plain("Lefèvre")
    ('MULLER NGUYEN', 'D ARC', 'LEFEVRE')
    """
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return " ".join(re.sub(r"[^0-9A-Z]+", " ", bare).split())


def plain_name(text: str) -> str:
    """A name as the national identity rules compare it (public: the duplicate search uses it too)."""
    return _plain(text)


def first_given_name(given_names: str) -> str:
    """The first given name as the rule compares it (public: the duplicate search uses it too)."""
    return _first_given(given_names)


def _first_given(given_names: str) -> str:
    """The first given name, compared on its first word: "Jean-Pierre" and "JEAN PIERRE" agree (both spellings
    are met), and so does "Jean" (a DICOM name often keeps one given name)."""
    words = _plain(given_names.replace(",", " ")).split(" ")
    return words[0] if words else ""


def _same_authority(a: str, b: str) -> bool:
    return bool(a.strip()) and a.strip().casefold() == b.strip().casefold()


@dataclass(frozen=True)
class ServicePatient:
    """The service's patient, as the rule needs it (``rcp.scheduling.models.Patient`` and its identifiers)."""

    identifiers: tuple[Identifier, ...] = ()
    #: Birth family name.
    family_name: str = ""
    given_names: str = ""
    birth_date: date | None = None
    #: HL7 administrative gender: female, male, other, unknown.
    sex: str = "unknown"

    @classmethod
    def of(cls, patient: Any, identifiers: Iterable[Any]) -> ServicePatient:
        """From the scheduling tables' ``Patient`` and its ``PatientIdentifier`` rows (anything with the fields).

        An INS's assigner is its OID (.8 NIR, .9 NIA...): the national register has no hospital name."""
        return cls(
            identifiers=tuple(Identifier(str(i.system), str(i.value),
                                         str((getattr(i, "assigner_oid", "") if is_ins(str(i.system)) else i.assigner)
                                             or "")) for i in identifiers),
            family_name=str(patient.family_name or ""),
            given_names=str(patient.given_names or ""),
            birth_date=patient.birth_date,
            sex=str(patient.sex or "unknown"),
        )

    @property
    def dicom_sex(self) -> str:
        return {"female": "F", "male": "M"}.get(self.sex, "")

    def as_json(self) -> dict[str, str]:
        """The case's patient as the DICOM side would read it (shown beside a refused file, to its uploader)."""
        ipp = next((i for i in self.identifiers if i.system == "IPP"), None)
        return {"patient_id": ipp.value if ipp else "", "issuer": ipp.assigner if ipp else "",
                "family_name": self.family_name, "given_names": self.given_names,
                "birth_date": self.birth_date.isoformat() if self.birth_date else "", "sex": self.dicom_sex}


@dataclass(frozen=True)
class DicomPatient:
    """The patient a DICOM file or study names (PS3.3 C.7.1.1; PN as in PS3.5 6.2: ``FAMILY^GIVEN^MIDDLE...``)."""

    patient_id: str = ""
    issuer: str = ""
    #: Other Patient IDs Sequence (0010,1002) items: (PatientID, IssuerOfPatientID or its Universal Entity ID).
    other_ids: tuple[tuple[str, str], ...] = ()
    name: str = ""
    #: DA, YYYYMMDD.
    birth_date: str = ""
    #: M, F, O or empty.
    sex: str = ""

    @classmethod
    def from_dataset(cls, ds: Any) -> DicomPatient:
        """From a pydicom ``Dataset`` (a file, or QIDO-RS / WADO-RS metadata converted to one)."""
        def text(item: Any, keyword: str) -> str:
            value = item.get(keyword)
            if value is None:
                return ""
            if isinstance(value, dict):  # DICOM JSON PN (PS3.18 F.2.2)
                return str(value.get("Alphabetic", "")).strip()
            return str(value).strip()

        others: list[tuple[str, str]] = []
        for item in ds.get("OtherPatientIDsSequence") or []:
            issuer = text(item, "IssuerOfPatientID")
            for qualifier in item.get("IssuerOfPatientIDQualifiersSequence") or []:
                issuer = issuer or text(qualifier, "UniversalEntityID")
                if text(qualifier, "UniversalEntityID") in INS_OIDS:
                    issuer = text(qualifier, "UniversalEntityID")
            others.append((text(item, "PatientID"), issuer))
        issuer = text(ds, "IssuerOfPatientID")
        for qualifier in ds.get("IssuerOfPatientIDQualifiersSequence") or []:
            issuer = issuer or text(qualifier, "UniversalEntityID")
        return cls(patient_id=text(ds, "PatientID"), issuer=issuer, other_ids=tuple(others),
                   name=text(ds, "PatientName"), birth_date=text(ds, "PatientBirthDate"),
                   sex=text(ds, "PatientSex").upper())

    @property
    def family_name(self) -> str:
        return self.name.split("=")[0].split("^")[0]

    @property
    def given_names(self) -> str:
        parts = self.name.split("=")[0].split("^")
        return parts[1] if len(parts) > 1 else ""

    def identifiers(self) -> Iterable[tuple[str, str]]:
        yield self.patient_id, self.issuer
        yield from self.other_ids

    def as_json(self) -> dict[str, str]:
        """What the file says, for its uploader (never for someone who may not see this patient)."""
        born = self.birth_date
        if len(born) == 8 and born.isdigit():
            born = f"{born[:4]}-{born[4:6]}-{born[6:]}"
        return {"patient_id": self.patient_id, "issuer": self.issuer, "family_name": self.family_name,
                "given_names": self.given_names, "birth_date": born, "sex": self.sex}


# --- the rule -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """The rule's answer: true when the DICOM patient is the service's patient.

    ``by`` says what matched (``IPP``, ``INS-NIR``/``INS-NIA``, or ``traits`` for a file without a usable identifier); ``refused`` names the fields that refused it — ``identifier``
    when no identifier is in common, else the strict traits that contradict — never their values.
    """

    by: str = ""
    refused: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.by) and not self.refused

    @property
    def message(self) -> str:
        """Field names only: safe for logs and for anyone."""
        if self:
            return f"same patient (by {self.by})"
        parts = []
        if "identifier" in self.refused:
            parts.append("no identifier in common (PatientID with IssuerOfPatientID must equal one of the "
                         "patient's IPP with its hospital, or the INS; a file without any identifier needs birth "
                         "name, first given name, birth date and sex all present and equal)")
        traits = [f for f in self.refused if f != "identifier"]
        if traits:
            parts.append("identity traits contradict: " + ", ".join(traits))
        return "; ".join(parts)


def _contradictions(patient: ServicePatient, dicom: DicomPatient) -> tuple[str, ...]:
    found: list[str] = []
    ours, theirs = _plain(patient.family_name), _plain(dicom.family_name)
    if ours and theirs and ours != theirs:
        found.append("family_name")
    ours, theirs = _first_given(patient.given_names), _first_given(dicom.given_names)
    if ours and theirs and ours != theirs:
        found.append("given_name")
    theirs = dicom.birth_date.strip()
    if patient.birth_date is not None and theirs and theirs != patient.birth_date.strftime("%Y%m%d"):
        found.append("birth_date")
    ours, theirs = patient.dicom_sex, dicom.sex.strip().upper()
    if ours and theirs in {"F", "M"} and ours != theirs:
        found.append("sex")
    return tuple(found)


def _shared_identifier(patient: ServicePatient, dicom: DicomPatient) -> str:
    for value, issuer in dicom.identifiers():
        value = value.strip()
        if not value or not issuer.strip():
            continue
        for ours in patient.identifiers:
            if ours.value != value:
                continue
            if ours.system == "IPP" and _same_authority(ours.assigner, issuer):
                return "IPP"
            if is_ins(ours.system) and issuer.strip().upper() in {a.upper() for a in INS_AUTHORITIES}:
                return ours.system
    return ""


def _usable_identifier(dicom: DicomPatient) -> bool:
    """Whether the file names its patient by an identifier with its authority (an IPP with its issuer, an INS)."""
    return any(value.strip() and issuer.strip() for value, issuer in dicom.identifiers())


def _all_traits_equal(patient: ServicePatient, dicom: DicomPatient) -> bool:
    """The fallback: the four strict traits all present on both sides, and equal (normalised)."""
    ours = (_plain(patient.family_name), _first_given(patient.given_names),
            patient.birth_date.strftime("%Y%m%d") if patient.birth_date else "", patient.dicom_sex)
    theirs = (_plain(dicom.family_name), _first_given(dicom.given_names), dicom.birth_date.strip(),
              dicom.sex.strip().upper() if dicom.sex.strip().upper() in {"F", "M"} else "")
    return all(ours) and ours == theirs


def match(patient: ServicePatient, dicom: DicomPatient) -> Match:
    """Whether ``dicom`` names ``patient`` (the module docstring states the rule).

    >>> ours = ServicePatient((Identifier("IPP", "100001", "CHU Lyon"),), "Lefèvre", "Hélène", date(1961, 4, 5),
    ...                       "female")
    >>> bool(match(ours, DicomPatient("100001", "chu lyon", name="LEFEVRE^HELENE", birth_date="19610405", sex="F")))
    True
    >>> match(ours, DicomPatient("100001", "", name="LEFEVRE^HELENE")).refused      # no issuer: no match
    ('identifier',)
    >>> match(ours, DicomPatient("100001", "CHU Lyon", name="DOE^JANE", birth_date="19700101")).message
    'identity traits contradict: family_name, given_name, birth_date'
    >>> match(ours, DicomPatient("", "", name="LEFEVRE^HELENE", birth_date="19610405", sex="F")).by  # no identifier
    'traits'
    """
    by = _shared_identifier(patient, dicom)
    contradictions = _contradictions(patient, dicom)
    if not by and not _usable_identifier(dicom) and _all_traits_equal(patient, dicom):
        by = "traits"
    if not by:
        return Match(by="", refused=("identifier", *contradictions))
    return Match(by=by, refused=contradictions)

