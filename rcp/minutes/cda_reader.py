"""A CANCER-FRCP CDA R2 document read back into the service's model (a fiche and the version it records).

The inverse of ``rcp.minutes.cda``: what a fiche RCP written by another RCP software (or by the ANS as an example)
says, as a :class:`~rcp.minutes.fiche.Fiche` the service can render, deliver or write again. The tests read the
two official FRCP 2022.01 examples with it and write them back with :func:`rcp.minutes.cda.fiche_cda`: the result
must not fail any schematron assertion the example did not already fail, which proves the writer keeps what such
a document carries (patient, board and its registration, people, coding).

What the model cannot hold is left out rather than guessed: a code outside the value set the fiche uses, a TNM
the staging rules refuse, a participant's specialty with no key of ours (read as ``organ_specialist`` for an
attendee, whom the fiche must give one). An INS in the document means the sender's identity was qualified (an
INS leaves a system only then, RNIV), so it is read as such. Parsing uses lxml with entities and network access
off (``_PARSER``): the document comes from outside.

    >>> read_fiche_cda(b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>")
    Traceback (most recent call last):
    ...
    rcp.errors.Invalid: Not a CANCER-FRCP document: its code is not LOINC 34794-8.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree

from rcp.errors import Invalid
from rcp.identifiers import FINESS_PREFIX, IDNATSTRUCT_OID, INS_OIDS, RCP_NATIONAL_OIDS
from rcp.minutes import codes
from rcp.minutes.fiche import Fiche, Physician
from rcp.minutes.staging import StagingError, Tnm
from rcp.minutes.versions import SignedVersion, content_sha256
from rcp.people import IDNATPS_OID
from rcp.scheduling.specialties import SPECIALTIES

__all__ = ["ReadDocument", "read_fiche_cda"]

V3 = "urn:hl7-org:v3"
_NS = {"c": V3}
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True)
_PARIS = ZoneInfo("Europe/Paris")
_BY_NATIONAL_CODE = {s.national_code: s.key for s in SPECIALTIES if s.national_code}
_WHO_GRADES = ("MED-240", "MED-264", "MED-265", "MED-266", "MED-267")


@dataclass(frozen=True)
class ReadDocument:
    """A fiche read from a CDA document, and the signed version it records (number, time, legal authenticator)."""

    fiche: Fiche
    version: SignedVersion


def _find(el: Any, path: str) -> Any:
    return el.find(path, _NS) if el is not None else None


def _text(el: Any) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""


def _ts(value: str | None) -> datetime | None:
    """HL7 TS (YYYYMMDD[HHMM[SS]][+ZZZZ]) as an aware instant (French time when it has no offset)."""
    if not value:
        return None
    digits, offset = value, ""
    for sign in "+-":
        if sign in value[8:]:
            at = value.index(sign, 8)
            digits, offset = value[:at], value[at:]
    digits = (digits + "000000")[:14]
    try:
        when = datetime.strptime(digits, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    if offset:
        return datetime.strptime(digits + offset, "%Y%m%d%H%M%S%z")
    return when.replace(tzinfo=_PARIS)


def _observation(root: Any, code: str) -> Any:
    return root.find(f".//c:observation/c:code[@code='{code}']/..", _NS)


def _value_coding(obs: Any, value_set: str, *, tag: str = "c:value") -> dict[str, str] | None:
    """The observation's coded value when it is a concept of ``value_set`` (else None: not guessed)."""
    el = _find(obs, tag)
    if el is None or not el.get("code"):
        return None
    members = {(c.code, c.system) for c in codes.value_set(value_set)}
    if (el.get("code"), el.get("codeSystem")) not in members:
        return None
    return {"code": el.get("code"), "system": el.get("codeSystem")}


def _bool(obs: Any) -> bool | None:
    value = _find(obs, "c:value")
    return {"true": True, "false": False}.get(value.get("value", "")) if value is not None else None


def _anchored(root: Any, obs: Any) -> str:
    """The narrative an entry references (``text/reference/@value`` "#id")."""
    ref = _find(obs, "c:text/c:reference")
    target = ref.get("value", "") if ref is not None else ""
    if not target.startswith("#"):
        return ""
    found = root.xpath("//*[@ID=$id]", id=target[1:])
    return _text(found[0]) if found else ""


