"""Cancer staging as the oncologist wrote it: TNM with its prefixes and edition, and the other classifications.

The one home of the staging rules (the fiche, the case's free-text staging, the PDF and the EPR messages all read
them from here). Pure: no database, no I/O.

**TNM** follows the UICC *TNM Classification of Malignant Tumours*, 8th edition (Brierley, Gospodarowicz,
Wittekind, 2017; "General rules of the TNM system", identical in these points to the AJCC Cancer Staging Manual,
8th edition, chapter 1):

- prefixes: ``c`` clinical, ``p`` pathological, ``y`` classified during or after multimodal (neoadjuvant) therapy,
  ``r`` recurrent tumour after a disease-free interval, ``a`` classified first at autopsy. ``y`` and ``r`` combine
  with ``c``/``p`` (``ypT0``, ``ycT2``, ``rpT1``, ``ryp...``); ``a`` stands alone. The prefix is kept exactly: a
  ``ypT0N0M0`` (complete response after neoadjuvant treatment) is never a ``cT0N0M0``. No prefix is kept as no
  prefix (UICC reads it as clinical, and it goes in the clinical staging).
- T: ``TX``, ``T0``, ``Tis`` (with the breast qualifiers ``(DCIS)``, ``(LCIS)``, ``(Paget)``), ``Ta`` (bladder),
  ``T1``-``T4`` with subdivisions ``a``-``d`` (and a digit, e.g. cervix ``T1b2``), ``T1mi``; multiplicity ``(m)``
  or a number, e.g. ``T2(m)``.
- N: ``NX``, ``N0``, ``N1``-``N3`` with ``a``-``c``, ``N1mi``; sentinel node ``(sn)`` (also written ``sn``), fine
  needle ``(f)``, isolated tumour cells ``(i+)``/``(i-)`` and ``(mol+)``/``(mol-)``.
- M: ``M0``, ``M1`` with ``a``-``d``, ``M0(i+)``, ``M1`` with a site (``M1(PUL)``, ``(OSS)``...). ``MX`` is refused:
  UICC removed it in the 7th edition (leave M out when it was not assessed). ``pM0`` is refused: there is no
  pathological M0 (UICC 8th ed. p. 9; write ``cM0``); ``pM1`` exists.
- per-category prefixes: "cT2 pN1 M0" or "pT2 pN1 cM0" are read category by category. A category written with
  the classification's own c/p letter (or its whole prefix, ``ypT0 ypN0``) keeps no prefix of its own; a different
  c/p letter is kept on that category (``pT2 N1 cM0``). ``y``, ``r`` and ``a`` describe the whole classification:
  on a later category they are refused. In compact writing the letters between two categories belong to the first
  when they can (``T1cN0`` is T1c N0; write ``T1 cN0`` with a space for a clinical N).
- categories not written stay *not stated* (``rpT1 N0``: M is empty, never guessed as M0 or MX); T is required.
- stage group (optional): ``0``, ``0a``, ``0is``, ``I``-``IV`` with ``A``-``D`` and a digit (``IIIC1``), ``IS``.
- edition: ``7`` or ``8``; a draft may lack it (:attr:`Tnm.edition_to_confirm`), a signed fiche may not
  (``rcp.minutes.fiche.Fiche.check_complete``). Free text may end with the edition, as :meth:`Tnm.display` writes
  it: "ypT0 N0 M0 (TNM 8th ed.)", "(UICC 8)", "TNM8".

Every refusal is a :class:`StagingError` naming the part (``prefix``, ``t``, ``n``, ``m``, ``stage``,
``edition``, ``text``) and what is expected; messages never quote what was typed.

**Laterality** is coded in SNOMED CT qualifier values, as the CI-SIS FRCP 2022.01 example codes it
(JDV_ModificateurTopographique_CISIS, 1.2.250.1.213.1.1.5.688; the same codes as HL7 mCODE
LateralityQualifierVS). **Other classifications** (FIGO, Ann Arbor, ISS, R-ISS, Binet, Rai, Gleason, ISUP grade
group, BCLC) are a system key and a value checked against that system's table (:data:`CLASSIFICATIONS`), the
FRCP "Autre classification du stade" (LOINC 21914-7).

Example::

    >>> tnm = Tnm.from_text("ypT0N0M0 (TNM 8th ed.)")
    >>> tnm.label(), tnm.edition, tnm.pathological
    ('ypT0 N0 M0', '8', True)
    >>> Tnm.from_text("pT3 pN1b cM0").label()
    'pT3 N1b cM0'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from rcp.i18n import N_

__all__ = [
    "CLASSIFICATIONS",
    "EDITIONS",
    "LATERALITIES",
    "Classification",
    "Laterality",
    "OtherStage",
    "StagingError",
    "Tnm",
    "choices",
    "parse_diagnosis_date",
    "parse_laterality",
]

#: TNM editions a fiche may cite (UICC 7th, 2009; 8th, 2017).
EDITIONS = ("7", "8")

Translate = Callable[[str], str]


class StagingError(ValueError):
    """A staging value the rules do not accept; ``part`` names where (``t``, ``edition``, ``0.value`` ...)."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(message)
        self.part = part


