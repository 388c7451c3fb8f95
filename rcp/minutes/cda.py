"""The signed fiche RCP as a CI-SIS CANCER-FRCP CDA R2 document (volet FRCP 2022.01, level 3, LOINC 34794-8).

Regional cancer networks, the DCC and the DMP take the fiche RCP as this document. It is modelled on the two
official examples of the ANS (``CANCER-FRCP_2022.01_Appareil.xml`` / ``_Transversale.xml``, ansforge
TestContenuCDA-3-0) and checked in the tests against the CDA schema and the ANS schematrons
(``tests/fixtures/ans-cda``). It is built with lxml, element by element, never by string concatenation, so that
free text typed in the room can never become markup.

    >>> from rcp.minutes.cda import LOINC_FRCP
    >>> LOINC_FRCP
    '34794-8'

Header rules (CI-SIS "Volet Structuration minimale", FRCP 2022.01 §3):

- The patient: the INS only for a *qualified* identity (RNIV; ``rcp.identifiers.ins_may_leave`` through
  ``PatientIdentity.shared_ins``), always the IPP under its assigning authority's OID when the hospital gave one.
- The author and the legal authenticator are the signer (the signed-in physician), by RPPS (IdNatPS "8" + RPPS,
  OID 1.2.250.1.71.4.2.1) or, without one, by their account under the service's OID.
- Participants: coordinator (RESP, the responsible physician), requester (REFB), GP (INF / PCP; required, so an
  unknown GP is written with nullFlavor NA), quorum members
  (PRF, 353 "Participant du quorum") and those outside it (PRF, CORRE "Participant hors quorum"), correspondents
  (CON).
- A correction is a new version of the same ``setId`` with ``relatedDocument typeCode="RPLC"`` naming the
  version it replaces (CDA R2 §4.2.3.1).

The custodian, the establishment of the meeting and the national ids of the RCP, its 3C and its regional cancer
network come from the board's registration as signed (``Fiche.board``, ``rcp.scheduling.registration``): the
establishment (or the organisation that keeps its documents) by FINESS as IdNatStruct ("1" + FINESS under
1.2.250.1.71.4.2.2). A board not registered yet gives the service itself as custodian (``RCP_SOURCE_OID``) and
national ids with nullFlavor UNK — never an invented number. ``Custodian`` lets a caller override it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from lxml import etree
from lxml.builder import ElementMaker

from rcp.epr.fhir import RCP_SOURCE_OID
from rcp.errors import Invalid
from rcp.identifiers import FINESS_PREFIX, IDNATSTRUCT_OID, RCP_NATIONAL_OIDS
from rcp.minutes import codes
from rcp.minutes.codes import Coding
from rcp.minutes.fiche import AttendeeRecord, EstablishmentInfo, Fiche, Physician
from rcp.minutes.oids import document_ids
from rcp.minutes.staging import LATERALITIES, Tnm
from rcp.minutes.versions import SignedVersion
from rcp.people import IDNATPS_OID, PersonName
from rcp.scheduling.registration import FacilityType, facility_type
from rcp.scheduling.specialties import specialty as specialty_of

__all__ = ["LOINC_FRCP", "MEDIA_TYPE", "Custodian", "fiche_cda"]

V3 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_TYPE = f"{{{XSI}}}type"
MEDIA_TYPE = "application/xml"
LOINC = "2.16.840.1.113883.6.1"
LOINC_FRCP = "34794-8"
TA = codes.TA_ASIP
SNOMED = "2.16.840.1.113883.6.96"
TNM_UICC = "2.16.840.1.113883.15.6"
#: TRE_R85 RolePROfessionnel "Membre de l'équipe de soins" (functionCode of the author and quorum members).
_CARE_TEAM = Coding("353", "1.2.250.1.213.1.6.1.107", "Membre de l'équipe de soins")
_CORRESPONDENT = Coding("CORRE", "1.2.250.1.213.1.1.4.2.280", "Correspondant")
#: TRE_R38 professions (G15 = médecin) for a physician whose specialty has no national code.
_PHYSICIAN = Coding("10", "1.2.250.1.213.1.1.4.5", "Médecin")
_PARIS = ZoneInfo("Europe/Paris")
#: FRCP national identifiers of the meeting (encompassingEncounter/id): regional network, 3C, RCP.
_RRC, _3C, _RCP = (RCP_NATIONAL_OIDS[k] for k in ("regional_network", "coordination_centre", "board"))

E = ElementMaker(namespace=V3, nsmap={None: V3, "xsi": XSI})


@dataclass(frozen=True)
class Custodian:
    """The organisation that keeps the document (CDA custodian) and the board's national identifiers.

    FRCP 2022.01 names the meeting by the ids of its regional cancer network (RRC, 1.2.250.1.161.1.20.1.1), its
    manager (3C, 1.2.250.1.161.1.20.2.1) and the RCP itself (1.2.250.1.161.1.20.3.1): an id left "" is written
    with nullFlavor UNK under its national root, never invented. :meth:`of` reads them from the signed fiche.
    """

    name: str = "Service RCP"
    root: str = RCP_SOURCE_OID
    extension: str = ""
    regional_network: str = ""
    coordination_centre: str = ""
    board: str = ""
    #: The establishment within which the RCP meets (encompassingEncounter/location), when registered.
    establishment: EstablishmentInfo | None = None

    @classmethod
    def of(cls, fiche: Fiche) -> Custodian:
        """The custodian and national ids of the board's registration, as the fiche was signed."""
        b, place = fiche.board, fiche.board.establishment
        if place is None:
            return cls(board=b.national_id)
        finess, name = place.custodian
        return cls(name=name, root=IDNATSTRUCT_OID, extension=FINESS_PREFIX + finess,
                   regional_network=place.regional_network_id, coordination_centre=place.coordination_centre_id,
                   board=b.national_id, establishment=place)

    def title(self, board_name: str) -> str:
        """The title FRCP 2022.01 gives the document: acronym of the RRC / acronym of the 3C / the RCP's name."""
        place = self.establishment
        parts = [place.regional_network_name, place.coordination_centre_name] if place is not None else []
        return " / ".join([p for p in parts if p] + [board_name])


# -- data types ----------------------------------------------------------------------------------------------


def _ts(value: datetime | date) -> str:
    """HL7 TS: a day as YYYYMMDD, an instant in French local time with its offset (never UTC without one)."""
    if isinstance(value, datetime):
        return value.astimezone(_PARIS).strftime("%Y%m%d%H%M%S%z")
    return value.strftime("%Y%m%d")


