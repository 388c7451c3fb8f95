"""Finding a registered patient, and the search before creating one (RNIV), over HTTP against the running app.

Names, birth dates and identifiers never go in an address (access logs, browser history, proxies keep them): the
searches are POSTs, the API's with a JSON body, the page's a form with its CSRF token; an old-style GET with the
traits in the query is refused. The JSON API's add-case runs the same duplicate guard as the form
(``service.search_before_creating``). The access log itself is checked in tests/security/test_trail.py.
"""

from __future__ import annotations

import re
import secrets
from datetime import date
from typing import Any

from sqlmodel import col, select

from rcp.auth.models import AuditEvent
from rcp.db import Database
from rcp.scheduling.models import Case, PatientIdentifier
from tests.factories import HOSPITAL, make_meeting, make_patient, unique

Login = Any

#: The radio buttons of the add-case form's search results: ``name="patient_id" value="<id>"``.
RESULT = re.compile(r'name="patient_id" value="(\d+)"')


async def _reads(db: Database, user_id: int, patient_id: int) -> list[AuditEvent]:
    async with db.session() as s:
        return list((await s.exec(select(AuditEvent).where(AuditEvent.user_id == user_id,
                                                           AuditEvent.patient_id == patient_id))).all())


async def _searches(db: Database, user_id: int, patient_id: int) -> list[AuditEvent]:
    """The audited reads of a patient by a search ("(search)", "(identifier look-up)", "(duplicate check ...)"),
    not those of the pages showing their case."""
    return [e for e in await _reads(db, user_id, patient_id) if "(" in e.what]


async def test_patient_searches_take_the_traits_in_the_body_never_in_the_address(login: Login,
                                                                                 db: Database) -> None:
    made = await make_meeting(db, cases=1, invite=())
    coordinator = await login(made.coordinator)
    victim = made.cases[0].patient
    meeting_url = f"/meetings/{made.id}"

    # The old addresses, traits in the query: refused, and nothing was looked up (no audited read).
    before = len(await _searches(db, made.coordinator.id, victim.id))
    refused = [
        await coordinator.get("/api/patients", params={"identifier": victim.ipp, "assigner": HOSPITAL}),
        await coordinator.get("/api/patients/duplicates", params={"family_name": victim.family_name,
                                                                  "birth_date": "1961-05-04"}),
        await coordinator.get(f"{meeting_url}/patient-search", params={"identifier": victim.ipp}),
    ]
    assert [r.status_code for r in refused] == [405, 405, 405], [r.text[:200] for r in refused]
    page = await coordinator.get(meeting_url, params={"identifier": victim.ipp, "q": victim.family_name})
    assert page.status_code == 200
    assert RESULT.findall(page.text) == [], "the meeting page searched from its address"
    assert len(await _searches(db, made.coordinator.id, victim.id)) == before

    # The page's search is a form POST carrying the CSRF token.
    form = re.search(r'<form id="patient-search"[^>]*>.*?</form>', page.text, re.DOTALL)
    assert form is not None and 'method="post"' in form.group(0) and 'name="csrf_token"' in form.group(0)
    no_token = await coordinator.http.post(f"{meeting_url}/patient-search", data={"identifier": victim.ipp})
    assert no_token.status_code == 403
    found = await coordinator.http.post(f"{meeting_url}/patient-search",
                                        data={"identifier": victim.ipp, "csrf_token": coordinator.csrf})
    assert found.status_code == 200, found.text[:500]
    assert RESULT.findall(found.text) == [str(victim.id)]
    assert victim.ipp not in found.url.query.decode()

    # The API's: JSON bodies.
    exact = await coordinator.post("/api/patients/search", json={"identifier": victim.ipp, "assigner": HOSPITAL})
    assert exact.status_code == 200 and [p["id"] for p in exact.json()] == [victim.id]
    by_name = await coordinator.post("/api/patients/search", json={"q": victim.family_name[:10]})
    assert victim.id in [p["id"] for p in by_name.json()]
    alike = await coordinator.post("/api/patients/duplicates", json={
        "family_name": victim.family_name.upper(), "birth_date": "1961-05-04", "identifiers": [victim.ins]})
    assert alike.status_code == 200 and victim.id in [p["id"] for p in alike.json()]
    wrong = await coordinator.post("/api/patients/duplicates", json={"family_name": "X", "birth_date": "04/05/1961"})
    assert wrong.status_code == 422 and "birth_date" in wrong.json()["fields"]
    # Each of these searches is audited through the policy (find patient), naming the patient, not their traits.
    reads = await _searches(db, made.coordinator.id, victim.id)
    assert len(reads) >= before + 4
    assert not any(victim.family_name in e.what or victim.ipp in e.what for e in reads)


async def test_the_api_add_case_holds_a_look_alike_back_until_the_coordinator_decides(login: Login,
                                                                                      db: Database) -> None:
    made = await make_meeting(db, cases=0, invite=())
    coordinator = await login(made.coordinator)
    family = unique("Lefèvre")
    born = date(1900 + secrets.randbelow(40), 1 + secrets.randbelow(12), 1 + secrets.randbelow(28))
    existing = await make_patient(db, family_name=family, given_names="Hélène", birth_date=born)
    # The same person typed again, with another IPP, capitals and no accent: a likely duplicate.
    ipp = f"IPP{secrets.token_hex(5).upper()}"
    typed = {"family_name": family.upper().replace("È", "E"), "given_names": "Hélène Marie",
             "birth_date": born.isoformat(), "sex": "female",
             "identifiers": [{"system": "IPP", "value": ipp, "assigner": HOSPITAL}]}
    url = f"/api/meetings/{made.id}/cases"

    held = await coordinator.post(url, json={"patient": typed, "question": "Chirurgie ?"})
    assert held.status_code == 409, held.text
    body = held.json()
    assert body["duplicates"] == [existing.id] and "duplicates_checked" in body["fields"]
    for trait in (existing.family_name, existing.ins, existing.ipp, born.isoformat()):
        assert trait.casefold() not in held.text.casefold()
    async with db.session() as s:
        assert not (await s.exec(select(PatientIdentifier).where(PatientIdentifier.value == ipp))).all()
        assert not (await s.exec(select(Case).where(col(Case.meeting_id) == made.id))).all()
    # The look-alike found is in the audit trail (the check read that record).
    assert any("duplicate check" in e.what for e in await _reads(db, made.coordinator.id, existing.id))

    # Someone who is not a look-alike cannot be taken that way.
    stranger = await make_patient(db)
    refused = await coordinator.post(url, json={"patient": typed, "use_patient": stranger.id})
    assert refused.status_code == 422 and "patient_id" in refused.json()["fields"]
    # "This is the patient": the case goes to the registered record, no new one.
    taken = await coordinator.post(url, json={"patient": typed, "use_patient": existing.id, "question": "?"})
    assert taken.status_code == 201, taken.text
    assert taken.json()["patient"]["id"] == existing.id
    # "None of these": a new record, on purpose.
    created = await coordinator.post(url, json={"patient": typed, "duplicates_checked": True, "question": "?"})
    assert created.status_code == 201, created.text
    assert created.json()["patient"]["id"] not in {existing.id, stranger.id}
    assert ipp in [i["value"] for i in created.json()["patient"]["identifiers"]]
    # The confirmation only goes with a new patient.
    odd = await coordinator.post(url, json={"patient_id": existing.id, "duplicates_checked": True})
    assert odd.status_code == 422