# -- TNM grammar (UICC TNM 8th ed., General rules) -----------------------------------------------------------------

_T = re.compile(r"(?:X|0|is(?:\((?:DCIS|LCIS|Paget)\))?|a|[1-4](?:mi|[a-d][1-3]?)?)(?:\((?:m|[2-9])\))?", re.IGNORECASE)
_N_SUFFIX = r"(?:\((?:sn|f|i\+|i-|mol\+|mol-)\)|sn)"
_N = re.compile(rf"(?:X|0|1mi|[1-3][a-c]?){_N_SUFFIX}{{0,2}}", re.IGNORECASE)
_M_SITES = "PUL|OSS|HEP|BRA|LYM|MAR|PLE|PER|ADR|SKI|OTH"
_M = re.compile(rf"(?:0(?:\((?:i\+|mol\+)\))?|1[a-d]?(?:\((?:{_M_SITES})\))?)", re.IGNORECASE)
_GRAMMAR = {"t": _T, "n": _N, "m": _M}
_EXAMPLES = {"t": "T0, Tis, T1mi, T2a, T4b", "n": "N0, N1mi, N2b, N0(sn)", "m": "M0, M1, M1c"}

#: The categories as the service checked them before this module (fiches signed then are read with it).
_LEGACY = {
    "t": re.compile(r"T(X|is|a|0|[1-4](mi|[a-d][1-3]?)?)(\((m|\d+)\))?"),
    "n": re.compile(r"N(X|0|[1-3]([a-c]|mi)?)(\((sn|i\+|i-|mol\+|mol-|f)\))?"),
    "m": re.compile(r"M(X|0|1[a-d]?)(\((i\+|mol\+)\))?"),
}
_STAGE = re.compile(r"(?:0|0a|0is|IS|I{1,3}|IV)(?:[A-D][1-3]?)?", re.IGNORECASE)
#: y, r, then c or p; or a alone (UICC 8th ed., "Additional descriptors").
_PREFIX = re.compile(r"r?y?[cp]?|a")
#: Where an N or an M category starts: the letter followed by its first character.
_CATEGORY = re.compile(r"[NM](?=[0-9X])", re.IGNORECASE)
_EDITION_TEXT = re.compile(
    r"\(?\s*(?:TNM|UICC)\s*-?\s*(?P<edition>\d{1,2})\s*(?:th|e|ème|eme)?\s*"
    r"(?:ed\.?|edition|édition|éd\.?)?\s*\)?\s*$", re.IGNORECASE)