def _name(entity: Any) -> str:
    """A person's display name from PN parts: prefix (DR/PR), given, family."""
    name = entity.find(".//c:name", _NS) if entity is not None else None
    if name is None:
        return ""
    title = {"DR": "Dr", "PR": "Pr"}.get((name.findtext("c:suffix", "", _NS) or "").strip().upper(), "")
    given = [g.text.strip() for g in name.iterfind("c:given", _NS) if g.text and g.get("qualifier") is None]
    family = [f.text.strip() for f in name.iterfind("c:family", _NS) if f.text and f.get("qualifier") in {None, "BR"}]
    return " ".join(p for p in (title, *given[:1], *family[:1]) if p) or _text(name)


def _physician(entity: Any) -> dict[str, Any] | None:
    """A physician of the header (associatedEntity / assignedEntity): name, RPPS, specialty, organisation."""
    if entity is None:
        return None
    name = _name(entity)
    if not name:
        return None
    rpps = ""
    for i in entity.iterfind("c:id", _NS):
        extension = i.get("extension") or ""
        if i.get("root") == IDNATPS_OID and extension.startswith("8") and len(extension) == 12:
            rpps = extension[1:]
    code = _find(entity, "c:code")
    specialty = _BY_NATIONAL_CODE.get(code.get("code", "")) if code is not None else None
    organisation = entity.find("c:scopingOrganization/c:name", _NS)
    if organisation is None:
        organisation = entity.find("c:representedOrganization/c:name", _NS)
    return {"name": name[:200], "specialty": specialty or "", "rpps": rpps,
            "hospital": _text(organisation)[:200]}


def _patient(doc: Any) -> dict[str, Any]:
    role = doc.find("c:recordTarget/c:patientRole", _NS)
    out: dict[str, Any] = {"identity_status": "provisional"}
    for i in role.iterfind("c:id", _NS) if role is not None else ():
        root, extension = i.get("root", ""), i.get("extension", "")
        if not extension:
            continue
        if root in INS_OIDS:  # an INS leaves its sender only for a qualified identity (RNIV)
            out.update(ins=extension, ins_system=root, identity_status="qualified")
        elif "local_id" not in out:
            out.update(local_id=extension, local_id_issuer=i.get("assigningAuthorityName") or "",
                       local_id_issuer_oid=root)
    person = _find(role, "c:patient")
    name = _find(person, "c:name")
    families = {f.get("qualifier"): (f.text or "").strip() for f in name.iterfind("c:family", _NS)} \
        if name is not None else {}
    given = [g.text.strip() for g in name.iterfind("c:given", _NS) if g.text and g.get("qualifier") is None] \
        if name is not None else []
    out["family_name"] = families.get("BR") or families.get(None) or families.get("CL") or "Inconnu"
    if families.get("CL") and families.get("CL") != out["family_name"]:
        out["used_name"] = families["CL"]
    out["given_names"] = given[0] if given else ""
    gender = _find(person, "c:administrativeGenderCode")
    out["sex"] = {"F": "female", "M": "male"}.get(gender.get("code", "") if gender is not None else "", "unknown")
    born = _ts(_find(person, "c:birthTime").get("value") if _find(person, "c:birthTime") is not None else None)
    if born is not None:
        out["birth_date"] = born.date().isoformat()
    return out