def _ii(root: str, extension: str = "") -> etree._Element:
    return E.id(root=root, extension=extension) if extension else E.id(root=root)


def _cd(tag: str, coding: Coding, *, xsi_type: bool = False, **extra: str) -> etree._Element:
    el = E(tag, code=coding.code, displayName=coding.display or coding.code, codeSystem=coding.system,
           codeSystemName=coding.system_name, **extra)
    if xsi_type:
        el.set(_XSI_TYPE, "CD")
    return el


def _templates(*roots: str) -> list[etree._Element]:
    return [E.templateId(root=r) for r in roots]


def _uid(*parts: object) -> etree._Element:
    """A stable entry id: a UUID derived from the document and the entry's place, so a re-export is identical."""
    return E.id(root=str(uuid.uuid5(uuid.NAMESPACE_OID, "/".join(str(p) for p in parts))).upper())


def _ref(anchor: str) -> etree._Element:
    return E.text(E.reference(value=f"#{anchor}"))


def _bl(value: bool) -> etree._Element:
    el = E.value(value="true" if value else "false")
    el.set(_XSI_TYPE, "BL")
    return el


# -- people ------------------------------------------------------------------------------------------------------


def _person_name(p: PersonName | None, display: str) -> etree._Element:
    """PN in parts: prefix (DR/PR of TRE_R11 as the examples write it in ``suffix``), given, family."""
    if p is None:
        try:
            p = PersonName.parse(display)
        except Invalid:  # "Dr Amélie Rousseau": which word is the family name is not known; kept whole
            p = None
    if p is None or p.unsplit:
        return E.name(E.family(display))
    name = E.name()
    if p.given:
        name.append(E.given(p.given))
    name.append(E.family(p.family))
    if p.prefix_code:
        name.append(E.suffix(p.prefix_code))
    return name


def _profession(specialty: str) -> etree._Element:
    """TRE_R38 profession/specialty (``G15_10/SM36``) of a physician; "Médecin" when not mapped."""
    try:
        spec = specialty_of(specialty) if specialty else None
    except ValueError:
        spec = None
    if spec is not None and spec.national_code:
        return E.code(code=spec.national_code, codeSystem="1.2.250.1.213.1.1.4.5", displayName=spec.label)
    return E.code(code=_PHYSICIAN.code, codeSystem=_PHYSICIAN.system, displayName=_PHYSICIAN.display)


def _person_id(rpps: str, user_id: int | None) -> etree._Element:
    """IdNatPS ("8" + RPPS) under the ANS OID, else the service account's id under the service's OID."""
    if rpps:
        return _ii(IDNATPS_OID, "8" + rpps)
    if user_id is not None:
        return _ii(f"{RCP_SOURCE_OID}.1", str(user_id))
    return E.id(nullFlavor="UNK")


def _organisation(tag: str, hospital: str) -> list[etree._Element]:
    return [E(tag, E.name(hospital))] if hospital else []


def _physician_entity(tag: str, person_tag: str, p: Physician) -> etree._Element:
    return E(tag, _person_id(p.rpps, p.user_id), _profession(p.specialty),
             E(person_tag, _person_name(p.person, p.name)), *_organisation(
                 "representedOrganization" if tag == "assignedEntity" or tag == "assignedAuthor"
                 else "scopingOrganization", p.hospital))


def _participant(type_code: str, function: Coding | None, comment: str, p: Physician) -> etree._Element:
    fn = (_cd("functionCode", function) if function is not None else E.functionCode(nullFlavor="NA"))
    fn.append(E.originalText(comment))
    entity = E.associatedEntity(
        _person_id(p.rpps, p.user_id), _profession(p.specialty),
        E.associatedPerson(_person_name(p.person, p.name)), *_organisation("scopingOrganization", p.hospital),
        classCode="PROV")
    return E.participant(fn, E.time(nullFlavor="UNK"), entity, typeCode=type_code)


def _attendee(a: AttendeeRecord) -> etree._Element:
    p = Physician(name=a.name, specialty=a.specialty, hospital=a.hospital, rpps=a.rpps,
                  user_id=None if a.guest else a.user_id)
    if a.quorum_member:
        return _participant("PRF", _CARE_TEAM, "Participant du quorum", p)
    return _participant("PRF", _CORRESPONDENT, "Participant hors quorum", p)


# -- header ----------------------------------------------------------------------------------------------------


def _record_target(fiche: Fiche) -> etree._Element:
    p = fiche.patient
    role = E.patientRole()
    if p.shared_ins:  # RNIV: the INS leaves the service only for a qualified identity
        role.append(_ii(p.ins_system, p.shared_ins))
    if p.local_id:
        if p.local_id_issuer_oid:
            role.append(_ii(p.local_id_issuer_oid, p.local_id))
        else:
            role.append(E.id(extension=p.local_id, assigningAuthorityName=p.local_id_issuer or "IPP",
                             nullFlavor="UNK"))
    name = E.name(E.family(p.family_name, qualifier="BR"))
    if p.given_names:
        name.append(E.given(p.given_names))
        name.append(E.given(p.given_names.split()[0], qualifier="BR"))
    if p.used_name:
        name.append(E.family(p.used_name, qualifier="CL"))
    gender = {"female": "F", "male": "M"}.get(p.sex)
    patient = E.patient(name, classCode="PSN")
    patient.append(E.administrativeGenderCode(code=gender, codeSystem="2.16.840.1.113883.5.1") if gender
                   else E.administrativeGenderCode(code="U", codeSystem="2.16.840.1.113883.5.1"))
    patient.append(E.birthTime(value=_ts(p.birth_date)) if p.birth_date else E.birthTime(nullFlavor="UNK"))
    role.append(E.addr(nullFlavor="NASK"))
    role.append(patient)
    return E.recordTarget(role)


def _signer(version: SignedVersion, fiche: Fiche) -> Physician:
    if version.signer is not None:
        return version.signer
    return fiche.responsible_physician or Physician(name="Inconnu", user_id=version.signed_by)


def _author(signer: Physician, at: datetime) -> etree._Element:
    fn = _cd("functionCode", _CARE_TEAM)
    fn.append(E.originalText("Médecin signataire de la fiche RCP"))
    return E.author(fn, E.time(value=_ts(at)), _physician_entity("assignedAuthor", "assignedPerson", signer))


def _custodian(c: Custodian) -> etree._Element:
    return E.custodian(E.assignedCustodian(E.representedCustodianOrganization(_ii(c.root, c.extension),
                                                                              E.name(c.name))))