def _canonical(kind: str, body: str) -> str:
    """A category in the UICC's letter case: ``t1MI`` -> ``T1mi``, ``nx`` -> ``NX``, ``m1(pul)`` -> ``M1(PUL)``."""
    out = body.lower().replace("x", "X")
    qualifiers = {"t": ("DCIS", "LCIS", "Paget"), "m": tuple(_M_SITES.split("|"))}.get(kind, ())
    for qualifier in qualifiers:
        out = re.sub(re.escape(qualifier), qualifier, out, flags=re.IGNORECASE)
    if kind == "n":
        out = re.sub(r"(?<!\()sn(?!\))", "(sn)", out)  # "N0sn" is written N0(sn) (UICC 8th ed.)
    return kind.upper() + out


def _check_category(kind: str, code: str, path: str) -> str:
    """``code`` ("T2a", "n1mi") checked against the UICC grammar; its canonical form, or StagingError on ``path``."""
    letter, body = code[:1], code[1:]
    if letter.lower() != kind or not _GRAMMAR[kind].fullmatch(body):
        if kind == "m" and body.upper() == "X":
            raise StagingError(path, N_("MX is no longer used (UICC TNM 7th and 8th editions): write M0 or M1, or "
                                     "leave M out when it was not assessed"))
        raise StagingError(path, f"not a TNM {kind.upper()} category (UICC TNM 8th ed.; e.g. {_EXAMPLES[kind]})")
    return _canonical(kind, body)


def _check_stage(value: str, path: str) -> str:
    stage = value.strip()
    if stage.lower().startswith(("stage ", "stade ")):
        stage = stage[6:].strip()
    if not stage:
        return ""
    if not _STAGE.fullmatch(stage):
        raise StagingError(path, N_("not a stage group (UICC TNM 8th ed.; e.g. 0, IA1, IIB, IIIC, IVA)"))
    head = re.match(r"0is|0a|0|IS|I{1,3}V?|IV", stage, re.IGNORECASE)
    assert head is not None
    lead = head.group().lower() if head.group().startswith("0") else head.group().upper()
    return lead + stage[head.end():].upper()


def _check_edition(value: Any, path: str) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise StagingError(path, N_("expected the TNM edition: 7 or 8"))
    edition = value.strip()
    if edition and edition not in EDITIONS:
        raise StagingError(path, N_("expected the TNM edition: 7 or 8 (UICC 7th, 2009; 8th, 2017)"))
    return edition


def _check_prefix(value: str, path: str) -> str:
    prefix = value.strip()
    if not _PREFIX.fullmatch(prefix.lower()):
        raise StagingError(path, N_("not a TNM prefix: c, p, y, r or a, combined as yc, yp, rc, rp (UICC TNM 8th ed.)"))
    return prefix.lower()


def _cp(prefix: str) -> str:
    """The clinical/pathological letter of a prefix ("" when it has none: read as clinical)."""
    return "p" if prefix.endswith(("p", "a")) else ("c" if prefix.endswith("c") else "")