def _board(doc: Any) -> dict[str, Any]:
    """The board with its nature and type (reason section) and its registration (header)."""
    encounter = doc.find("c:componentOf/c:encompassingEncounter", _NS)
    ids = {i.get("root"): i.get("extension") or "" for i in encounter.iterfind("c:id", _NS)} \
        if encounter is not None else {}
    event = doc.find("c:documentationOf/c:serviceEvent/c:code[@code='39']/c:originalText", _NS)
    parts = [p.strip() for p in _text(event).split(" / ")] if event is not None else []
    name = parts[-1] if parts else (doc.findtext("c:title", "", _NS) or "RCP")
    nature = _value_coding(_observation(doc, "GEN-098"), codes.DISCUSSION_NATURE) or {
        "code": "ORG-117", "system": codes.TA_ASIP}
    board: dict[str, Any] = {
        "name": name[:200], "discussion_nature": nature,
        "system": _value_coding(_observation(doc, "ORG-118"), codes.RCP_SYSTEM),
        "organ": _value_coding(_observation(doc, "ORG-119"), codes.RCP_ORGAN),
        "required_specialties": [], "minimum_specialties": 3,
        "national_id": ids.get(RCP_NATIONAL_OIDS["board"], ""),
        "referral": bool(_bool(_observation(doc, "ORG-184"))),
        "paediatric": bool(_bool(_observation(doc, "ORG-185"))),
    }
    care = _value_coding(_observation(doc, "ORG-138"), codes.SUPPORTIVE_CARE)
    if care is not None:
        board["care"] = care
    facility = _find(encounter, "c:location/c:healthCareFacility")
    finess = _finess(_find(facility, "c:id"))
    custodian = doc.find("c:custodian/c:assignedCustodian/c:representedCustodianOrganization", _NS)
    custodian_finess = _finess(_find(custodian, "c:id"))
    if finess or custodian_finess:
        kind = _find(facility, "c:code")
        place_name = _text(_find(facility, "c:location/c:name")) or _text(_find(custodian, "c:name"))
        establishment = {
            "finess": finess or custodian_finess, "name": place_name or "Établissement",
            "facility_type": kind.get("code", "SA01") if kind is not None else "SA01",
            "regional_network_id": ids.get(RCP_NATIONAL_OIDS["regional_network"], ""),
            "regional_network_name": parts[0] if len(parts) == 3 else "",
            "coordination_centre_id": ids.get(RCP_NATIONAL_OIDS["coordination_centre"], ""),
            "coordination_centre_name": parts[1] if len(parts) == 3 else "",
            "custodian_finess": "", "custodian_name": ""}
        if custodian_finess and custodian_finess != establishment["finess"]:
            establishment.update(custodian_finess=custodian_finess, custodian_name=_text(_find(custodian, "c:name")))
        board["establishment"] = establishment
    return board


def _finess(el: Any) -> str:
    extension = el.get("extension", "") if el is not None else ""
    if el is None or el.get("root") != IDNATSTRUCT_OID or not extension.startswith(FINESS_PREFIX):
        return ""
    return extension[len(FINESS_PREFIX):]


def _people(doc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"attendees": [], "correspondents": []}
    for p in doc.iterfind("c:participant", _NS):
        kind, function = p.get("typeCode"), p.find("c:functionCode", _NS)
        physician = _physician(p.find("c:associatedEntity", _NS))
        if physician is None:
            continue
        if kind == "PRF":
            code = function.get("code") if function is not None else None
            if code not in {"353", "CORRE"}:
                continue  # the presenter and other performers: not attendance
            out["attendees"].append({**{k: physician[k] for k in ("name", "hospital", "rpps")},
                                     "user_id": len(out["attendees"]) + 1,
                                     "specialty": physician["specialty"] or "organ_specialist",
                                     "quorum_member": code == "353"})
        elif kind == "RESP":
            out["responsible_physician"] = physician
        elif kind == "REFB":
            out["referring_physician"] = physician
        elif kind == "INF":
            out["gp"] = physician
        elif kind == "CON":
            out["correspondents"].append(physician)
    return out