def _legal(signer: Physician, at: datetime) -> etree._Element:
    return E.legalAuthenticator(E.time(value=_ts(at)), E.signatureCode(code="S"),
                                _physician_entity("assignedEntity", "assignedPerson", signer))


def _participants(fiche: Fiche) -> Iterable[etree._Element]:
    if fiche.responsible_physician is not None:
        yield _participant("RESP", None, "PS Coordonnateur de la RCP", fiche.responsible_physician)
    if fiche.referring_physician is not None:
        yield _participant("REFB", None, "PS Demandeur", fiche.referring_physician)
    pcp = Coding("PCP", "2.16.840.1.113883.5.88", "Médecin traitant")
    if fiche.gp is not None:
        yield _participant("INF", pcp, "Médecin traitant", fiche.gp)
    else:  # FRCP: the GP participant is required, nullFlavor allowed (the official example's own alternative)
        fn = _cd("functionCode", pcp)
        fn.append(E.originalText("Inconnu"))
        yield E.participant(fn, E.time(nullFlavor="UNK"), E.associatedEntity(classCode="PROV", nullFlavor="NA"),
                            typeCode="INF")
    for a in fiche.attendees:
        yield _attendee(a)
    for c in fiche.correspondents:
        yield _participant("CON", Coding("CORRE", "1.2.250.1.213.1.1.4.2.280", "Médecin correspondant"),
                           "PS Correspondant", c)


def _documentation_of(fiche: Fiche, signer: Physician, start: datetime,
                      custodian: Custodian) -> Iterable[etree._Element]:
    code = E.code(code="39", displayName="Réunion de Concertation Pluridisciplinaire (RCP)",
                  codeSystem="1.2.250.1.213.3.3.13", codeSystemName="TRE_R213-ModePriseEnCharge")
    code.append(E.originalText(custodian.title(fiche.board.name)))
    performer = E.performer(_physician_entity("assignedEntity", "assignedPerson", signer), typeCode="PRF")
    yield E.documentationOf(E.serviceEvent(code, E.effectiveTime(E.low(value=_ts(start))), performer,
                                           classCode="ACT"))
    if fiche.tumour_site is not None:
        yield E.documentationOf(E.serviceEvent(_cd("code", fiche.tumour_site), classCode="ACT"))


def _component_of(fiche: Fiche, custodian: Custodian, start: datetime) -> etree._Element:
    national = [E.id(root=root, extension=value) if value else E.id(root=root, nullFlavor="UNK")
                for root, value in ((_RRC, custodian.regional_network), (_3C, custodian.coordination_centre),
                                    (_RCP, custodian.board))]
    place = custodian.establishment
    facility = E.healthCareFacility()
    if place is not None:  # FRCP: the establishment within which the RCP is organised, by FINESS
        kind = _facility(place.facility_type)
        facility.append(_ii(IDNATSTRUCT_OID, FINESS_PREFIX + place.finess))
        facility.append(E.code(code=kind.code, displayName=kind.display, codeSystem=kind.system,
                               codeSystemName="healthCareFacilityTypeCode"))
        facility.append(E.location(E.name(place.name), E.addr(nullFlavor="UNK")))
    else:
        facility.append(E.code(code="SA01", displayName="Etablissement public de santé",
                               codeSystem="1.2.250.1.71.4.2.4"))
        facility.append(E.location(E.name(custodian.name), E.addr(nullFlavor="UNK")))
    encounter = E.encompassingEncounter(
        *national, _ii(f"{RCP_SOURCE_OID}.2", f"{fiche.meeting_id}.{fiche.case_id}"),
        E.code(code="VR", displayName="Virtuelle (exemple : RCP en l'absence du patient)",
               codeSystem="2.16.840.1.113883.5.4"),
        E.effectiveTime(E.low(value=_ts(start))),
        E.location(facility))
    return E.componentOf(encounter)


def _facility(code: str) -> FacilityType:
    """The establishment's facility type; an unknown code (a value set revision) reads as "other establishment"."""
    try:
        return facility_type(code)
    except ValueError:
        return facility_type("SA30")


# -- body: narrative helpers -------------------------------------------------------------------------------------


def _table(head: str, rows: Iterable[tuple[str, str, str]]) -> etree._Element:
    """A two-column narrative table; ``rows`` are (label, value, anchor ID or "")."""
    body = E.tbody()
    for label, value, anchor in rows:
        cell = E.content(value, ID=anchor) if anchor else value
        body.append(E.tr(E.td(label), E.td(cell)))
    return E.table(E.thead(E.tr(E.th(head, colspan="2"))), body, border="0")


def _yes(value: bool | None) -> str:
    return "Non renseigné" if value is None else ("Oui" if value else "Non")


def _section(templates: tuple[str, ...], code: Coding, title: str, text: etree._Element,
             entries: Iterable[etree._Element], *ident: object) -> etree._Element:
    section = E.section(*_templates(*templates), _uid("section", *ident), _cd("code", code), E.title(title),
                        text)
    for entry in entries:
        section.append(E.entry(entry))
    return E.component(section)


def _simple(code: Coding, anchor: str, value: etree._Element, *ident: object, when: date | None = None,
            children: Iterable[etree._Element] = ()) -> etree._Element:
    """FR-Simple-Observation (IHE PCC 1.3.6.1.4.1.19376.1.5.3.1.4.13, CI-SIS 1.2.250.1.213.1.1.3.48)."""
    obs = E.observation(*_templates("1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.2.250.1.213.1.1.3.48"),
                        _uid(code.code, *ident), _cd("code", code), _ref(anchor), E.statusCode(code="completed"),
                        E.effectiveTime(value=_ts(when)) if when else E.effectiveTime(nullFlavor="NA"),
                        value, classCode="OBS", moodCode="EVN")
    obs.extend(children)
    return obs


def _comment(anchor: str) -> etree._Element:
    """FR-Commentaire-ER (CI-SIS 1.2.250.1.213.1.1.3.32)."""
    return E.act(*_templates("2.16.840.1.113883.10.20.1.40", "1.3.6.1.4.1.19376.1.5.3.1.4.2",
                             "1.2.250.1.213.1.1.3.32"),
                 E.code(code="48767-8", displayName="Commentaire", codeSystem=LOINC, codeSystemName="LOINC"),
                 _ref(anchor), E.statusCode(code="completed"), classCode="ACT", moodCode="EVN")


def _ta(code: str, display: str) -> Coding:
    return Coding(code, TA, display)


