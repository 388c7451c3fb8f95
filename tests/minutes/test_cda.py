"""The CANCER-FRCP CDA R2 export (rcp.minutes.cda) against the CDA schema and the ANS CI-SIS schematrons.

Every document the tests write passes the CDA schema (CDA_extended.xsd) and the schematron profiles listed in
``CLEAN_PROFILES`` with zero errors; the route serves a signed version through the one access policy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from lxml import etree
from sqlmodel import col, func, select

from rcp.auth.models import AuditEvent
from rcp.db import Database
from rcp.demo import (
    DEMO_BOARD_IDS,
    DEMO_ESTABLISHMENT,
    DEMO_IDENTITY,
    DEMO_INS_OID,
    DEMO_PATIENTS,
    HOSPITAL_A_OID,
)
from rcp.epr.fhir import RCP_SOURCE_OID
from rcp.errors import Invalid
from rcp.identifiers import ins_may_leave
from rcp.minutes import codes
from rcp.minutes.cda import fiche_cda
from rcp.minutes.cda_reader import read_fiche_cda
from rcp.minutes.fiche import Fiche, Physician
from rcp.minutes.oids import document_ids
from rcp.minutes.versions import Draft, SignedVersion, amend, sign
from rcp.people import PersonName
from rcp.scheduling.models import Board, Establishment, Meeting
from tests.minutes.cda_validation import EXAMPLES, PROFILES, schema_errors, schematron_failures
from tests.minutes.seeding import as_user, fill, give_password, migrated, minutes_client, seed, signer_proof

SCT = "2.16.840.1.113883.6.96"
V3 = {"c": "urn:hl7-org:v3"}
SIGNER = Physician(name="Pr Bruno ONCOLOGUE", specialty="medical_oncologist", user_id=2, rpps="10003456784",
                   person=PersonName(family="Oncologue", given="Bruno", prefix="Pr"))
#: The schematron profiles every generated document passes with zero errors (see the module docstring).
CLEAN_PROFILES = ("frcp", "ihe", "modeles", "ans")


def signed(fiche: Fiche, at: datetime) -> SignedVersion:
    return sign(fiche, draft=Draft(case_id=fiche.case_id), seen_revision=0, signer=SIGNER,
                invited_ids={1, 2, 3, 4}, existing=[], at=at)


def xml(document: bytes) -> Any:
    return etree.fromstring(document)


def ids(tree: Any, path: str) -> list[tuple[str | None, str | None]]:
    return [(e.get("root"), e.get("extension")) for e in tree.iterfind(path, V3)]


#: The demo's establishment and boards (rcp.demo), as a signed fiche's content carries them.
ESTABLISHMENT = {**DEMO_ESTABLISHMENT, "custodian_finess": "", "custodian_name": ""}
SYSTEMS = {"thoracic": "312419003", "digestive": "86762007"}


def registered(board: dict[str, Any], name: str = "RCP thoracique", **flags: Any) -> dict[str, Any]:
    return {**board, "name": name, "national_id": DEMO_BOARD_IDS.get(name, "84010399"),
            "establishment": ESTABLISHMENT, **flags}


def demo_contents(content: Callable[..., dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One fiche per demo case (rcp.demo): its patient with the identity status the demo gives, its board with
    its registration, its question and summary; the clinical coding of the base content."""
    out = {}
    for p in DEMO_PATIENTS:
        status, document, attributes = DEMO_IDENTITY.get(p.ipp, ("qualified", "", ()))
        patient = {"family_name": p.family_name, "given_names": p.given_names, "birth_date": p.birth_date.isoformat(),
                   "sex": p.sex, "ins": p.ins, "ins_system": DEMO_INS_OID, "local_id": p.ipp,
                   "local_id_issuer": "CHU de Lyon", "local_id_issuer_oid": HOSPITAL_A_OID,
                   "identity_status": status, "identity_attributes": list(attributes),
                   "identity_document": document}
        base = content()["board"]
        board = registered({**base, "organ": None, "system": {"code": SYSTEMS[p.board], "system": SCT}},
                           f"RCP {'thoracique' if p.board == 'thoracic' else 'digestive'}",
                           referral=p.board == "thoracic")
        out[f"demo {p.ipp}"] = content(patient=patient, board=board, question=p.question,
                                       clinical_summary=p.summary)
    return out