@dataclass(frozen=True)
class Tnm:
    """One TNM classification as written: its prefix, T, N, M (N and M may be not stated), stage, edition.

    The FRCP "Tumeur" section codes it (LOINC 21905-5/21906-3/21907-1 clinical, 21899-0/21900-6/21901-4
    pathological; stage group 21908-9 clinical, 21902-2 pathological) in code system TNM_UICC with the edition as
    ``codeSystemVersion``.
    """

    prefix: str
    t: str
    n: str = ""
    m: str = ""
    edition: str = ""
    stage: str = ""
    #: A category's own c/p letter when it differs from the classification's ("pT2 N1 cM0": ``m_prefix`` "c").
    n_prefix: str = ""
    m_prefix: str = ""

    # -- reading --

    @classmethod
    def from_json(cls, value: Mapping[str, Any], *, legacy_prefix: str = "") -> Tnm:
        """Read the stored or posted form; ``StagingError`` names the part.

        Either ``{"text": "ypT0N0M0", "edition": "8", "stage": ""}`` (what the form sends, parsed by
        :meth:`from_text`) or the structured form :meth:`as_json` writes. Fiches stored before the prefix was kept
        have no ``prefix`` key: ``legacy_prefix`` ("c" or "p", what their field meant and what they showed).
        """
        text = value.get("text")
        if text is None and "prefix" not in value:
            return cls._legacy(value, legacy_prefix)
        edition = _check_edition(value.get("edition"), "edition")
        stage = _check_stage(_str(value.get("stage"), "stage"), "stage")
        if text is not None:
            parsed = cls.from_text(_str(text, "text"))
            return cls(prefix=parsed.prefix, t=parsed.t, n=parsed.n, m=parsed.m, n_prefix=parsed.n_prefix,
                       m_prefix=parsed.m_prefix, edition=edition or parsed.edition, stage=stage or parsed.stage)
        prefix = _check_prefix(_str(value.get("prefix", legacy_prefix), "prefix"), "prefix")
        t = _str(value.get("t"), "t")
        if not t.strip():
            raise StagingError("t", N_("the T category is required (e.g. T2a; T0 or TX when there is none)"))
        tnm = cls(
            prefix=prefix,
            t=_check_category("t", t.strip(), "t"),
            n=_check_category("n", n, "n") if (n := _str(value.get("n"), "n").strip()) else "",
            m=_check_category("m", m, "m") if (m := _str(value.get("m"), "m").strip()) else "",
            edition=edition,
            stage=stage,
            n_prefix=_category_prefix(_str(value.get("n_prefix"), "n"), prefix, "n"),
            m_prefix=_category_prefix(_str(value.get("m_prefix"), "m"), prefix, "m"),
        )
        tnm._check_m()
        return tnm

    @classmethod
    def _legacy(cls, value: Mapping[str, Any], prefix: str) -> Tnm:
        """A value stored before prefixes were kept, read by the rule it was checked with then.

        Signed fiches are never rewritten, so what the former rule accepted (MX, an edition such as 6, N2mi) must
        still read; the prefix is the field's letter, as those fiches showed it.
        """
        parts = {}
        for kind in ("t", "n", "m"):
            code = _str(value.get(kind), kind).strip()
            try:
                parts[kind] = _check_category(kind, code, kind) if code or kind == "t" else ""
            except StagingError:
                if not _LEGACY[kind].fullmatch(code):
                    raise
                parts[kind] = code
        edition = _str(value.get("edition"), "edition").strip()
        if edition and not (edition.isdigit() and len(edition) <= 2):
            raise StagingError("edition", N_("expected the TNM edition: 7 or 8"))
        return cls(prefix=prefix, t=parts["t"], n=parts["n"], m=parts["m"], edition=edition,
                   stage=_check_stage(_str(value.get("stage"), "stage"), "stage"))

    @classmethod
    def from_text(cls, text: str) -> Tnm:
        """Read "ypT0N0M0", "cT2a N1 M0", "pT3 pN1b cM0 (TNM 8th ed.)" (any letter case, any spacing).

        ``StagingError`` names the part that is not understood; nothing is guessed.
        """
        if len(text) > 200:
            raise StagingError("text", N_("too long for a TNM classification: at most 200 characters"))
        edition = ""
        found = _EDITION_TEXT.search(text)
        if found:
            edition = _check_edition(found["edition"], "edition")
            text = text[:found.start()]
        text = text.strip()
        head = re.match(r"([a-z]*?)\s*T", text, re.IGNORECASE)
        if head is None:
            raise StagingError("t", N_("write the T category first, with its prefix (e.g. cT2, ypT0; TX when unknown)"))
        if len(head.group(1)) > 3 or set(head.group(1).lower()) - set("cpyra"):
            raise StagingError("text", N_("not a TNM classification: write it as cT2 N0 M0 or ypT0 N0 M0 (prefixes "
                                       "c, p, y, r, a; UICC TNM 8th ed.)"))
        prefix = _check_prefix(head.group(1), "prefix")
        starts = [m.start() for m in _CATEGORY.finditer(text, head.end())]
        bounds = [head.end() - 1, *starts, len(text)]
        bodies: dict[str, tuple[str, str]] = {}
        carry = ""
        for i, start in enumerate(bounds[:-1]):
            kind = text[start].lower()
            if kind in bodies:
                raise StagingError(kind, f"the {kind.upper()} category is written twice")
            if kind == "n" and "m" in bodies:
                raise StagingError("n", N_("write the categories in the order T, N, M"))
            last = i == len(bounds) - 2
            body, carry_next = _split_body(kind, text[start + 1:bounds[i + 1]], last=last)
            bodies[kind] = (body, carry)
            carry = carry_next
        if "m" in bodies and _cp(bodies["m"][1].lower()) == "p" and bodies["m"][0].startswith("0"):
            raise StagingError("m", N_("there is no pM0 (UICC TNM 8th ed.): write cM0, or leave M out"))
        tnm = cls(
            prefix=prefix,
            t=_check_category("t", "T" + bodies["t"][0], "t"),
            n=_check_category("n", "N" + bodies["n"][0], "n") if "n" in bodies else "",
            m=_check_category("m", "M" + bodies["m"][0], "m") if "m" in bodies else "",
            edition=edition,
            n_prefix=_category_prefix(bodies["n"][1], prefix, "n") if "n" in bodies else "",
            m_prefix=_category_prefix(bodies["m"][1], prefix, "m") if "m" in bodies else "",
        )
        tnm._check_m()
        return tnm

    def _check_m(self) -> None:
        if self.m_prefix == "p" and self.m.startswith("M0"):
            raise StagingError("m", N_("there is no pM0 (UICC TNM 8th ed.): write cM0, or leave M out"))

    # -- meaning --

    @property
    def pathological(self) -> bool:
        """Whether it belongs in the pathological staging (p, yp, rp, a prefixes) rather than the clinical one."""
        return _cp(self.prefix) == "p"

    @property
    def edition_to_confirm(self) -> bool:
        """No edition yet: the fiche page flags it, and the fiche cannot be signed until someone gives it."""
        return not self.edition

    # -- writing --

    def label(self) -> str:
        """The classification as written, categories apart: "ypT0 N0 M0", "pT2 N1 cM0", "rpT1 N0"."""
        parts = [f"{self.prefix}{self.t}"]
        if self.n:
            parts.append(f"{self.n_prefix}{self.n}")
        if self.m:
            parts.append(f"{self.m_prefix}{self.m}")
        return " ".join(parts)

    def edition_label(self, _: Translate) -> str:
        if not self.edition:
            return _(N_("TNM edition to confirm"))
        # Fiches signed before editions were limited to 7 and 8 may cite another one.
        return _(_EDITION_LABELS[self.edition]) if self.edition in _EDITION_LABELS else f"TNM {self.edition}"

    def display(self, _: Translate) -> str:
        """ "ypT0 N0 M0 (TNM 8th ed.), stage IIA" in the reader's language; the label itself is never translated."""
        text = f"{self.label()} ({self.edition_label(_)})"
        word = _(N_("stage"))
        return f"{text}, {word} {self.stage}" if self.stage else text

    def as_json(self) -> dict[str, str]:
        out = {"prefix": self.prefix, "t": self.t, "n": self.n, "m": self.m, "edition": self.edition,
               "stage": self.stage}
        if self.n_prefix:
            out["n_prefix"] = self.n_prefix
        if self.m_prefix:
            out["m_prefix"] = self.m_prefix
        return out