def _loinc(code: str, display: str) -> Coding:
    return Coding(code, LOINC, display)


# -- body: the FRCP sections -------------------------------------------------------------------------------------


def _reason(fiche: Fiche, doc: str) -> etree._Element:
    """FR-Raison-de-la-recommandation: the type of RCP (nature of discussion GEN-098; organ system ORG-118 with the
    organ ORG-119, or transversal purpose ORG-138; "RCP de recours" ORG-184 and paediatric ORG-185 from the board's
    registration) and the reason (ORG-186: diagnostic opinion MED-235, treatment proposal ORG-114, referral ORG-115,
    paediatric ORG-116, case status ORG-127), as the official examples nest them."""
    b = fiche.board
    when = fiche.meeting_date
    rows = [("Nature de la discussion", b.discussion_nature.display or b.discussion_nature.code,
             "nature-discussion")]
    if b.system is not None:
        rows.append(("Appareil", b.system.display or b.system.code, "appareil"))
    if b.organ is not None:
        rows.append(("Organe", b.organ.display or b.organ.code, "organe"))
    if b.care is not None:
        rows.append(("Soins de support / spécificité", b.care.display or b.care.code, "soins"))
    rows += [("RCP de recours", _yes(b.referral), "RCPrecours"), ("RCP pédiatrique", _yes(b.paediatric),
                                                                   "RCPpediatrique")]
    status = codes.case_status(fiche.discussed)
    proposal = fiche.proposal
    treats = proposal is not None and any(c != codes.FURTHER_INVESTIGATIONS for c in proposal.codings())
    investigates = proposal is not None and codes.FURTHER_INVESTIGATIONS in proposal.codings()
    reason_rows = [("Question posée", fiche.question, "raison"),
                   ("Avis diagnostique", _yes(investigates), "avisDiagnostic"),
                   ("Proposition thérapeutique (dont surveillance, ajustement du traitement)", _yes(treats),
                    "propositionTherapeutique"),
                   ("Recours", _yes(b.referral), "recours"), ("Pédiatrique", _yes(b.paediatric), "pediatrique"),
                   ("Statut du cas présenté", status.display, "statut-cas-presente")]
    text = E.text(_table("Type de RCP", rows), E.br(), _table("Motif de la RCP", reason_rows))

    def flag(code: str, display: str, anchor: str, value: bool) -> etree._Element:
        return E.entryRelationship(_simple(_ta(code, display), anchor, _bl(value), doc, when=when),
                                   typeCode="REFR")

    board_flags = [flag("ORG-184", "RCP de recours", "RCPrecours", b.referral),
                   flag("ORG-185", "RCP pédiatrique", "RCPpediatrique", b.paediatric)]
    nature_children = []
    kind: etree._Element | None = None
    if b.system is not None:
        organ = ([E.entryRelationship(_simple(_ta("ORG-119", "Organe"), "organe",
                                              _cd("value", b.organ, xsi_type=True), doc), typeCode="REFR")]
                 if b.organ is not None else [])
        kind = _simple(_ta("ORG-118", "Appareil concerné"), "appareil", _cd("value", b.system, xsi_type=True), doc,
                       children=organ)
    elif b.care is not None:
        kind = _simple(_ta("ORG-138", "Traitement / Soins"), "soins", _cd("value", b.care, xsi_type=True), doc)
    if kind is not None:
        kind.extend(board_flags)
        nature_children.append(E.entryRelationship(kind, typeCode="SUBJ"))
    else:  # a board whose type is not known: the flags still say what the board is
        nature_children.extend(board_flags)
    nature = _simple(_ta("GEN-098", "Nature de la discussion"), "nature-discussion",
                     _cd("value", b.discussion_nature, xsi_type=True), doc, children=nature_children)
    motif = _simple(_ta("ORG-186", "Motif de la RCP"), "raison", _na_value(), doc, children=[
        flag("MED-235", "Avis diagnostique", "avisDiagnostic", investigates),
        flag("ORG-114", "Proposition de traitement (dont ajustement et surveillance)", "propositionTherapeutique",
             treats),
        flag("ORG-115", "Recours", "recours", b.referral),
        flag("ORG-116", "Pédiatrie", "pediatrique", b.paediatric),
        E.entryRelationship(_simple(_ta("ORG-127", "Statut du cas présenté"), "statut-cas-presente",
                                    _cd("value", status, xsi_type=True), doc), typeCode="REFR")])
    nature.append(E.entryRelationship(motif, typeCode="SUBJ"))
    problem = E.observation(
        *_templates("2.16.840.1.113883.10.20.1.28", "1.3.6.1.4.1.19376.1.5.3.1.4.5", "1.2.250.1.213.1.1.3.37"),
        _uid("probleme", doc), _cd("code", Coding("55607006", SNOMED, "problème")), _ref("raison"),
        E.statusCode(code="completed"), E.effectiveTime(E.low(value=_ts(fiche.meeting_date))),
        _na_value(E.originalText(E.reference(value="#raison"))),
        classCode="OBS", moodCode="EVN", negationInd="false")
    return _section(("1.3.6.1.4.1.19376.1.5.3.1.3.1", "1.3.6.1.4.1.19376.1.5.3.1.3.2", "1.2.250.1.213.1.1.2.128"),
                    _loinc("42349-1", "Raison de la recommandation"), "TYPE DE RCP / MOTIF DE LA RCP", text,
                    [nature, problem], doc, "raison")


def _na_value(*children: etree._Element) -> etree._Element:
    el = E.value(*children, nullFlavor="NA")
    el.set(_XSI_TYPE, "CD")
    return el


def _discovery(fiche: Fiche, doc: str) -> etree._Element:
    """FR-Resultats-evenements (mode of discovery): the fiche does not record screening, so it says so."""
    text = E.text(_table("Mode de découverte du cancer", [("Patient issu du dépistage", "Non renseigné",
                                                          "depistage")]))
    value = E.value(nullFlavor="NASK")
    value.set(_XSI_TYPE, "BL")
    obs = _simple(_loinc("63921-1", "Dépistage du cancer"), "depistage", value, doc)
    return _section(("1.3.6.1.4.1.19376.1.5.3.1.1.21.2.9", "1.3.6.1.4.1.19376.1.7.3.1.1.13.7",
                     "1.2.250.1.213.1.1.2.163"), _loinc("42545-4", "Evènements observés"),
                    "MODE DE DÉCOUVERTE DU CANCER", text, [obs], doc, "decouverte")


