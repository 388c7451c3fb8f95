"""The GP's and correspondents' copy of a signed fiche (rcp.minutes.copies): a secure mail with an IHE XDM zip.

A real SMTP server on loopback (``tests.fixtures.smtp``) receives what the one mailer's outbox sends; the zip's
CDA goes through the CDA schema and the ANS schematrons (``tests.minutes.cda_validation``), its METADATA.XML
through lxml; the case page's fragment is served by the EPR routes over the same database.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from sqlmodel import select
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from rcp.app import mail_composers
from rcp.auth.models import User
from rcp.auth.passwords import hash_password
from rcp.auth.sessions import CurrentUser
from rcp.clock import SettableClock
from rcp.config import Settings
from rcp.db import Database, migrate
from rcp.epr.routes import routes as epr_routes
from rcp.epr.xdm import ATTACHMENT_NAME, METADATA_PATH
from rcp.errors import Invalid
from rcp.http import error_handlers
from rcp.i18n import LocaleMiddleware
from rcp.mail import Mail, MailStatus, MailWorker, SmtpTransport, transport_for
from rcp.minutes import store, withdrawals
from rcp.minutes.copies import COPY_MAIL, copies_for, copies_on_signed, copies_on_withdrawn
from rcp.minutes.delivery import document_ids
from rcp.minutes.fiche import Fiche, parse_draft_field
from rcp.minutes.render import sections
from rcp.scheduling.models import Board, BoardCoordinator, Meeting
from rcp.templating import render_error
from tests.factories import credentials, proof, unique
from tests.fixtures.smtp import MailBox
from tests.minutes.cda_validation import schema_errors, schematron_failures
from tests.minutes.seeding import NOW, Seed, fill, seed
from tests.servers import ServerThread, listening_socket, until

RIM = {"rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0", "lcm": "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"}
V3 = {"c": "urn:hl7-org:v3"}
APP_PASSWORD = "copies-signature-password-1"
DOC_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
DOC_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """A database of its own: its outbox holds only this test's mails, and no other worker sends them."""
    url = f"sqlite:///{tmp_path / 'copies.db'}"
    await asyncio.to_thread(migrate, url)
    db = Database(url)
    yield db
    await db.close()


async def _case_with_copies(db: Database, *, hidden: bool = False) -> tuple[Seed, int, str, str]:
    """A signed-ready case naming a GP and a correspondent by MSSanté address: (seed, revision, gp, other)."""
    seeded = await seed(db)
    await fill(db, seeded, key_images=[])
    gp, other = f"{unique('dr.traitant')}@medecin.mssante.fr", f"{unique('dr.corr')}@chu-x.mssante.fr"
    values: dict[str, Any] = {
        # The diagnosis a complete fiche carries (the IHE Cancer Diagnosis entry needs its site).
        "cancer_phase": {"code": "MED-268", "system": "1.2.250.1.213.1.1.4.322"},
        "tumour_site": {"code": "C34.1", "system": "2.16.840.1.113883.6.3"},
        "histology": {"code": "8140/3", "system": "2.16.840.1.113883.6.43.1"},
        "gp": {"name": "Dr Paul GÉNÉRALISTE", "email": gp},
        "correspondents": [{"name": "Dr Lise CORRESPONDANTE", "email": other},
                           {"name": "Dr Sans MESSAGERIE", "email": ""}],
    }
    if hidden:
        values["hidden_from_patient"] = True
    async with db.session() as s:
        for name, value in values.items():
            await store.save_field(s, seeded.case_id, name, value, base_version=0, editor_id=seeded.surgeon, at=NOW)
    async with db.session() as s:
        revision = (await store.load_draft(s, seeded.case_id)).revision
    return seeded, revision, gp, other


async def _sign(db: Database, seeded: Seed, revision: int) -> store.StoredVersion:
    async with db.session() as s:
        return await store.sign(s, case_id=seeded.case_id, signer_id=seeded.oncologist, seen_revision=revision,
                                hooks=[copies_on_signed()])


async def _drain(worker: MailWorker) -> int:
    sent = 0
    while await worker.send_one():
        sent += 1
    return sent


def _package(message: EmailMessage) -> zipfile.ZipFile:
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == ATTACHMENT_NAME
    assert attachment.get_content_type() == "application/zip"
    return zipfile.ZipFile(io.BytesIO(attachment.get_content()))


def _slot(entry: Any, name: str) -> list[str]:
    return [v.text for v in entry.iterfind(f"rim:Slot[@name='{name}']/rim:ValueList/rim:Value", RIM)]


