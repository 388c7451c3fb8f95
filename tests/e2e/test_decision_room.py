"""Issue 6 end to end in headless Chromium: a decision written in the room, signed, and found in the imaging file.

Three clinicians of the thoracic board (surgeon, medical oncologist, radiotherapist) join the room of the upcoming
demo meeting; the coordinator (a scripted WebSocket participant) opens the first case and gives the floor to the
surgeon, who marks a key image. The oncologist writes the proposal and the surgeon sees it appear; the surgeon and
the radiotherapist edit the comments at the same time and one of them gets a visible conflict with both texts; the
surgeon, responsible physician, signs with their password. Then the archive (the local one) holds a Key Object
Selection referencing the marked image and the fiche as an encapsulated PDF in the patient's study, and the
decision shows version 1 with its SHA-256. No wall-clock assertions: waits only bound hanging.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pydicom
import pytest
from playwright.async_api import Page
from sqlmodel import col, select
from starlette.applications import Starlette

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database
from rcp.demo import DEMO_PASSWORD
from rcp.imaging.archive import open_archive
from rcp.room.decisions import wire_decisions
from rcp.scheduling.models import Case
from tests.factories import totp_code
from tests.fixtures.browser import NewPage
from tests.room.client import RoomClient, session_cookie
from tests.room.node import demo_service
from tests.servers import ServerThread, until

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

TIMEOUT_MS = 30_000
#: Bounds a wait on the server (write-back); never an assertion on speed.
WAIT_S = 60.0


def decision_app(settings: Settings) -> Starlette:
    """The real app; its lifespan wires the room to the decisions unless app.py already does (idempotent)."""
    app = create_app(settings)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Starlette) -> AsyncIterator[Any]:
        async with inner(a) as state:
            wire_decisions(a.state)
            yield state

    app.router.lifespan_context = lifespan
    return app


@pytest.fixture(scope="module")
async def decision_room(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ServerThread, Settings, int]]:
    """A service of its own (SQLite, local archive) with the demo meetings and the demo CTs attached."""
    settings, meeting_id = await demo_service(tmp_path_factory.mktemp("decision-e2e"), imaging_slices=20)
    node = ServerThread(decision_app(settings)).start()
    try:
        yield node, settings, meeting_id
    finally:
        node.close()


async def open_room(new_page: NewPage, url: str, cookie: str, meeting_id: int) -> Page:
    page = await new_page(viewport=(1600, 1000), bypass_csp=True)  # playwright evaluates strings
    name, value = cookie.split("=", 1)
    await page.context.add_cookies([{"name": name, "value": value, "url": url}])
    await page.goto(f"{url}/meetings/{meeting_id}/room")
    await page.wait_for_function("window.rcpRoom && window.rcpRoom.socket.seq !== null", timeout=TIMEOUT_MS)
    return page


async def test_three_clinicians_write_sign_and_find_the_decision_in_the_imaging_file(
    decision_room: tuple[ServerThread, Settings, int], new_page: NewPage
) -> None:
    node, settings, meeting_id = decision_room
    names = ("secretariat", "dr.chirurgien", "dr.oncologue", "dr.radiotherapeute")
    cookies = {n: await session_cookie(node.url, n) for n in names}
    chair = await RoomClient.open(node.url, cookies["secretariat"], meeting_id)
    api = httpx.AsyncClient(base_url=node.url, headers={"Cookie": cookies["dr.chirurgien"]}, timeout=30)
    try:
        surgeon = await open_room(new_page, node.url, cookies["dr.chirurgien"], meeting_id)
        oncologist = await open_room(new_page, node.url, cookies["dr.oncologue"], meeting_id)
        radiotherapist = await open_room(new_page, node.url, cookies["dr.radiotherapeute"], meeting_id)
        pages = (surgeon, oncologist, radiotherapist)
        me = {p: await p.evaluate("rcpRoom.socket.welcome.user_id") for p in pages}

        # The coordinator opens the first case and gives the floor to the surgeon, who marks a key image.
        await chair.send({"type": "case.next"})
        await chair.send({"type": "floor.handover", "to": me[surgeon]})
        await surgeon.wait_for_function(
            "rcpRoom.room.presenter === rcpRoom.socket.welcome.user_id"
            " && rcpRoom.viewer.getState().viewports[0].seriesUid", timeout=TIMEOUT_MS)
        await surgeon.evaluate("rcpRoom.viewer.settled()")
        await surgeon.evaluate("rcpRoom.viewer.scrollTo(7, 0)")
        await surgeon.evaluate("rcpRoom.viewer.settled()")
        case_id = await surgeon.evaluate("rcpRoom.room.caseId")
        await surgeon.click("[data-room-action='key-image']")
        for page in pages:
            await page.wait_for_function("rcpRoom.room.marks.size === 1", timeout=TIMEOUT_MS)
        mark = await surgeon.evaluate("[...rcpRoom.room.marks.values()][0]")
        assert mark["kind"] == "key_image" and mark["case_id"] == case_id and mark["study_uid"]

        async def key_images() -> Any:
            state = (await api.get(f"/api/cases/{case_id}/decision")).json()
            return state["draft"]["fields"]["key_images"]["value"]

        [key] = await until(key_images, "the key image in the draft", timeout=WAIT_S, interval=0.2)
        assert (key["sop_uid"], key["series_uid"]) == (mark["sop_uid"], mark["series_uid"])

        # Every page shows the decision form of the current case; the quorum is met by the three present.
        for page in pages:
            await page.wait_for_selector("[data-room-decision]:not([hidden]) [data-field='proposal']",
                                         timeout=TIMEOUT_MS)
            await page.wait_for_selector("[data-room-quorum][data-met='true']", timeout=TIMEOUT_MS)

        # The oncologist writes the proposal; the surgeon sees the text appear.
        text = "Chimiothérapie néoadjuvante puis lobectomie; réévaluation après trois cycles."
        await oncologist.select_option("[data-field='proposal'] select", "combined")
        details = ".room-decision .group > label > textarea"
        await oncologist.fill(details, text)
        await oncologist.select_option("[data-field='guideline'] select", "yes")
        await oncologist.select_option("[data-field='case_status'] select", "discussed")
        await oncologist.check("[data-field='patient_informed'] input[type='checkbox']")
        await surgeon.wait_for_function(
            "([sel, text]) => document.querySelector(sel).value === text", arg=[details, text], timeout=TIMEOUT_MS)
        assert await surgeon.input_value("[data-field='proposal'] select") == "combined"
        await surgeon.wait_for_function(
            "document.querySelector(\"[data-field='patient_informed'] input\").checked", timeout=TIMEOUT_MS)

        # The surgeon and the radiotherapist change the comments from the same version at the same time: one save
        # wins, the other gets a visible conflict with both texts, and keeps their own with "Use mine".
        typed = {surgeon: "Discuter la chirurgie d'emblée.", radiotherapist: "Radiothérapie stéréotaxique possible."}
        for page, words in typed.items():
            await page.evaluate(
                """(words) => { const f = rcpRoom.decision().fields.get('comments');
                   document.querySelector("[data-field='comments'] textarea").value = words; f.dirty = true; }""",
                words)
        await asyncio.gather(*(p.evaluate("rcpRoom.decision().fields.get('comments').save()") for p in typed))

        async def conflicts() -> list[Page]:
            return [p for p in typed if await p.is_visible("[data-field='comments'] .field-conflict")]

        conflicted = await until(conflicts, "a visible conflict", timeout=WAIT_S, interval=0.2)
        assert len(conflicted) == 1
        loser = conflicted[0]
        winner = next(p for p in typed if p is not loser)
        box = loser.locator("[data-field='comments'] .field-conflict")
        await box.get_by_text(typed[winner]).wait_for(timeout=TIMEOUT_MS)
        await box.get_by_text(typed[loser]).wait_for(timeout=TIMEOUT_MS)
        await box.get_by_role("button", name="Use mine").click()
        for page in pages:
            await page.wait_for_function(
                "(t) => document.querySelector(\"[data-field='comments'] textarea\").value === t",
                arg=typed[loser], timeout=TIMEOUT_MS)

        # The surgeon takes responsibility (informs the patient). Every physician who was there when the case was
        # discussed gets the sign button, whoever is named responsible; the coordinator (a secretary) does not sign.
        await surgeon.select_option("[data-field='responsible_physician'] select", str(me[surgeon]))
        sign = "[data-decision] > button.primary"
        await oncologist.wait_for_function(
            "(id) => { const s = document.querySelector(\"[data-field='responsible_physician'] select\");"
            " return s.value === String(id); }", arg=me[surgeon], timeout=TIMEOUT_MS)
        for page in pages:
            await page.wait_for_selector(sign, state="visible", timeout=TIMEOUT_MS)

        async def complete() -> bool:
            state = (await api.get(f"/api/cases/{case_id}/decision")).json()
            return not state["missing"] and state["quorum"]["met"]

        await until(complete, "a complete draft", timeout=WAIT_S, interval=0.2)
        # The page asks for the password, then the authenticator's code (rcp.auth.reauth).
        answers = iter([lambda: DEMO_PASSWORD, lambda: totp_code("dr.chirurgien")])
        surgeon.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept(next(answers)())))
        await surgeon.click(sign)
        # Everyone in the room sees it signed (the room's decision.signed event), and nobody gets a sign button.
        for page in pages:
            await page.wait_for_selector("[data-room-decision][data-signed='true']", timeout=TIMEOUT_MS)
            assert not await page.is_visible(sign)

        # Version 1 with its SHA-256, attendees from the room (the three present clinicians).
        state = (await api.get(f"/api/cases/{case_id}/decision")).json()
        [version] = state["versions"]
        assert version["number"] == 1 and version["intact"] and re.fullmatch(r"[0-9a-f]{64}", version["sha256"])
        specialties = {a["specialty"] for a in state["attendees"]}
        assert {"surgeon", "medical_oncologist", "radiotherapist"} <= specialties
        [content] = (await api.get(f"/api/cases/{case_id}/decision/versions")).json()
        assert content["sha256"] == version["sha256"]
        assert text in str(content["content"])

        # The write-back stores the KOS and the encapsulated PDF in the patient's study.
        async def written() -> Any:
            jobs = (await api.get(f"/api/cases/{case_id}/decision")).json()["writebacks"]
            return jobs if jobs and all(j["status"] == "done" for j in jobs) else None

        jobs = await until(written, "the imaging write-back", timeout=WAIT_S, interval=0.2)
        assert {j["kind"] for j in jobs} == {"pdf", "kos"}
        stored = {j["kind"]: j["stored_sop_uid"] for j in jobs}
    finally:
        await api.aclose()
        await chair.close()

    db = Database(settings.database_url)
    archive = open_archive(settings, database=db)
    try:
        series = await archive.list_series(mark["study_uid"])
        by_modality = {s.modality: s for s in series}
        assert {"KO", "DOC"} <= set(by_modality)
        [kos_summary] = await archive.list_instances(mark["study_uid"], by_modality["KO"].series_uid)
        assert kos_summary.sop_uid == stored["kos"]
        kos = pydicom.dcmread(io.BytesIO(await archive.retrieve_instance(
            mark["study_uid"], by_modality["KO"].series_uid, kos_summary.sop_uid)))
        referenced = {
            item.ReferencedSOPInstanceUID
            for study in kos.CurrentRequestedProcedureEvidenceSequence
            for s in study.ReferencedSeriesSequence
            for item in s.ReferencedSOPSequence
        }
        assert referenced == {mark["sop_uid"]}
        assert kos.ConceptNameCodeSequence[0].CodeValue == "128203"  # "For Tumor Board" (CID 7010)
        # The observer is the account that signed (the surgeon), read from the users table.
        observers = [str(i.PersonName) for i in kos.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121008"]
        assert observers == ["Lefèvre^Marc^^Pr"]  # its PN components (PS3.5 6.2), from the name parts
        [pdf_summary] = await archive.list_instances(mark["study_uid"], by_modality["DOC"].series_uid)
        assert pdf_summary.sop_uid == stored["pdf"]
        pdf = pydicom.dcmread(io.BytesIO(await archive.retrieve_instance(
            mark["study_uid"], by_modality["DOC"].series_uid, pdf_summary.sop_uid)))
        assert bytes(pdf.EncapsulatedDocument).startswith(b"%PDF")
        async with db.session() as s:
            case = (await s.exec(select(Case).where(col(Case.id) == case_id))).one()
        assert pdf.PatientID and kos.PatientID == pdf.PatientID
        assert mark["study_uid"] in case.study_uids
    finally:
        await archive.close()
        await db.close()