def _diagnosis_date(fiche: Fiche) -> str:
    """The FRCP's "date du diagnostic initial (minimum mois et année)" as HL7 TS (YYYYMM or YYYYMMDD)."""
    return fiche.diagnosis_date.replace("-", "")


def _tnm_observation(tnm: Tnm, doc: str, kind: str) -> etree._Element:
    """Stade TNM (IHE PCC 1.3.6.1.4.1.19376.1.7.3.1.4.14.2): stage group and edition as qualifiers, T/N/M parts."""
    clinical = kind == "c"
    loinc = ({"": ("75620-5", "Stade TNM Clinique"), "t": ("21905-5", "TNM Clinique T"),
              "n": ("21906-3", "TNM Clinique N"), "m": ("21907-1", "TNM Clinique M"),
              "stage": ("21908-9", "Stade clinique")} if clinical else
             {"": ("21902-2", "Stade TNM Pathologique"), "t": ("21899-0", "TNM Pathologique T"),
              "n": ("21900-6", "TNM Pathologique N"), "m": ("21901-4", "TNM Pathologique M"),
              "stage": ("21902-2", "Stade pathologique")})
    value = E.value()
    value.set(_XSI_TYPE, "CD")
    if tnm.stage:
        stage = E.value(code=tnm.stage, displayName=tnm.stage, codeSystem=TNM_UICC, codeSystemName="TNM_UICC")
        stage.set(_XSI_TYPE, "CD")
        value.append(E.qualifier(_cd("name", _loinc(*loinc["stage"])), stage))
    if tnm.edition:
        edition = E.value(code=tnm.edition, displayName=f"TNM_UICC {tnm.edition}e édition", codeSystem=TNM_UICC,
                          codeSystemName="TNM_UICC")
        edition.set(_XSI_TYPE, "CD")
        value.append(E.qualifier(_cd("name", _loinc("21917-0", "Version TNM Classification")), edition))
    obs = E.observation(E.templateId(root="1.3.6.1.4.1.19376.1.7.3.1.4.14.2"), _cd("code", _loinc(*loinc[""])),
                        _ref(f"tnm-{kind}"), E.statusCode(code="completed"), value,
                        classCode="OBS", moodCode="EVN", negationInd="false")
    for part, prefix, written in (("t", tnm.prefix, tnm.t), ("n", tnm.n_prefix or tnm.prefix, tnm.n),
                                  ("m", tnm.m_prefix or tnm.prefix, tnm.m)):
        if not written:
            continue
        v = E.value(code=written, displayName=f"{prefix}{written}", codeSystem=TNM_UICC, codeSystemName="TNM_UICC")
        if tnm.edition:
            v.set("codeSystemVersion", tnm.edition)
        v.set(_XSI_TYPE, "CD")
        obs.append(E.entryRelationship(_simple(_loinc(*loinc[part]), f"tnm-{kind}-{part}", v, doc, kind),
                                       typeCode="COMP"))
    return obs


def _tnm_unknown(doc: str) -> etree._Element:
    """The clinical TNM (75620-5) with its T, N and M (21905-5, 21906-3, 21907-1) said unknown (nullFlavor UNK):
    FRCP 2022.01 requires them (S_cancerDiagnosis_FRCP) even when the board gave none (a haematological cancer,
    a staging still to come)."""
    obs = E.observation(E.templateId(root="1.3.6.1.4.1.19376.1.7.3.1.4.14.2"),
                        _cd("code", _loinc("75620-5", "Stade TNM Clinique")), _ref("tnm-c"),
                        E.statusCode(code="completed"), _typed("CD", nullFlavor="UNK"),
                        classCode="OBS", moodCode="EVN", negationInd="false")
    for part, code, display in (("t", "21905-5", "TNM Clinique T"), ("n", "21906-3", "TNM Clinique N"),
                                ("m", "21907-1", "TNM Clinique M")):
        obs.append(E.entryRelationship(_simple(_loinc(code, display), f"tnm-c-{part}", _typed("CD", nullFlavor="UNK"),
                                               doc, "c"), typeCode="COMP"))
    return obs


def _diagnosis(fiche: Fiche, doc: str) -> etree._Element:
    """FR-Diagnostic-du-cancer: the primary tumour (ICD-10 topography, ICD-O-3 morphology, laterality, TNM)."""
    rows = [("Date du diagnostic initial", fiche.diagnosis_date or "Non renseignée", ""),
            ("Topographie", _label(fiche.tumour_site, fiche.tumour_site_text), "topographie"),
            ("Morphologie", _label(fiche.histology, fiche.histology_text), "morphologie")]
    lat = LATERALITIES.get(fiche.laterality)
    if lat is not None:
        rows.append(("Latéralité", lat.display, "lateralite"))
    stagings = [(t, k) for t, k in ((fiche.clinical_tnm, "c"), (fiche.pathological_tnm, "p")) if t is not None]
    for tnm, kind in stagings:
        edition = f"TNM_UICC {tnm.edition}e édition" if tnm.edition else "édition TNM à confirmer"
        stage = f", stade {tnm.stage}" if tnm.stage else ""
        rows.append(("TNM " + ("clinique" if kind == "c" else "pathologique"), f"{tnm.label()} ({edition}){stage}",
                     f"tnm-{kind}"))
        for part, written in (("t", tnm.t), ("n", tnm.n), ("m", tnm.m)):
            if written:
                rows.append((f"TNM ({part.upper()})", written, f"tnm-{kind}-{part}"))
    if fiche.clinical_tnm is None:
        rows.append(("TNM clinique", "Non renseigné", "tnm-c"))
        rows.extend((f"TNM ({part})", "Non renseigné", f"tnm-c-{part.lower()}") for part in "TNM")
    for i, other in enumerate(fiche.other_classifications):
        rows.append(("Autre classification du stade", other.label(), f"autre-classification-{i}"))
    rows.append(("Tumeur primitive", "", "tumeurPrim"))
    text = E.text(_table("Tumeur primitive", rows))
    when = _diagnosis_date(fiche)
    effective = E.effectiveTime(E.low(value=when)) if when else E.effectiveTime(E.low(nullFlavor="UNK"))
    morphology = (_cd("value", fiche.histology, xsi_type=True) if fiche.histology is not None
                  else _na_value())
    morphology.append(E.originalText(E.reference(value="#morphologie")))
    problem = E.observation(
        *_templates("2.16.840.1.113883.10.20.1.28", "1.3.6.1.4.1.19376.1.5.3.1.4.5", "1.2.250.1.213.1.1.3.37",
                    "1.3.6.1.4.1.19376.1.7.3.1.4.14.1", "1.2.250.1.213.1.1.3.113"),
        _uid("tumeur", doc), _cd("code", Coding("282291009", SNOMED, "interprétation diagnostique")),
        _ref("tumeurPrim"), E.statusCode(code="completed"), _copy(effective), morphology,
        classCode="OBS", moodCode="EVN", negationInd="false")
    # IHE Cancer Diagnosis Entry: targetSiteCode is required; a topography not coded (yet) is said unknown, the
    # narrative's free text (if any) as its original text.
    site = _cd("targetSiteCode", fiche.tumour_site) if fiche.tumour_site is not None \
        else E.targetSiteCode(nullFlavor="UNK")
    site.append(E.originalText(E.reference(value="#topographie")))
    if lat is not None:
        site.append(E.qualifier(_cd("name", _loinc("20228-3", "Latéralité")),
                                _cd("value", Coding(lat.code, SNOMED, lat.display))))
    problem.append(site)
    if fiche.clinical_tnm is None:  # FRCP requires the clinical TNM with its T, N and M: said unknown
        problem.append(E.entryRelationship(_tnm_unknown(doc), typeCode="SUBJ", inversionInd="false"))
    for tnm, kind in stagings:
        problem.append(E.entryRelationship(_tnm_observation(tnm, doc, kind), typeCode="SUBJ", inversionInd="false"))
    concern = E.act(
        *_templates("2.16.840.1.113883.10.20.1.27", "1.3.6.1.4.1.19376.1.5.3.1.4.5.1",
                    "1.3.6.1.4.1.19376.1.5.3.1.4.5.2", "1.2.250.1.213.1.1.3.39", "1.2.250.1.213.1.1.3.39.1"),
        _uid("preoccupation", doc), E.code(nullFlavor="NA"), E.statusCode(code="active"), effective,
        E.entryRelationship(problem, typeCode="SUBJ", inversionInd="false"), classCode="ACT", moodCode="EVN")
    return _section(("2.16.840.1.113883.10.20.1.11", "1.3.6.1.4.1.19376.1.5.3.1.3.6",
                     "1.3.6.1.4.1.19376.1.7.3.1.3.14.1", "1.2.250.1.213.1.1.2.27"),
                    _loinc("72135-7", "Diagnostic du cancer"), "TUMEUR", text, [concern], doc, "tumeur")