def _external(entry: Any, scheme: str) -> str:
    found = entry.find(f"rim:ExternalIdentifier[@identificationScheme='{scheme}']", RIM)
    assert found is not None, scheme
    return str(found.get("value"))


def _codes(entry: Any, scheme: str) -> list[str]:
    return [c.get("nodeRepresentation") for c in entry.iterfind(f"rim:Classification[@classificationScheme="
                                                                 f"'{scheme}']", RIM)]


@pytest.mark.timeout(600)
async def test_the_gp_gets_one_mail_whose_xdm_holds_a_valid_cda(database: Database, settings: Settings,
                                                              smtp_server: MailBox, tmp_path: Path) -> None:
    seeded, revision, gp, other = await _case_with_copies(database)
    stored = await _sign(database, seeded, revision)
    worker = MailWorker(settings, database, transport=SmtpTransport(smtp_server.url, timeout_s=10),
                        composers=mail_composers())
    assert await _drain(worker) == 2, "one mail per MSSanté address; none to a correspondent without one"
    [message] = await smtp_server.wait_for(gp)
    assert len(await smtp_server.wait_for(other)) == 1

    # MSSanté practice: a neutral subject, and nothing about the patient in the body.
    body = message.get_body(("plain",))
    assert body is not None
    text = str(message["Subject"]) + body.get_content()
    for said in ("Dupré", "Noël", "IPP-", "1950", "Adénocarcinome", "RCP Thorax"):
        assert said not in text
    assert message["Auto-Submitted"] == "auto-generated"

    package = _package(message)
    names = set(package.namelist())
    assert {"INDEX.HTM", "README.TXT", METADATA_PATH, "IHE_XDM/SUBSET01/DOC0001.XML",
            "IHE_XDM/SUBSET01/DOC0002.PDF"} <= names
    cda = package.read("IHE_XDM/SUBSET01/DOC0001.XML")
    assert package.read("IHE_XDM/SUBSET01/DOC0002.PDF").startswith(b"%PDF")
    assert schema_errors(cda) == []
    for profile in ("frcp", "ihe", "modeles", "ans"):
        assert [str(f) for f in schematron_failures(cda, profile, tmp_path)] == [], profile

    metadata = etree.fromstring(package.read(METADATA_PATH))  # well-formed, or this raises
    assert metadata.tag == f"{{{RIM['lcm']}}}SubmitObjectsRequest"
    entries = {e.get("mimeType"): e for e in metadata.iterfind(".//rim:ExtrinsicObject", RIM)}
    assert set(entries) == {"text/xml", "application/pdf"}
    entry = entries["text/xml"]
    _, unique_id = document_ids(stored.version.fiche(), stored.version)
    assert _external(entry, DOC_UNIQUE_ID) == unique_id
    assert etree.fromstring(cda).find("c:id", V3).get("root") == unique_id
    assert _external(entry, DOC_PATIENT_ID).startswith("IPP-")  # no qualified INS: the IPP names the patient
    assert _codes(entry, TYPE_CODE) == ["34794-8"]
    assert _codes(entry, CONFIDENTIALITY) == ["N"]
    assert _slot(entry, "URI") == ["DOC0001.XML"]
    assert _slot(entry, "size") == [str(len(cda))]
    assert metadata.find(".//rim:RegistryPackage/rim:Slot[@name='intendedRecipient']//rim:Value", RIM).text \
        .endswith(gp)

    # Once: more rounds of the worker, or the signature's hooks run again, send nothing more.
    async with database.session() as s:
        await copies_on_signed()(s, stored)
    assert await _drain(worker) == 0
    assert len(smtp_server.to(gp)) == 1

    # A correction reaches the GP too, as its own mail: version 2, replacing version 1.
    async with database.session() as s:
        await store.amend(s, case_id=seeded.case_id, signer_id=seeded.oncologist, reason="EFR oubliées",
                          replaces_number=1, changes={"comments": "Ajout : EFR."}, hooks=[copies_on_signed()])
    assert await _drain(worker) == 2
    first, second = await smtp_server.wait_for(gp, 2)
    corrected = etree.fromstring(_package(second).read("IHE_XDM/SUBSET01/DOC0001.XML"))
    assert corrected.find("c:versionNumber", V3).get("value") == "2"
    assert corrected.find("c:relatedDocument", V3).get("typeCode") == "RPLC"
    assert first["Message-ID"] != second["Message-ID"]