_EDITION_LABELS = {"7": N_("TNM 7th ed."), "8": N_("TNM 8th ed.")}


def _str(value: Any, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise StagingError(path, N_("expected text"))
    if len(value) > 200:
        raise StagingError(path, N_("too long: at most 200 characters"))
    return value


def _split_body(kind: str, raw: str, *, last: bool) -> tuple[str, str]:
    """A category's text up to the next category: (its body, the letters that prefix the next category).

    "2a " -> ("2a", ""); "2 p" and "2p" -> ("2", "p"); "1c" -> ("1c", "") (T1c, not T1 then cN). A body the
    grammar refuses is returned whole, so that the refusal names this category; text after the last category
    that is not one is refused as a whole (``text``).
    """
    raw = raw.rstrip()
    start = _GRAMMAR[kind].match(raw)
    if start is None:
        return raw, ""
    rest = raw[start.end():]
    if not rest:
        return raw, ""
    if not last and re.fullmatch(r"\s*[rycpa]{1,3}", rest, re.IGNORECASE):
        return raw[:start.end()], rest.strip()
    if rest[:1].isspace():
        raise StagingError("text", N_("not understood after the categories: write T, N and M, then the edition "
                                   "(other descriptors such as R, L, V or G go in the comments)"))
    return raw, ""


def _category_prefix(written: str, prefix: str, kind: str) -> str:
    """The c/p letter a category keeps of its own (see the module docstring), or StagingError on ``kind``."""
    written = written.strip().lower()
    if not written or written == prefix or written == _cp(prefix):
        return ""
    if written in {"c", "p"}:
        return written
    raise StagingError(kind, N_("y, r and a describe the whole classification: write them once, before T "
                             "(a category may carry only c or p)"))


# -- diagnosis date ------------------------------------------------------------------------------------------------


def parse_diagnosis_date(value: Any) -> str:
    """FRCP "Date du diagnostic initial (minimum mois et année)": "YYYY-MM-DD" or "YYYY-MM"; "" when not given."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", value.strip()):
        raise StagingError("", N_("expected a date as YYYY-MM-DD, or the month as YYYY-MM"))
    text = value.strip()
    try:
        day = date.fromisoformat(text if len(text) == 10 else f"{text}-01")
    except ValueError:
        raise StagingError("", N_("not a calendar date (YYYY-MM-DD or YYYY-MM)")) from None
    if day.year < 1900:
        raise StagingError("", N_("a diagnosis date after 1900 is expected"))
    return text


# -- laterality ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Laterality:
    """A laterality and its SNOMED CT qualifier value (FRCP example: 24028007 "droit")."""

    key: str
    code: str
    display: str
    label: str


SNOMED_CT = "http://snomed.info/sct"
#: Key -> SNOMED CT qualifier value (JDV_ModificateurTopographique_CISIS 1.2.250.1.213.1.1.5.688; mCODE
#: LateralityQualifierVS), with the French display and the interface label.
LATERALITIES: Mapping[str, Laterality] = {
    lat.key: lat for lat in (
        Laterality("right", "24028007", "droit", N_("Right")),
        Laterality("left", "7771000", "gauche", N_("Left")),
        Laterality("bilateral", "51440002", "bilatéral", N_("Bilateral")),
        Laterality("midline", "399488007", "ligne médiane", N_("Midline")),
        Laterality("not_applicable", "385432009", "non applicable", N_("Not applicable")),
    )
}


def parse_laterality(value: Any) -> str:
    """A laterality key ("right", "left", "bilateral", "midline", "not_applicable"), or "" when not given."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or value not in LATERALITIES:
        raise StagingError("", f"expected one of {', '.join(LATERALITIES)} (SNOMED CT laterality)")
    return value


# -- other classifications -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Classification:
    """A staging or grading system other than TNM, and the values it allows."""

    key: str
    name: str
    reference: str
    check: Callable[[str], str | None]
    examples: str


def _one_of(*values: str) -> Callable[[str], str | None]:
    table = {v.upper(): v for v in values}
    return lambda text: table.get(text.strip().upper())


def _pattern(regex: str) -> Callable[[str], str | None]:
    compiled = re.compile(regex, re.IGNORECASE)
    return lambda text: text.strip().upper() if compiled.fullmatch(text.strip()) else None


def _ann_arbor(text: str) -> str | None:
    """Ann Arbor (Cotswolds): stage I-IV, then A or B (symptoms), E, S, X each at most once, in any order."""
    found = re.fullmatch(r"(IV|I{1,3})([ABESX]*)", text.strip(), re.IGNORECASE)
    if not found:
        return None
    stage, modifiers = found.group(1).upper(), found.group(2).upper()
    if len(set(modifiers)) != len(modifiers) or {"A", "B"} <= set(modifiers):
        return None
    return stage + modifiers


def _gleason(text: str) -> str | None:
    """Gleason score "primary+secondary" (patterns 3-5, ISUP 2014), written with or without "=total"."""
    found = re.fullmatch(r"\s*([3-5])\s*\+\s*([3-5])\s*(?:=\s*(\d{1,2}))?\s*", text)
    if not found:
        return None
    a, b = int(found.group(1)), int(found.group(2))
    if found.group(3) is not None and int(found.group(3)) != a + b:
        return None
    return f"{a}+{b}={a + b}"


#: The systems the fiche codes beside TNM, each with its value table or grammar.
CLASSIFICATIONS: Mapping[str, Classification] = {
    c.key: c for c in (
        Classification("figo", "FIGO", "FIGO staging of gynaecological cancers (cervix 2018, endometrium 2023, "
                       "ovary 2014)", _pattern(r"(IV|I{1,3})(?:[A-C][1-3]?)?"), "IB2, IIIC1, IVB"),
        Classification("ann_arbor", "Ann Arbor", "Ann Arbor with the Cotswolds modifications (lymphomas)",
                       _ann_arbor, "IIA, IIIBS, IVB"),
        Classification("iss", "ISS", "International Staging System, myeloma (Greipp 2005)",
                       _one_of("I", "II", "III"), "I, II, III"),
        Classification("r_iss", "R-ISS", "Revised ISS, myeloma (Palumbo 2015)", _one_of("I", "II", "III"),
                       "I, II, III"),
        Classification("binet", "Binet", "Binet staging, CLL (1981)", _one_of("A", "B", "C"), "A, B, C"),
        Classification("rai", "Rai", "Rai staging, CLL (1975)", _one_of("0", "I", "II", "III", "IV"),
                       "0, I, II, III, IV"),
        Classification("gleason", "Gleason", "Gleason score, ISUP 2014", _gleason, "3+4=7, 4+3"),
        Classification("isup", "ISUP", "ISUP/WHO grade group, prostate (Epstein 2016)",
                       _one_of("1", "2", "3", "4", "5"), "1 to 5"),
        Classification("bclc", "BCLC", "Barcelona Clinic Liver Cancer staging (2022)",
                       _one_of("0", "A", "B", "C", "D"), "0, A, B, C, D"),
    )
}


@dataclass(frozen=True)
class OtherStage:
    """A classification other than TNM (FRCP "Autre classification du stade", LOINC 21914-7)."""

    system: str
    value: str

    @classmethod
    def from_json(cls, value: Any) -> OtherStage:
        if not isinstance(value, Mapping):
            raise StagingError("", N_("expected an object with system and value"))
        system = value.get("system")
        if not isinstance(system, str) or system not in CLASSIFICATIONS:
            raise StagingError("system", f"expected one of {', '.join(CLASSIFICATIONS)}")
        rule = CLASSIFICATIONS[system]
        text = value.get("value")
        checked = rule.check(text) if isinstance(text, str) and len(text) <= 20 else None
        if not checked:
            raise StagingError("value", f"not a {rule.name} value ({rule.reference}; e.g. {rule.examples})")
        return cls(system=system, value=checked)

    @property
    def name(self) -> str:
        return CLASSIFICATIONS[self.system].name

    def label(self) -> str:
        """ "FIGO IB2", "Gleason 3+4=7"."""
        return f"{self.name} {self.value}"

    def as_json(self) -> dict[str, str]:
        return {"system": self.system, "value": self.value}


def choices(_: Translate) -> dict[str, list[dict[str, str]]]:
    """What the decision form offers (laterality keys with their label, classification systems with examples)."""
    return {
        "lateralities": [{"key": lat.key, "label": _(lat.label)} for lat in LATERALITIES.values()],
        "classifications": [{"key": c.key, "name": c.name, "examples": c.examples} for c in CLASSIFICATIONS.values()],
    }