def _copy(el: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(el))


def _label(coding: Coding | None, text: str) -> str:
    shown = f"{coding.code} {coding.display}".strip() if coding is not None else ""
    return " — ".join(x for x in (shown, text) if x) or "Non renseignée"


def _progress(fiche: Fiche, doc: str) -> etree._Element:
    """FR-Note-de-progression: the cancer phase (MED-243, JDV_PhaseCancer_CISIS) and the progression (MED-245),
    each [1..1] in FRCP 2022.01. The fiche does not record a progression, and a phase may not be given yet: the
    entries are there, their value unknown (nullFlavor UNK), never a guessed "no"."""
    phase = fiche.cancer_phase
    text = E.text(_table("Phase clinique de la maladie",
                         [("Phase du cancer", phase.display if phase else "Non renseignée", "phase"),
                          ("Progression", "Non renseignée", "progression")]))
    value = _cd("value", phase, xsi_type=True) if phase is not None else _typed("CD", nullFlavor="UNK")
    entries = [_simple(_ta("MED-243", "Phase du cancer"), "phase", value, doc, when=fiche.meeting_date),
               _simple(_ta("MED-245", "Progression du cancer"), "progression", _typed("BL", nullFlavor="UNK"), doc,
                       when=fiche.meeting_date)]
    return _section(("1.3.6.1.4.1.19376.1.5.3.1.1.13.2.7", "1.2.250.1.213.1.1.2.25"),
                    _loinc("18733-6", "Note de progression"), "PHASE CLINIQUE DE LA MALADIE", text, entries, doc,
                    "phase")


def _functional_status(fiche: Fiche, doc: str) -> etree._Element:
    """FR-Evaluation-du-statut-fonctionnel (CI-SIS 1.2.250.1.213.1.1.2.111): the WHO performance status (MED-239,
    JDV_OMSEchPerf_CISIS, its meaning from JDV_OMSInterpret_CISIS) in FR-Fonctions-physiques, and the pain
    subsection the template requires (1..1), which the FRCP says carries nothing (value UNK)."""
    ps = fiche.performance_status
    pain = E.section(
        *_templates("1.3.6.1.4.1.19376.1.5.3.1.1.12.2.2", "1.2.250.1.213.1.1.2.112"), _uid("section", doc, "douleur"),
        _cd("code", _loinc("38208-5", "Sévérité de la douleur")), E.title("Évaluation de la douleur"),
        E.text(_table("Évaluation de la douleur", [("Sévérité de la douleur", "Non renseignée",
                                                    "severite-douleur")])),
        E.entry(E.observation(
            *_templates("1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.3.6.1.4.1.19376.1.5.3.1.1.12.3.1",
                        "1.2.250.1.213.1.1.3.89"),
            _uid("douleur", doc), _cd("code", _loinc("38208-5", "Sévérité de la douleur")), _ref("severite-douleur"),
            E.statusCode(code="completed"), E.effectiveTime(nullFlavor="UNK"), _typed("CO", nullFlavor="UNK"),
            classCode="OBS", moodCode="EVN")))
    grade = ps.coding if ps is not None else None
    meaning = codes.performance_interpretation(ps.grade) if ps is not None else None
    rows = [("Échelle de performance OMS", f"{grade.display} — {meaning.display}" if grade and meaning
             else "Non renseignée", "performance-OMS")]
    physical = E.section(
        *_templates("1.3.6.1.4.1.19376.1.5.3.1.1.12.2.5", "1.2.250.1.213.1.1.2.115"),
        _uid("section", doc, "fonctions-physiques"),
        _cd("code", _loinc("46006-3", "Problèmes physiques fonctionnels et structurels")),
        E.title("Échelle de performance OMS"), E.text(_table("Échelle de performance OMS", rows)))
    if grade is not None and meaning is not None:
        value = _cd("value", grade, xsi_type=True)
        physical.append(E.entry(E.observation(
            *_templates("1.3.6.1.4.1.19376.1.5.3.1.4.13", "2.16.840.1.113883.10.20.1.31",
                        "1.3.6.1.4.1.19376.1.5.3.1.1.12.3.6", "1.2.250.1.213.1.1.3.25"),
            _uid("MED-239", doc), _cd("code", _ta("MED-239", "Echelle de performance OMS")),
            _ref("performance-OMS"), E.statusCode(code="completed"),
            E.effectiveTime(value=_ts(fiche.meeting_date)), value, _cd("interpretationCode", meaning),
            classCode="OBS", moodCode="EVN", negationInd="false")))
    section = E.section(
        *_templates("2.16.840.1.113883.10.20.1.5", "1.3.6.1.4.1.19376.1.5.3.1.3.17",
                    "1.3.6.1.4.1.19376.1.5.3.1.1.12.2.1", "1.2.250.1.213.1.1.2.111"),
        _uid("section", doc, "statut-fonctionnel"), _cd("code", _loinc("47420-5", "Évaluation du statut fonctionnel")),
        E.title("ÉVALUATION DU STATUT FONCTIONNEL"),
        E.text(_table("Évaluation du statut fonctionnel", [("Échelle de performance OMS", rows[0][1], "")])),
        E.component(pain), E.component(physical))
    return E.component(section)