async def test_a_copy_waits_out_a_relay_outage_and_leaves_once(database: Database, settings: Settings,
                                                               smtp_server: MailBox) -> None:
    """SMTP down, then up after a restart of the worker: delivered once, hidden from the patient as chosen."""
    clock = SettableClock()
    mail_settings = replace(settings, clock=clock, mail_retry_s=60.0, mail_attempts=3)
    seeded, revision, gp, _ = await _case_with_copies(database, hidden=True)
    await _sign(database, seeded, revision)
    dead = listening_socket()
    port = dead.getsockname()[1]
    dead.close()
    down = MailWorker(mail_settings, database, transport=SmtpTransport(f"smtp://127.0.0.1:{port}", timeout_s=5),
                      composers=mail_composers())
    assert await _drain(down) == 2
    async with database.session() as s:
        rows = (await s.exec(select(Mail).where(Mail.kind == COPY_MAIL))).all()
        assert {(r.status, r.attempts) for r in rows} == {(MailStatus.pending, 1)} and all(r.last_error for r in rows)

    relay = transport_for(replace(mail_settings, smtp_url=smtp_server.url))
    assert relay is not None
    up = MailWorker(mail_settings, database, transport=relay, composers=mail_composers())
    assert await _drain(up) == 0, "not before its delay"
    clock.advance(timedelta(seconds=61))
    assert await _drain(up) == 2
    clock.advance(timedelta(hours=2))
    assert await _drain(up) == 0
    [message] = await smtp_server.wait_for(gp)
    assert len(smtp_server.to(gp)) == 1
    body = message.get_body(("plain",))
    assert body is not None and "consultation" in body.get_content()
    metadata = etree.fromstring(_package(message).read(METADATA_PATH))
    for entry in metadata.iterfind(".//rim:ExtrinsicObject", RIM):
        assert _codes(entry, CONFIDENTIALITY) == ["N", "INVISIBLE_PATIENT"]
        scheme = entry.find("rim:Classification[@nodeRepresentation='INVISIBLE_PATIENT']/rim:Slot/rim:ValueList/"
                            "rim:Value", RIM)
        assert scheme.text == "1.2.250.1.213.1.1.4.13"
    async with database.session() as s:
        rows = (await s.exec(select(Mail).where(Mail.kind == COPY_MAIL))).all()
        assert {(r.status, r.attempts) for r in rows} == {(MailStatus.sent, 2)}


class _As:
    """Stands in for the session middleware: every request is made by ``user``."""

    def __init__(self, app: ASGIApp, user: Callable[[], Any]) -> None:
        self.app, self.user = app, user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["user"] = self.user()
        await self.app(scope, receive, send)


async def test_the_case_page_shows_each_recipients_state(database: Database, settings: Settings,
                                                        smtp_server: MailBox) -> None:
    seeded, revision, gp, other = await _case_with_copies(database)
    await _sign(database, seeded, revision)
    async with database.session() as s:
        user = User(username=unique("secretariat"), role="coordinator")
        s.add(user)
        await s.flush()
        meeting = await s.get(Meeting, seeded.meeting_id)
        assert meeting is not None and user.id is not None
        s.add(BoardCoordinator(board_id=meeting.board_id, user_id=user.id))
        coordinator = CurrentUser.of(user, via="token")
    app = Starlette(routes=epr_routes, exception_handlers=error_handlers(render_error))
    app.state.db = database
    transport = httpx.ASGITransport(app=_As(LocaleMiddleware(app, default="en"), lambda: coordinator))
    async with httpx.AsyncClient(transport=transport, base_url="http://rcp") as http:
        page = await http.get(f"/epr/cases/{seeded.case_id}/deliveries")
        assert page.status_code == 200
        assert page.text.count('data-copy-status="pending"') == 2 and gp in page.text and other in page.text
        assert "General practitioner · Dr Paul GÉNÉRALISTE" in page.text

        worker = MailWorker(settings, database, transport=SmtpTransport(smtp_server.url, timeout_s=10),
                            composers=mail_composers())
        assert await _drain(worker) == 2
        page = await http.get(f"/epr/cases/{seeded.case_id}/deliveries")
        assert page.text.count('data-copy-status="sent"') == 2 and "Sent on" in page.text
        status = (await http.get(f"/api/epr/cases/{seeded.case_id}/deliveries")).json()
        assert {(c["recipient"], c["role"], c["status"], c["version"]) for c in status["mail_copies"]} == {
            (gp, "gp", "sent", 1), (other, "correspondent", "sent", 1)}
        assert all(c["sent_at"] for c in status["mail_copies"])