@pytest.fixture
def contents(content: Callable[..., dict[str, Any]]) -> dict[str, dict[str, Any]]:
    care = codes.value_set(codes.SUPPORTIVE_CARE).concepts[0]
    board = content()["board"]
    patient = {**content()["patient"], "identity_status": "provisional", "local_id_issuer_oid": "1.2.250.1.999.7"}
    return {
        "organ board": content(board=registered(board), attendees=[
            {**a, "rpps": "10001234567"} if a["specialty"] == "surgeon" else a for a in content()["attendees"]]),
        "transversal board": content(board=registered({
            "name": "RCP Oncogériatrie", "discussion_nature": {"code": "ORG-132", "system": codes.TA_ASIP},
            "care": care.as_json(), "required_specialties": [], "minimum_specialties": 3}, "RCP Oncogériatrie",
            paediatric=True)),
        "trial": content(board=registered(board),
                         clinical_trial={"proposed": True, "trial": "NCT01234567 (ESSAI-SEIN)"}),
        "provisional identity": content(board=registered(board), patient=patient, gp=None),
        "board not registered": content(),
        # Nothing coded yet (a case registered for a later discussion): the required entries say "unknown".
        "nothing coded": {k: v for k, v in content(board=registered(board)).items()
                          if k not in {"clinical_tnm", "tumour_site", "histology", "cancer_phase",
                                       "performance_status"}},
        **demo_contents(content),
    }


@pytest.fixture
def documents(contents: dict[str, dict[str, Any]], now: datetime) -> dict[str, bytes]:
    """One document per kind of fiche (organ board, transversal board, trial, provisional identity, a board not
    registered yet, each demo case) and a correction of the first."""
    out: dict[str, bytes] = {}
    for kind, content in contents.items():
        fiche = Fiche.from_content(content)
        out[kind] = fiche_cda(fiche, signed(fiche, now))
    first = Fiche.from_content(contents["organ board"])
    v1 = signed(first, now)
    corrected = Fiche.from_content({**contents["organ board"], "comments": "Ajout : EFR."})
    v2 = amend(corrected, replaces=v1, existing=[v1], reason="EFR oubliées", signer=SIGNER,
               invited_ids={1, 2, 3, 4}, at=now + timedelta(hours=2))
    out["correction"] = fiche_cda(corrected, v2, replaced=v1)
    return out


def test_every_document_passes_the_cda_schema(documents: dict[str, bytes]) -> None:
    for kind, document in documents.items():
        assert schema_errors(document) == [], kind


def test_the_official_examples_pass_the_same_schema() -> None:
    """The validation itself is sound: the ANS examples pass it, and a broken document does not."""
    for example in sorted(EXAMPLES.glob("*.xml")):
        assert schema_errors(example.read_bytes()) == [], example.name
    broken = etree.fromstring((EXAMPLES / "CANCER-FRCP_2022.01_Appareil.xml").read_bytes())
    broken.remove(broken.find("c:recordTarget", V3))
    assert schema_errors(etree.tostring(broken))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("profile", CLEAN_PROFILES)
def test_every_document_passes_the_ans_schematrons(documents: dict[str, bytes], profile: str,
                                                    tmp_path: Path) -> None:
    failures = {kind: [str(f) for f in schematron_failures(document, profile, tmp_path)]
                for kind, document in documents.items()}
    assert failures == {kind: [] for kind in documents}