def _typed(kind: str, **attributes: str) -> etree._Element:
    el = E.value(**attributes)
    el.set(_XSI_TYPE, kind)
    return el


def _history(fiche: Fiche, doc: str) -> etree._Element:
    """FR-Histoire-de-la-maladie-non-code: the case summary, the question asked of the board and, as on the PDF,
    the imaging reviewed (the studies and the key images marked in the room, with what the board saw in them)."""
    rows = [("Synthèse", fiche.clinical_summary or "Non renseignée", ""), ("Question posée", fiche.question, "")]
    count = len(fiche.study_uids)
    rows.append(("Imagerie revue", f"{count} examen{'s' if count > 1 else ''} d'imagerie" if count
                 else "Aucun examen d'imagerie", ""))
    for i, image in enumerate(fiche.key_images, start=1):
        rows.append((f"Image clé {i}", image.description or "Sans description", ""))
    text = E.text(_table("Synthèse du cas présenté et question posée à la RCP", rows))
    return _section(("1.3.6.1.4.1.19376.1.5.3.1.3.4", "1.2.250.1.213.1.1.2.130"),
                    _loinc("10164-2", "Histoire de la maladie"),
                    "SYNTHÈSE DU CAS PRÉSENTÉ ET QUESTION POSÉE A LA RCP", text, [], doc, "histoire")


def _case_record(fiche: Fiche, doc: str) -> etree._Element:
    """FR-Statut-dossier-RCP: the RCP information organizer (GEN-099) with the quorum (ORG-125)."""
    quorum = fiche.quorum()
    status = codes.quorum_status(quorum.met)
    present = [f"{a.name} ({a.specialty}{'' if a.quorum_member else ', hors quorum'})" for a in fiche.attendees]
    text = E.text(_table("Statut du dossier présenté en RCP",
                         [("Dossier complet", "Non renseigné", "dossier-complet"),
                          ("Quorum", status.display, "quorum"), ("Participants", "; ".join(present), "")]))
    # GEN-100 "Dossier complet": the fiche does not record it, so it is said unknown rather than guessed.
    organizer = E.organizer(
        E.templateId(root="1.2.250.1.213.1.1.3.7"), _cd("code", _ta("GEN-099", "Information RCP")),
        E.statusCode(code="completed"),
        E.component(_simple(_ta("GEN-100", "Dossier complet"), "dossier-complet", _typed("BL", nullFlavor="UNK"),
                            doc)),
        E.component(_simple(_ta("ORG-125", "Quorum RCP"), "quorum", _cd("value", status, xsi_type=True), doc)),
        classCode="CLUSTER", moodCode="EVN")
    return _section(("1.2.250.1.213.1.1.2.33",), _loinc("21874-3", "Statut du dossier présenté en RCP"),
                    "STATUT DU DOSSIER", text, [organizer], doc, "dossier")


def _plan(fiche: Fiche, doc: str) -> etree._Element:
    """FR-Plan-de-soins: the proposal (FR-Acte per treatment code, or FR-Demande-d-examen-ou-de-suivi)."""
    proposal = fiche.proposal
    rows = []
    entries = []
    if proposal is not None:
        for i, coding in enumerate(proposal.codings()):
            anchor = f"traitement-{i}"
            rows.append(("Proposition", coding.display or coding.code, anchor))
            entries.append(_act(coding, anchor, doc, i) if coding != codes.FURTHER_INVESTIGATIONS
                           else _request(coding, anchor, doc, i))
        if proposal.details:
            rows.append(("Précisions", proposal.details, "commentaire-proposition"))
            entries.append(_comment("commentaire-proposition"))
    else:
        rows.append(("Proposition", "Aucune (cas enregistré)", ""))
    rows.append(("Patient informé de la proposition", _yes(fiche.patient_informed), ""))
    text = E.text(_table("Proposition de la RCP", rows))
    return _section(("2.16.840.1.113883.10.20.1.10", "1.3.6.1.4.1.19376.1.5.3.1.3.36", "1.2.250.1.213.1.1.2.158"),
                    _loinc("18776-5", "Plan de soins"), "PROPOSITION DE LA RCP", text, entries, doc, "plan")


def _act(coding: Coding, anchor: str, doc: str, i: int) -> etree._Element:
    """FR-Acte (CI-SIS 1.2.250.1.213.1.1.3.62), intended (moodCode INT), numbered in order of the proposal."""
    code = _cd("code", coding)
    code.append(E.originalText(E.reference(value=f"#{anchor}")))
    return E.procedure(
        *_templates("2.16.840.1.113883.10.20.1.25", "1.3.6.1.4.1.19376.1.5.3.1.4.19", "1.2.250.1.213.1.1.3.62"),
        _uid("acte", doc, i), code, _ref(anchor), E.statusCode(code="active"),
        E.effectiveTime(E.low(nullFlavor="UNK")), E.priorityCode(E.originalText(str(i + 1))),
        classCode="PROC", moodCode="INT", negationInd="false")


def _request(coding: Coding, anchor: str, doc: str, i: int) -> etree._Element:
    """FR-Demande-d-examen-ou-de-suivi (CI-SIS 1.2.250.1.213.1.1.3.27): further investigations."""
    return E.observation(
        *_templates("2.16.840.1.113883.10.20.1.25", "1.3.6.1.4.1.19376.1.5.3.1.1.20.3.1", "1.2.250.1.213.1.1.3.27"),
        _uid("demande", doc, i), _cd("code", coding), _ref(anchor), E.statusCode(code="new"),
        E.effectiveTime(E.low(nullFlavor="UNK")), classCode="OBS", moodCode="RQO")