@pytest.mark.parametrize(("name", "value"), [
    ("gp", {"name": "Dr X", "email": "dr.x@gmail.com"}),
    ("gp", {"name": "Dr X", "email": "not an address"}),
    ("correspondents", [{"name": "Dr Y", "email": "dr.y@mssante.fr.evil.example"}]),
])
def test_a_gp_or_correspondent_address_outside_mssante_is_refused(name: str, value: Any) -> None:
    with pytest.raises(Invalid) as refused:
        parse_draft_field(name, value)
    assert any(key.endswith(".email") for key in refused.value.fields)


def test_mssante_addresses_and_none_are_accepted() -> None:
    assert parse_draft_field("gp", {"name": "Dr X", "email": "x@medecin.mssante.fr"}).email == "x@medecin.mssante.fr"
    assert parse_draft_field("correspondents", [{"name": "Dr Y"}])[0].email == ""
    assert parse_draft_field("hidden_from_patient", True) is True


async def test_a_withdrawn_version_is_withdrawn_from_the_mailboxes_that_got_it(
        database: Database, settings: Settings, smtp_server: MailBox) -> None:
    seeded, revision, gp, other = await _case_with_copies(database)
    stored = await _sign(database, seeded, revision)
    worker = MailWorker(settings, database, transport=SmtpTransport(smtp_server.url, timeout_s=10),
                        composers=mail_composers())
    assert await _drain(worker) == 2
    async with database.session() as s:
        await withdrawals.withdraw(s, case_id=seeded.case_id, number=1, user_id=seeded.oncologist, may_manage=False,
                                   reason="Fiche d'un autre patient", hooks=[copies_on_withdrawn()])
    assert await _drain(worker) == 2
    assert await _drain(worker) == 0
    _copy, notice = await smtp_server.wait_for(gp, 2)
    assert len(smtp_server.to(gp)) == 2 and len(await smtp_server.wait_for(other, 2)) == 2
    assert not list(notice.iter_attachments())
    body = notice.get_body(("plain",))
    assert body is not None
    _, unique_id = document_ids(stored.version.fiche(), stored.version)
    text = str(notice["Subject"]) + body.get_content()
    assert unique_id in text and "Dupré" not in text and "autre patient" not in text
    async with database.session() as s:
        views = await copies_for(s, seeded.case_id)
    assert sorted((v.recipient, v.withdrawal, v.status) for v in views) == sorted([
        (gp, False, "sent"), (gp, True, "sent"), (other, False, "sent"), (other, True, "sent")])


async def test_a_copy_not_sent_yet_is_cancelled_by_the_withdrawal(database: Database, settings: Settings,
                                                                 smtp_server: MailBox) -> None:
    seeded, revision, gp, _ = await _case_with_copies(database)
    await _sign(database, seeded, revision)
    async with database.session() as s:
        await withdrawals.withdraw(s, case_id=seeded.case_id, number=1, user_id=seeded.oncologist, may_manage=False,
                                   reason="Erreur de dossier", hooks=[copies_on_withdrawn()])
    worker = MailWorker(settings, database, transport=SmtpTransport(smtp_server.url, timeout_s=10),
                        composers=mail_composers())
    assert await _drain(worker) == 0
    assert smtp_server.to(gp) == []
    async with database.session() as s:
        rows = (await s.exec(select(Mail).where(Mail.case_id == seeded.case_id))).all()
    assert {(r.kind, r.status) for r in rows} == {(COPY_MAIL, MailStatus.cancelled)}


async def test_a_signature_in_the_served_app_mails_the_gp(db: Database, live_server: ServerThread,
                                                         smtp_server: MailBox, settings: Settings) -> None:
    """The app's wiring: its signature hooks queue the copies, its own mailer sends them once (after its poke)."""
    seeded, revision, gp, _ = await _case_with_copies(db)
    async with db.session() as s:
        oncologist = await s.get(User, seeded.oncologist)
        assert oncologist is not None
        oncologist.password_hash = hash_password(APP_PASSWORD, settings.argon2)
        s.add(oncologist)
        name = oncologist.username
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as physician:
        me = (await physician.post("/api/session", json=credentials(name, APP_PASSWORD))).json()
        signed = await physician.post(f"/api/cases/{seeded.case_id}/decision/sign",
                                      headers={"X-CSRF-Token": me["csrf_token"]},
                                      json={**proof(name, APP_PASSWORD), "seen_revision": revision})
        assert signed.status_code == 201, signed.text
    [message] = await smtp_server.wait_for(gp)
    assert _package(message).read(METADATA_PATH).startswith(b"<?xml")

    async def sent() -> list[Mail]:
        async with db.session() as s:
            rows = (await s.exec(select(Mail).where(Mail.case_id == seeded.case_id))).all()
        return list(rows) if rows and all(r.status == MailStatus.sent for r in rows) else []

    rows = await until(sent, "both copies recorded as sent")
    assert len(rows) == 2 and {r.attempts for r in rows} == {1} and len(smtp_server.to(gp)) == 1