@pytest.mark.timeout(600)
def test_the_frcp_schematron_catches_a_missing_section(documents: dict[str, bytes], tmp_path: Path) -> None:
    tree = xml(documents["organ board"])
    body = tree.find(".//c:structuredBody", V3)
    status = body.find("c:component/c:section/c:templateId[@root='1.2.250.1.213.1.1.2.35']/../..", V3)
    body.remove(status)
    failures = schematron_failures(etree.tostring(tree), "frcp", tmp_path)
    assert any("FR-Statut-du-document" in f.text for f in failures), PROFILES["frcp"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("profile", CLEAN_PROFILES)
def test_the_schematrons_judge_the_official_examples_as_the_ans_kit_does(profile: str, tmp_path: Path) -> None:
    """The profiles really run: the ANS examples fail only the one "modeles" assertion the kit documents (an
    author specialty, G15_10/SCH10, outside JDV_J01_XdsAuthorSpecialty), which our author passes."""
    for example in sorted(EXAMPLES.glob("*.xml")):
        failures = schematron_failures(example.read_bytes(), profile, tmp_path)
        if profile == "modeles":
            assert [("assignedAuthor/code" in f.text and "G15_10/SCH10" in f.text) for f in failures] == [True]
        else:
            assert failures == [], example.name


@pytest.mark.timeout(600)
@pytest.mark.parametrize("example", ["CANCER-FRCP_2022.01_Appareil.xml", "CANCER-FRCP_2022.01_Transversale.xml"])
def test_the_official_examples_round_trip(example: str, tmp_path: Path) -> None:
    """Each official example, read into the model (rcp.minutes.cda_reader) and written back, passes the schema and
    fails no schematron assertion it did not already fail; what the model holds comes back unchanged."""
    original = (EXAMPLES / example).read_bytes()
    read = read_fiche_cda(original)
    again = fiche_cda(read.fiche, read.version)
    assert schema_errors(again) == []
    for profile in CLEAN_PROFILES:
        before = {f.text for f in schematron_failures(original, profile, tmp_path)}
        after = {f.text for f in schematron_failures(again, profile, tmp_path)}
        assert after <= before, (profile, after - before)
    source, written = xml(original), xml(again)
    for path in ("c:recordTarget/c:patientRole/c:id", "c:componentOf/c:encompassingEncounter/c:id",
                 "c:componentOf/c:encompassingEncounter/c:location/c:healthCareFacility/c:id",
                 "c:legalAuthenticator/c:assignedEntity/c:id"):
        kept = ids(source, path)
        if path.endswith("encompassingEncounter/c:id"):
            kept = kept[:3]  # the national ids (the session's and local ids are the sending system's)
        assert ids(written, path)[:len(kept)] == kept, path
    for code in ("GEN-098", "ORG-118", "ORG-119", "ORG-138", "ORG-184", "ORG-185", "ORG-127", "MED-243", "MED-239",
                 "MED-250"):
        found = source.find(f".//c:observation/c:code[@code='{code}']/../c:value", V3)
        if found is not None and (found.get("code") or found.get("value")):
            back = written.find(f".//c:observation/c:code[@code='{code}']/../c:value", V3)
            assert (back.get("code"), back.get("value")) == (found.get("code"), found.get("value")), code
    # People by RPPS ("8" + RPPS) keep it; other national ids (ADELI...) have no place in the model: by name.
    def by_rpps(tree: Any) -> list[str | None]:  # attendees (353 in the quorum, CORRE outside), not the presenter
        return [e for code in ("353", "CORRE") for _, e in ids(
            tree, f"c:participant[@typeCode='PRF']/c:functionCode[@code='{code}']/../c:associatedEntity/c:id")
            if e and e.startswith("8") and len(e) == 12]
    assert by_rpps(written) == by_rpps(source) != []
    gp = "c:participant[@typeCode='INF']/c:associatedEntity/c:associatedPerson/c:name/c:family"
    assert written.findtext(gp, namespaces=V3) == source.findtext(gp, namespaces=V3)
    assert len(read.fiche.attendees) == len([p for p in source.iterfind("c:participant[@typeCode='PRF']", V3)
                                             if p.find("c:functionCode", V3).get("code") in {"353", "CORRE"}])


@pytest.mark.timeout(600)
def test_a_code_outside_its_value_set_is_an_error(documents: dict[str, bytes], tmp_path: Path) -> None:
    tree = xml(documents["organ board"])
    tree.find(".//c:observation/c:code[@code='ORG-125']/../c:value", V3).set("code", "ORG-999")
    failures = schematron_failures(etree.tostring(tree), "frcp", tmp_path)
    assert [("ORG-999" in f.text and "JDV_StatutQuorum" in f.text) for f in failures] == [True]


def test_header_identity_follows_the_identity_status(documents: dict[str, bytes]) -> None:
    qualified = xml(documents["organ board"])
    assert ids(qualified, "c:recordTarget/c:patientRole/c:id")[0] == ("1.2.250.1.213.1.4.10", "279035121518989")
    provisional = xml(documents["provisional identity"])
    # RNIV: no INS for an identity that is not qualified; the IPP under its assigning authority's OID.
    assert ids(provisional, "c:recordTarget/c:patientRole/c:id") == [("1.2.250.1.999.7", "IPP0042")]
    assert b"279035121518989" not in documents["provisional identity"]
    name = provisional.find("c:recordTarget/c:patientRole/c:patient/c:name", V3)
    assert name.findtext("c:family[@qualifier='BR']", namespaces=V3) == "Lefèvre"
    assert provisional.find("c:recordTarget/c:patientRole/c:patient/c:birthTime", V3).get("value") == "19580328"


def test_header_people_document_and_correction(documents: dict[str, bytes], contents: dict[str, Any],
                                               now: datetime) -> None:
    tree = xml(documents["organ board"])
    assert tree.find("c:code", V3).get("code") == "34794-8"
    assert tree.find("c:confidentialityCode", V3).get("code") == "N"
    # The signer is author and legal authenticator, by IdNatPS (8 + RPPS), named in parts.
    for path in ("c:author/c:assignedAuthor", "c:legalAuthenticator/c:assignedEntity"):
        entity = tree.find(path, V3)
        assert ids(entity, "c:id") == [("1.2.250.1.71.4.2.1", "810003456784")]
        name = entity.find("c:assignedPerson/c:name", V3)
        assert (name.findtext("c:given", namespaces=V3), name.findtext("c:family", namespaces=V3),
                name.findtext("c:suffix", namespaces=V3)) == ("Bruno", "Oncologue", "PR")
    assert tree.find("c:legalAuthenticator/c:time", V3).get("value") == "20261123163000+0100"
    assert tree.find("c:custodian//c:representedCustodianOrganization/c:name", V3) is not None
    roles = [(p.get("typeCode"), p.findtext("c:functionCode/c:originalText", namespaces=V3))
             for p in tree.iterfind("c:participant", V3)]
    # Attendees with an RPPS number are named by it (IdNatPS); the others by their account in the service.
    quorum = tree.findall("c:participant[@typeCode='PRF']/c:associatedEntity", V3)
    assert ids(quorum[0], "c:id") == [("1.2.250.1.71.4.2.1", "810001234567")]
    assert ids(quorum[1], "c:id")[0][0] != "1.2.250.1.71.4.2.1"
    assert roles.count(("PRF", "Participant du quorum")) == 3
    assert roles.count(("PRF", "Participant hors quorum")) == 1
    assert {("RESP", "PS Coordonnateur de la RCP"), ("REFB", "PS Demandeur"), ("INF", "Médecin traitant"),
            ("CON", "PS Correspondant")} <= set(roles)
    gp = tree.find("c:participant[@typeCode='INF']", V3)
    assert ids(gp, "c:associatedEntity/c:id") == [("1.2.250.1.71.4.2.1", "810001234567")]

    fiche = Fiche.from_content(contents["organ board"])
    v1 = signed(fiche, now)
    set_id, first_id = document_ids(fiche, v1)
    correction = xml(documents["correction"])
    assert tree.find("c:setId", V3).get("root") == correction.find("c:setId", V3).get("root") == set_id
    assert tree.find("c:versionNumber", V3).get("value") == "1"
    assert correction.find("c:versionNumber", V3).get("value") == "2"
    related = correction.find("c:relatedDocument", V3)
    assert related.get("typeCode") == "RPLC"
    assert related.find("c:parentDocument/c:id", V3).get("root") == first_id == tree.find("c:id", V3).get("root")
    assert tree.find("c:relatedDocument", V3) is None


def test_every_header_says_who_and_where_as_the_project_requires(contents: dict[str, dict[str, Any]],
                                                                documents: dict[str, bytes]) -> None:
    """The project's own header rules (the ANS kit leaves out the minimal-structure profile), on every document:
    the patient by INS only for a qualified identity (DESIGN §8, RNIV), always by the IPP under its authority's OID;
    the signer as author and legal authenticator; the custodian and the meeting's establishment by FINESS with the
    national ids of the RCP, its 3C and its network (nullFlavor UNK when the board is not registered); a normal
    confidentiality."""
    for kind, document in documents.items():
        content = contents["organ board" if kind == "correction" else kind]
        patient, board = content["patient"], content["board"]
        tree = xml(document)
        role = tree.find("c:recordTarget/c:patientRole", V3)
        expected = [(patient["ins_system"], patient["ins"])] if ins_may_leave(patient["identity_status"]) else []
        expected.append((patient.get("local_id_issuer_oid") or None, patient["local_id"]))
        assert ids(role, "c:id") == expected, kind
        if not ins_may_leave(patient["identity_status"]):
            assert patient["ins"].encode() not in document, kind
        name = role.find("c:patient/c:name", V3)
        assert name.findtext("c:family[@qualifier='BR']", namespaces=V3) == patient["family_name"], kind
        assert role.find("c:patient/c:birthTime", V3).get("value") == patient["birth_date"].replace("-", ""), kind
        # Author and legal authenticator: the signer, by IdNatPS, at the signature's time, signature code S.
        signed_at = tree.find("c:effectiveTime", V3).get("value")
        for path in ("c:author/c:assignedAuthor", "c:legalAuthenticator/c:assignedEntity"):
            assert ids(tree.find(path, V3), "c:id") == [("1.2.250.1.71.4.2.1", "810003456784")], (kind, path)
        assert tree.find("c:author/c:time", V3).get("value") == signed_at
        assert tree.find("c:legalAuthenticator/c:time", V3).get("value") == signed_at
        assert tree.find("c:legalAuthenticator/c:signatureCode", V3).get("code") == "S"
        gp = tree.find("c:participant[@typeCode='INF']/c:associatedEntity", V3)  # required by FRCP, nullFlavor NA
        assert gp is not None and (gp.get("nullFlavor") == "NA") == (content.get("gp") is None), kind
        confidentiality = tree.find("c:confidentialityCode", V3)
        assert (confidentiality.get("code"), confidentiality.get("codeSystem")) == ("N", "2.16.840.1.113883.5.25")
        custodian = tree.find("c:custodian/c:assignedCustodian/c:representedCustodianOrganization", V3)
        encounter = tree.find("c:componentOf/c:encompassingEncounter", V3)
        national = [(i.get("root"), i.get("extension") or i.get("nullFlavor")) for i in encounter.iterfind("c:id", V3)]
        flags = {code: tree.find(f".//c:observation/c:code[@code='{code}']/../c:value", V3).get("value")
                 for code in ("ORG-184", "ORG-185", "ORG-115", "ORG-116")}
        assert flags == {"ORG-184": str(board.get("referral", False)).lower(),
                         "ORG-185": str(board.get("paediatric", False)).lower(),
                         "ORG-115": str(board.get("referral", False)).lower(),
                         "ORG-116": str(board.get("paediatric", False)).lower()}, kind
        place = board.get("establishment")
        if place is None:
            assert ids(custodian, "c:id") == [(RCP_SOURCE_OID, None)], kind  # the service, until registered
            assert [n for _, n in national[:3]] == ["UNK", "UNK", "UNK"], kind
            continue
        assert ids(custodian, "c:id") == [("1.2.250.1.71.4.2.2", "1690999032")], kind
        assert custodian.findtext("c:name", namespaces=V3) == "CHU de Lyon"
        assert national[:3] == [("1.2.250.1.161.1.20.1.1", "8401"), ("1.2.250.1.161.1.20.2.1", "840103"),
                                ("1.2.250.1.161.1.20.3.1", board["national_id"])], kind
        facility = encounter.find("c:location/c:healthCareFacility", V3)
        assert ids(facility, "c:id") == [("1.2.250.1.71.4.2.2", "1690999032")]
        assert facility.find("c:code", V3).get("code") == "SA01"
        assert tree.findtext("c:title", namespaces=V3) == f"ONCO AURA / 3C CHU de Lyon / {board['name']}", kind


def test_body_codes_and_narrative(documents: dict[str, bytes]) -> None:
    tree = xml(documents["organ board"])
    problem = tree.find(".//c:observation/c:templateId[@root='1.2.250.1.213.1.1.3.113']/..", V3)
    assert problem.find("c:value", V3).get("code") == "8500/3"
    assert problem.find("c:targetSiteCode", V3).get("code") == "C50.2"
    stage = problem.find(".//c:observation/c:code[@code='75620-5']/..", V3)
    assert [q.find("c:value", V3).get("code") for q in stage.iterfind("c:value/c:qualifier", V3)] == ["IIA", "8"]
    assert [v.get("code") for v in stage.iterfind("c:entryRelationship/c:observation/c:value", V3)] == [
        "T2", "N0", "M0"]
    acts = [p.find("c:code", V3).get("code") for p in tree.iterfind(".//c:procedure", V3)]
    assert acts == ["387713003"]
    # Entries FRCP requires that the fiche does not record: present, their value unknown, never a guessed "no".
    for code in ("MED-245", "GEN-100"):
        assert tree.find(f".//c:observation/c:code[@code='{code}']/../c:value", V3).get("nullFlavor") == "UNK", code
    performance = tree.find(".//c:observation/c:code[@code='MED-239']/..", V3)
    assert performance.find("c:value", V3).get("code") == "MED-264"  # WHO 1 (JDV_OMSEchPerf_CISIS)
    assert performance.find("c:interpretationCode", V3).get("code") == "LA9623-5"
    quorum = tree.find(".//c:observation/c:code[@code='ORG-125']/..", V3)
    assert quorum.find("c:value", V3).get("code") == "ORG-126"
    text = "".join(tree.find(".//c:structuredBody", V3).itertext())
    # The narrative says what the PDF says: the question, the summary, the proposal and the staging.
    for said in ("Chirurgie conservatrice d'emblée ou chimiothérapie néoadjuvante ?", "carcinome canalaire",
                 "Tumorectomie avec ganglion sentinelle", "T2 N0 M0", "Référentiel régional sein 2024"):
        assert said in text
    assert "Lésion du QSI droit, 22 mm — rehaussement précoce" in text  # the key image, as the PDF lists it
    assert "1 examen d'imagerie" in text and "Patient informé de la proposition" in text
    correction = "".join(xml(documents["correction"]).find(".//c:structuredBody", V3).itertext())
    assert "Ajout : EFR." in correction and "Ajout : EFR." not in text  # the comments section, when there is one
    trial = xml(documents["trial"])
    assert "NCT01234567 (ESSAI-SEIN)" in "".join(trial.itertext())
    assert trial.find(".//c:observation/c:code[@code='MED-250']/../c:value", V3).get("value") == "true"


def test_free_text_never_becomes_markup(content: Any, now: datetime) -> None:
    fiche = Fiche.from_content(content(question="<script>x</script> & ]]> T2 < T3 ?"))
    document = fiche_cda(fiche, signed(fiche, now))
    assert schema_errors(document) == []
    assert "<script>x</script> & ]]> T2 < T3 ?" in "".join(xml(document).itertext())


# -- the route ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    async with migrated(tmp_path_factory.mktemp("cda")) as db:
        yield db


@pytest.fixture
async def http(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with minutes_client(database) as client:
        yield client


@pytest.mark.timeout(600)
async def test_the_route_serves_each_signed_version(http: httpx.AsyncClient, database: Database,
                                                    tmp_path: Path) -> None:
    """The whole path: the board registered in the database, signed and corrected through the routes, served as
    CDA documents that pass the schema and the four ANS profiles and name the registration they were signed with."""
    seeded = await seed(database)
    async with database.session() as s:
        place = Establishment(**DEMO_ESTABLISHMENT)
        s.add(place)
        await s.flush()
        meeting = await s.get(Meeting, seeded.meeting_id)
        assert meeting is not None
        await s.exec(sa.update(Board).where(col(Board.id) == meeting.board_id).values(
            establishment_id=place.id, national_id="84010301", type_code="312419003"))
    revision = await fill(database, seeded)
    await give_password(database, seeded.oncologist)
    me = as_user(seeded.oncologist)
    case = seeded.case_id
    answer = await http.post(f"/api/cases/{case}/decision/sign", headers=me,
                             json={**await signer_proof(database, seeded.oncologist), "seen_revision": revision})
    assert answer.status_code == 201, answer.text
    amended = await http.post(f"/api/cases/{case}/decision/amend", headers=me,
                              json={**await signer_proof(database, seeded.oncologist), "reason": "EFR oubliées",
                                    "replaces": 1, "changes": {"comments": "Ajout : EFR."}})
    assert amended.status_code == 201, amended.text

    surgeon = as_user(seeded.surgeon)
    first = await http.get(f"/api/cases/{case}/decision/versions/1/cda", headers=surgeon)
    assert first.status_code == 200 and first.headers["content-type"].startswith("application/xml")
    assert schema_errors(first.content) == []
    second = await http.get(f"/api/cases/{case}/decision/versions/2/cda", headers=surgeon)
    assert schema_errors(second.content) == []
    for profile in CLEAN_PROFILES:
        assert [str(f) for f in schematron_failures(second.content, profile, tmp_path)] == [], profile
    national = ids(xml(first.content), "c:componentOf/c:encompassingEncounter/c:id")[:3]
    assert national == [("1.2.250.1.161.1.20.1.1", "8401"), ("1.2.250.1.161.1.20.2.1", "840103"),
                        ("1.2.250.1.161.1.20.3.1", "84010301")]
    tree = xml(second.content)
    assert tree.find("c:relatedDocument/c:parentDocument/c:id", V3).get("root") == xml(first.content).find(
        "c:id", V3).get("root")
    # The signer account, in parts.
    author = tree.find("c:author/c:assignedAuthor/c:assignedPerson/c:name", V3)
    assert author.findtext("c:family", namespaces=V3) == "Medical_Oncologist"

    assert (await http.get(f"/api/cases/{case}/decision/versions/3/cda", headers=surgeon)).status_code == 404
    outsider = as_user(seeded.outsider)
    assert (await http.get(f"/api/cases/{case}/decision/versions/1/cda", headers=outsider)).status_code == 404
    assert (await http.get(f"/api/cases/{case}/decision/versions/1/cda")).status_code == 401
    async with database.session() as s:
        reads = (await s.exec(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.what == f"CDA of version 1 of case {case}"))).one()
    assert reads >= 1


def test_the_reader_says_what_is_not_a_fiche() -> None:
    for document, message in ((b"not xml", "Not an XML document"),
                              (b"<ClinicalDocument xmlns='urn:hl7-org:v3'><code code='11488-4'/></ClinicalDocument>",
                               "34794-8"),
                              (b"<ClinicalDocument xmlns='urn:hl7-org:v3'><code code='34794-8'/></ClinicalDocument>",
                               "meeting date")):
        with pytest.raises(Invalid, match=message):
            read_fiche_cda(document)