def _frame(fiche: Fiche, doc: str) -> etree._Element:
    """FR-Cadre-de-la-proposition-therapeutique: guideline (MED-249) and clinical trial (MED-250)."""
    g, trial = fiche.guideline, fiche.clinical_trial
    rows = [("Proposition conforme au référentiel", _yes(g.conforms), "pratique-clinique"),
            ("Référentiel", g.reference or "Non renseigné", "nom-referentiel")]
    if g.reason:
        rows.append(("Raison de l'écart", g.reason, "commentaire-cadre"))
    rows.append(("Proposition d'inclusion dans un essai clinique", _yes(trial.proposed), "essai-clinique"))
    if trial.proposed:
        rows.append(("Essai clinique", trial.trial, "nom-essai"))
    text = E.text(_table("Cadre de la proposition thérapeutique", rows))
    entries = []
    if g.reference:
        name = E.value(E.originalText(E.reference(value="#nom-referentiel")))
        name.set(_XSI_TYPE, "CD")
        entries.append(_simple(_ta("MED-249", "Recommandation/référentiel de pratique clinique"), "nom-referentiel",
                               name, doc))
    entries.append(_simple(_ta("MED-250", "Proposition d'inclusion dans un essai clinique"), "essai-clinique",
                           _bl(trial.proposed), doc))
    if g.reason:
        entries.append(_comment("commentaire-cadre"))
    return _section(("1.2.250.1.213.1.1.2.175",), _loinc("35510-7", "Essais cliniques - Informations générales"),
                    "CADRE DE LA PROPOSITION THÉRAPEUTIQUE", text, entries, doc, "cadre")


def _comments(fiche: Fiche, doc: str) -> etree._Element | None:
    """FR-Commentaire-non-code (CI-SIS 1.2.250.1.213.1.1.2.73): the fiche's comments, as the PDF prints them."""
    if not fiche.comments.strip():
        return None
    section = E.section(*_templates("2.16.840.1.113883.10.12.201", "1.3.6.1.4.1.19376.1.4.1.2.16",
                                    "1.2.250.1.213.1.1.2.73"),
                        _cd("code", _loinc("55112-7", "Commentaire")),
                        E.title("COMMENTAIRES / PRÉCISIONS SUR LE PATIENT"),
                        E.text(E.table(E.thead(E.tr(E.th("Commentaires / précisions sur le patient"))),
                                       E.tbody(E.tr(E.td(fiche.comments))), border="0")))
    return E.component(section)


def _document_status(fiche: Fiche, version: SignedVersion, doc: str) -> etree._Element:
    """FR-Statut-du-document (GEN-065, JDV_StatutDoc_CISIS): a signed version is a completed document."""
    status = codes.value_set(codes.DOCUMENT_STATUS).lookup("9571008", SNOMED)
    rows = [("Statut du document", status.display, "statut-document"),
            ("Date du statut du document", version.signed_at.astimezone(_PARIS).strftime("%d/%m/%Y"), "")]
    if version.replaces is not None:
        rows.append(("Correction de la version", f"{version.replaces} — {version.reason}", ""))
    obs = _simple(_ta("GEN-065", "Statut du document"), "statut-document", _cd("value", status, xsi_type=True), doc,
                  when=version.signed_at.astimezone(_PARIS).date())
    obs.insert(2, E.templateId(root="1.2.250.1.213.1.1.3.48.16"))
    return _section(("1.2.250.1.213.1.1.2.35",), _loinc("33557-0", "Etat d'achèvement"), "STATUT DU DOCUMENT",
                    E.text(_table("Statut du document", rows)), [obs], doc, "statut")


# -- the document --------------------------------------------------------------------------------------------------


def fiche_cda(fiche: Fiche, version: SignedVersion, *, replaced: SignedVersion | None = None,
              custodian: Custodian | None = None) -> bytes:
    """The CANCER-FRCP CDA R2 document of one signed version, UTF-8 with its XML declaration.

    ``replaced`` is the version a correction replaces (``version.replaces``): its document id goes into
    ``relatedDocument/parentDocument`` (RPLC). The output is deterministic: the same version gives the same bytes.
    """
    if (version.replaces is None) != (replaced is None) or (replaced and replaced.number != version.replaces):
        raise ValueError(f"'replaced' must be the version {version.replaces} that version {version.number} replaces")
    custodian = custodian or Custodian.of(fiche)
    set_id, unique_id = document_ids(fiche, version)
    doc = unique_id
    signer = _signer(version, fiche)
    start = datetime.combine(fiche.meeting_date, datetime.min.time(), tzinfo=_PARIS)
    root = E.ClinicalDocument(
        E.realmCode(code="FR"),
        E.typeId(root="2.16.840.1.113883.1.3", extension="POCD_HD000040"),
        *_templates("2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"),
        E.templateId(root="1.2.250.1.213.1.1.1.8", extension="2022.01"),
        _ii(unique_id),
        E.code(code=LOINC_FRCP, codeSystem=LOINC, codeSystemName="LOINC",
               displayName="CR de réunion de concertation pluridisciplinaire"),
        E.title(custodian.title(fiche.board.name)),
        E.effectiveTime(value=_ts(version.signed_at)),
        E.confidentialityCode(code="N", codeSystem="2.16.840.1.113883.5.25", displayName="Normal"),
        E.languageCode(code="fr-FR"),
        E.setId(root=set_id),
        E.versionNumber(value=str(version.number)),
        _record_target(fiche),
        _author(signer, version.signed_at),
        _custodian(custodian),
        _legal(signer, version.signed_at),
        *_participants(fiche),
        *_documentation_of(fiche, signer, start, custodian),
    )
    if replaced is not None:
        root.append(E.relatedDocument(E.parentDocument(_ii(document_ids(fiche, replaced)[1]), E.setId(root=set_id),
                                                       E.versionNumber(value=str(replaced.number))),
                                      typeCode="RPLC"))
    root.append(_component_of(fiche, custodian, start))
    root.append(E.component(E.structuredBody(
        _reason(fiche, doc), _discovery(fiche, doc), _diagnosis(fiche, doc), _functional_status(fiche, doc),
        _progress(fiche, doc),
        _history(fiche, doc), _case_record(fiche, doc), _plan(fiche, doc), _frame(fiche, doc),
        *[c for c in (_comments(fiche, doc),) if c is not None], _document_status(fiche, version, doc))))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