async def test_the_coordinator_sends_a_failed_copy_again(database: Database, settings: Settings,
                                                        smtp_server: MailBox) -> None:
    seeded, revision, gp, _ = await _case_with_copies(database)
    await _sign(database, seeded, revision)
    dead = listening_socket()
    port = dead.getsockname()[1]
    dead.close()
    once = replace(settings, mail_attempts=1)
    down = MailWorker(once, database, transport=SmtpTransport(f"smtp://127.0.0.1:{port}", timeout_s=5),
                      composers=mail_composers())
    assert await _drain(down) == 2
    async with database.session() as s:
        user = User(username=unique("secretariat"), role="coordinator")
        s.add(user)
        await s.flush()
        meeting = await s.get(Meeting, seeded.meeting_id)
        assert meeting is not None and user.id is not None
        s.add(BoardCoordinator(board_id=meeting.board_id, user_id=user.id))
        coordinator = CurrentUser.of(user, via="token")
        # The coordinator of another board, who may retry copies of their own board only.
        elsewhere = Board(name=unique("RCP digestive"))
        stranger = User(username=unique("secretariat"), role="coordinator")
        s.add_all([elsewhere, stranger])
        await s.flush()
        assert elsewhere.id is not None and stranger.id is not None
        s.add(BoardCoordinator(board_id=elsewhere.id, user_id=stranger.id))
        outsider = CurrentUser.of(stranger, via="token")
        failed = (await s.exec(select(Mail).where(Mail.case_id == seeded.case_id, Mail.recipient == gp))).one()
        assert failed.status == MailStatus.failed and failed.id is not None
    app = Starlette(routes=epr_routes, exception_handlers=error_handlers(render_error))
    app.state.db = database
    caller = [outsider]
    transport = httpx.ASGITransport(app=_As(LocaleMiddleware(app, default="en"), lambda: caller[0]))
    async with httpx.AsyncClient(transport=transport, base_url="http://rcp") as http:
        # A forged id: another board's coordinator names this copy; it does not exist for them, and stays failed.
        assert (await http.post(f"/api/epr/mail-copies/{failed.id}/retry")).status_code == 404
        async with database.session() as s:
            still = await s.get(Mail, failed.id)
            assert still is not None and still.status == MailStatus.failed
        caller[0] = coordinator
        page = await http.get(f"/epr/cases/{seeded.case_id}/deliveries")
        assert f'action="/epr/mail-copies/{failed.id}/retry"' in page.text
        again = await http.post(f"/api/epr/mail-copies/{failed.id}/retry")
        assert again.status_code == 200 and again.json()["status"] == "pending"
        assert (await http.post(f"/api/epr/mail-copies/{failed.id}/retry")).status_code == 409
        assert (await http.post("/api/epr/mail-copies/999999/retry")).status_code == 404
    up = MailWorker(settings, database, transport=SmtpTransport(smtp_server.url, timeout_s=10),
                    composers=mail_composers())
    assert await _drain(up) == 1
    assert len(await smtp_server.wait_for(gp)) == 1


def test_the_fiche_says_it_is_kept_from_the_patient(content: Callable[..., dict[str, Any]]) -> None:
    """The PDF and the fiche page the GP reads say so; the content of a fiche without the option is unchanged."""
    def rows(fiche: Fiche) -> list[tuple[str, str]]:
        return [row for section in sections(fiche, lambda text: text) for row in section.rows]

    hidden = Fiche.from_content(content(hidden_from_patient=True))
    assert ("Visible to the patient", "Not before the announcement consultation") in rows(hidden)
    assert hidden.to_content()["hidden_from_patient"] is True
    visible = Fiche.from_content(content())
    assert "hidden_from_patient" not in visible.to_content()
    assert all(label != "Visible to the patient" for label, _ in rows(visible))