def _clinical(doc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    problem = doc.find(".//c:observation/c:templateId[@root='1.2.250.1.213.1.1.3.113']/..", _NS)
    site = _value_coding(problem, codes.TUMOUR, tag="c:targetSiteCode")
    if site is None:
        event = doc.find("c:documentationOf/c:serviceEvent/c:code[@codeSystem='2.16.840.1.113883.6.3']/..", _NS)
        site = _value_coding(event, codes.TUMOUR, tag="c:code")
    out["tumour_site"] = site
    out["histology"] = _value_coding(problem, codes.MORPHOLOGY)
    out["cancer_phase"] = _value_coding(_observation(doc, "MED-243"), codes.CANCER_PHASE)
    grade = _find(_observation(doc, "MED-239"), "c:value")
    if grade is not None and grade.get("code") in _WHO_GRADES:
        out["performance_status"] = {"grade": _WHO_GRADES.index(grade.get("code")), "scale": "WHO"}
    stage = _observation(doc, "75620-5")
    if stage is not None:
        parts = {k: (_find(_observation(stage, c), "c:value").get("code", "") if _observation(stage, c) is not None
                     else "") for k, c in (("t", "21905-5"), ("n", "21906-3"), ("m", "21907-1"))}
        edition = stage.find("c:value/c:qualifier/c:name[@code='21917-0']/../c:value", _NS)
        try:
            out["clinical_tnm"] = Tnm.from_json({**parts, "prefix": "c",
                                                 "edition": edition.get("code", "") if edition is not None else ""}
                                                ).as_json()
        except (StagingError, ValueError, TypeError, KeyError):
            pass  # a staging our rules refuse is left out, not guessed
    return out


def _decision(doc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    treatments = []
    members = {(c.code, c.system) for c in codes.value_set(codes.TREATMENT_TYPE)}
    for act in doc.iterfind(".//c:procedure[@moodCode='INT']/c:code", _NS):
        if (act.get("code"), act.get("codeSystem")) in members:
            treatments.append({"code": act.get("code"), "system": act.get("codeSystem")})
    plan = doc.find(".//c:section/c:templateId[@root='1.2.250.1.213.1.1.2.158']/..", _NS)
    details = _text(_find(plan, "c:text"))[:20_000]
    kinds = {codes.treatment_kind(codes.coding_from_json(t)) for t in treatments} - {None}
    therapeutic = kinds - {codes.ProposalType.other, codes.ProposalType.surveillance}
    if len(kinds) == 1:
        kind = str(next(iter(kinds)))
    elif len(therapeutic) >= 2 and kinds == therapeutic:
        kind = "combined"
    else:
        kind, treatments = "other", []
    if treatments or details:
        out["proposal"] = {"type": kind, "treatments": treatments if kind != "other" else [],
                           "details": details or "Voir le document"}
    guideline = _observation(doc, "MED-249")
    out["guideline"] = {"conforms": None, "reference": _anchored(doc, guideline)[:200] if guideline is not None
                        else "", "reason": ""}
    trial = _observation(doc, "MED-250")
    proposed = bool(_bool(trial)) if trial is not None else False
    out["clinical_trial"] = {"proposed": proposed, "trial": "Voir le document" if proposed else ""}
    status = _find(_observation(doc, "ORG-127"), "c:value")
    out["case_status"] = {"ORG-134": "discussed", "ORG-128": "registered"}.get(
        status.get("code", "") if status is not None else "", "")
    history = doc.find(".//c:section/c:templateId[@root='1.2.250.1.213.1.1.2.130']/..", _NS)
    out["clinical_summary"] = _text(_find(history, "c:text"))[:20_000]
    out["question"] = _anchored(doc, _observation(doc, "ORG-186")) if _observation(doc, "ORG-186") is not None \
        else ""
    return out


def read_fiche_cda(document: bytes, *, case_id: int = 1, meeting_id: int = 1) -> ReadDocument:
    """The fiche and version a CANCER-FRCP document records (``Invalid`` when it is not one, or lacks what every
    fiche needs: a patient identifier, a meeting date). ``case_id`` / ``meeting_id`` place it in this service."""
    try:
        doc = etree.fromstring(document, _PARSER)
    except etree.XMLSyntaxError:
        raise Invalid("Not an XML document.") from None
    code = doc.find("c:code", _NS)
    if code is None or code.get("code") != "34794-8":
        raise Invalid("Not a CANCER-FRCP document: its code is not LOINC 34794-8.")
    start = _ts(_find(doc, "c:componentOf/c:encompassingEncounter/c:effectiveTime/c:low").get("value")
                if _find(doc, "c:componentOf/c:encompassingEncounter/c:effectiveTime/c:low") is not None else None)
    signed_at = _ts(_find(doc, "c:legalAuthenticator/c:time").get("value")
                    if _find(doc, "c:legalAuthenticator/c:time") is not None else None) \
        or _ts(_find(doc, "c:effectiveTime").get("value") if _find(doc, "c:effectiveTime") is not None else None)
    if start is None or signed_at is None:
        raise Invalid("The document gives no meeting date or no signature time.")
    meeting_day: date = start.astimezone(_PARIS).date()
    content: dict[str, Any] = {
        "case_id": case_id, "meeting_id": meeting_id, "patient": _patient(doc), "board": _board(doc),
        "meeting_date": meeting_day.isoformat(), "study_uids": [], "key_images": [], "comments": "",
        **_people(doc), **_clinical(doc), **_decision(doc),
    }
    fiche = Fiche.from_content(content)
    stored = fiche.to_content()
    number = _find(doc, "c:versionNumber")
    signer = _physician(_find(doc, "c:legalAuthenticator/c:assignedEntity"))
    version = SignedVersion(
        number=int(number.get("value", "1")) if number is not None and number.get("value", "").isdigit() else 1,
        content=stored, sha256=content_sha256(stored), signed_by=0, signed_at=signed_at,
        signer=Physician.parse(signer, "signer") if signer else None)
    return ReadDocument(fiche=fiche, version=version)
