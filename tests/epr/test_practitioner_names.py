"""The signer reaches the EPR in parts, from the account, never split from a display string (issue 14, item 4).

Through the served app and the real receivers: "Dr Amélie ROUSSEAU" with an RPPS number signs one case, "Pr Karim
BENALI" without one signs another. HL7 TXA-9 (XCN) carries family name, given name and prefix in their own
components, the IdNatPS under the ANS authority for the first and the service's own id for the second; the FHIR
Practitioners carry the same parts (FR Core: title of practice in ``suffix``) and the FR Core identifier slices.
The fiche page and PDF say "Dr Amélie ROUSSEAU". An account whose name is still to complete cannot sign.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import replace
from typing import Any

import hl7
import httpx
import pypdf

from rcp.app import create_app
from rcp.auth.models import User
from rcp.auth.passwords import hash_password
from rcp.config import Settings
from rcp.db import Database
from tests.factories import credentials, new_rpps, proof
from tests.fixtures.receivers import FhirServer, MllpListener
from tests.minutes.seeding import Seed, fill, seed
from tests.servers import ServerThread, until

PASSWORD = "signature-password-1"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
TYPES = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"


def _ins() -> str:
    body = f"2{secrets.randbelow(99):02d}0469{secrets.randbelow(10**6):06d}"
    return body + f"{97 - int(body) % 97:02d}"


async def _name(db: Database, settings: Settings, seeded: Seed, **parts: Any) -> str:
    """Give the case's oncologist (its responsible physician and signer) these name parts; their username."""
    async with db.session() as s:
        user = await s.get(User, seeded.oncologist)
        assert user is not None
        for key, value in parts.items():
            setattr(user, key, value)
        user.password_hash = hash_password(PASSWORD, settings.argon2)
        s.add(user)
        return user.username


async def _sign(base_url: str, username: str, case_id: int, revision: int) -> tuple[httpx.Response, str, str]:
    """Sign as ``username``; the answer, the fiche page and the fiche PDF's text."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as physician:
        me = (await physician.post("/api/session", json=credentials(username, PASSWORD))).json()
        signed = await physician.post(f"/api/cases/{case_id}/decision/sign",
                                      headers={"X-CSRF-Token": me["csrf_token"]},
                                      json={**proof(username, PASSWORD), "seen_revision": revision})
        if signed.status_code != 201:
            return signed, "", ""
        page = (await physician.get(f"/cases/{case_id}/fiche")).text
        pdf = (await physician.get(f"/cases/{case_id}/fiche.pdf")).content
        text = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages).replace("\n", " ")
        return signed, page, text


def _practitioners(bundles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for bundle in bundles:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Practitioner":
                found.append(resource)
            found.extend(c for c in resource.get("contained", ()) if c["resourceType"] == "Practitioner")
    return found


async def test_a_prefixed_physician_reaches_hl7_and_fhir_in_parts_with_and_without_rpps(
    settings: Settings, db: Database, epr_receivers: tuple[MllpListener, FhirServer]
) -> None:
    mllp, fhir = epr_receivers
    rpps = new_rpps()
    rousseau, benali, unsplit = [await seed(db, ins=_ins()) for _ in range(3)]
    rousseau_login = await _name(db, settings, rousseau, family_name="Rousseau", given_name="Amélie", prefix="Dr",
                                 rpps=rpps)
    benali_login = await _name(db, settings, benali, family_name="Benali", given_name="Karim", prefix="Pr")
    # As migration 0013 left a name it could not split.
    unsplit_login = await _name(db, settings, unsplit, family_name="Claire Fontaine", given_name="", prefix="Dr",
                                name_to_check=True)
    revisions = {s.case_id: await fill(db, s, key_images=[]) for s in (rousseau, benali, unsplit)}

    server = ServerThread(create_app(replace(settings, epr_receivers=(mllp.url, fhir.url))))
    server.start()
    try:
        signed, page, pdf_text = await _sign(server.url, rousseau_login, rousseau.case_id, revisions[rousseau.case_id])
        assert signed.status_code == 201, signed.text
        assert signed.json()["signer"]["name"] == "Dr Amélie ROUSSEAU"
        assert "Dr Amélie ROUSSEAU" in page.split('class="signature signed">', 1)[1].split("</p>", 1)[0]
        assert "Dr Amélie ROUSSEAU" in pdf_text
        signed, _page, _text = await _sign(server.url, benali_login, benali.case_id, revisions[benali.case_id])
        assert signed.status_code == 201, signed.text

        refused, _page, _text = await _sign(server.url, unsplit_login, unsplit.case_id, revisions[unsplit.case_id])
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "not_allowed_to_sign" and "family_name" in refused.json()["fields"]

        await until(lambda: len(mllp.filed) == 2 and len(fhir.received) >= 2, "both deliveries")
    finally:
        server.close()

    originators = set()
    for message in mllp.filed.values():
        tree = hl7.parse(message.replace("\n", "\r"))
        originators.add(str(tree.segment("TXA")(9)))
    assert originators == {
        # XCN.1 IdNatPS, .2 family, .3 given, .6 prefix, .9 ASIP-SANTE-PS & its OID, .10 L, .13 RPPS
        f"8{rpps}^Rousseau^Amélie^^^DR^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^L^^^RPPS",
        # No RPPS: the account's id in this service, under the sending application's namespace.
        f"{benali.oncologist}^Benali^Karim^^^PR^^^RCP^L^^^INTRN",
    }

    by_family = {p["name"][0]["family"]: p for p in _practitioners(fhir.received)}
    assert by_family["Rousseau"]["name"] == [{"use": "official", "family": "Rousseau", "given": ["Amélie"],
                                              "suffix": ["DR"]}]
    assert [(i["system"], i["value"], i["type"]["coding"][0]["code"]) for i in by_family["Rousseau"]["identifier"]] \
        == [(IDNPS, f"8{rpps}", "IDNPS"), ("https://rpps.esante.gouv.fr", rpps, "RPPS")]
    assert by_family["Benali"]["name"][0]["suffix"] == ["PR"] and by_family["Benali"]["name"][0]["given"] == ["Karim"]
    [local] = by_family["Benali"]["identifier"]
    assert (local["value"], local["type"]["coding"][0]) == (str(benali.oncologist), {"system": TYPES, "code": "INTRN"})
