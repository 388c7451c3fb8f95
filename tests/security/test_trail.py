"""Attacks on the audit trail and the logs (issue 13, findings 11 and 12): rewriting history, reading health data
out of the logs, and the trail reaching the hospital's SIEM.

The append-only checks talk to the database as the service's own connection would (that is the attacker's
position: a bug or a stolen connection string); everything else goes over HTTP against a running service.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlmodel import select

from rcp.auth import audit
from rcp.config import Settings
from rcp.db import Database, migrate
from rcp.minutes.models import DecisionVersion
from rcp.scheduling.models import Case, Patient, PatientIdentifier
from tests.conftest import DEMO_PASSWORD
from tests.factories import credentials
from tests.fixtures.smtp import join_link
from tests.minutes.seeding import seed
from tests.room.client import RoomClient
from tests.room.node import demo_service
from tests.servers import ServerProcess, listening_socket, until

# -- append-only: the database refuses ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def trail_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('trail') / 'rcp.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    await asyncio.to_thread(migrate, url)
    db = Database(url)
    yield db
    await db.close()


async def _audit_row(db: Database) -> int:
    async with db.session() as s:
        row = await audit.record(s, event="patient_record", action="R", patient_id=7, what="case 1",
                                 source="127.0.0.1")
        await s.flush()
        assert row.id is not None
        return row.id


async def _signed_version(db: Database) -> int:
    seeded = await seed(db)
    async with db.session() as s:
        version = DecisionVersion(case_id=seeded.case_id, number=1, content={"proposal": "surgery"},
                                  sha256="0" * 64, signed_by=seeded.oncologist, signed_at=datetime.now(UTC))
        s.add(version)
        await s.flush()
        assert version.id is not None
        return version.id


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET username = 'nobody', patient_id = NULL WHERE id = :id",
    "DELETE FROM audit_events WHERE id = :id",
])
async def test_audit_events_cannot_be_rewritten(trail_db: Database, statement: str) -> None:
    row_id = await _audit_row(trail_db)
    with pytest.raises(DBAPIError, match="append-only"):
        async with trail_db.session() as s:
            await s.exec(sa.text(statement).bindparams(id=row_id))  # type: ignore[call-overload]
    async with trail_db.session() as s:
        kept = (await s.exec(sa.text("SELECT username, patient_id FROM audit_events WHERE id = :id")  # type: ignore[call-overload]
                             .bindparams(id=row_id))).one()
    assert tuple(kept) == ("", 7)


async def test_signed_versions_cannot_be_deleted(trail_db: Database) -> None:
    version_id = await _signed_version(trail_db)
    with pytest.raises(DBAPIError, match="never deleted"):
        async with trail_db.session() as s:
            await s.exec(sa.text("DELETE FROM decision_versions WHERE id = :id").bindparams(id=version_id))  # type: ignore[call-overload]
    async with trail_db.session() as s:
        assert (await s.get(DecisionVersion, version_id)) is not None


@pytest.mark.postgres
async def test_postgres_truncate_is_refused(trail_db: Database) -> None:
    if not trail_db.url.startswith("postgresql"):
        pytest.skip("TRUNCATE is PostgreSQL's")
    await _audit_row(trail_db)
    with pytest.raises(DBAPIError, match="append-only"):
        async with trail_db.session() as s:
            await s.exec(sa.text("TRUNCATE audit_events"))  # type: ignore[call-overload]


# -- logs without health data -----------------------------------------------------------------------------------


@dataclass
class LoggedService:
    server: ServerProcess
    log: Path
    settings: Settings
    meeting_id: int


@pytest.fixture(scope="module")
async def logged_service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LoggedService]:
    """``rcp serve --log-level debug`` as an operator runs it, everything it writes (stdout and stderr) in a file."""
    data_dir = tmp_path_factory.mktemp("logged")
    settings, meeting_id = await demo_service(data_dir, imaging_slices=2)
    log = data_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCP_")} | {
        "RCP_ENV": "test", "RCP_DATA_DIR": str(data_dir), "RCP_SECRET_KEY": settings.secret_key,
        "RCP_TOTP_STEP_S": str(settings.totp_step_s),
        "RCP_DEFAULT_LOCALE": "en", "RCP_EMBEDDED_WORKER": "true",
        "RCP_SMTP_URL": (data_dir / "mail").as_uri()}  # guests' join links as .eml files
    # ServerProcess appends --fd=N; the shell sends both streams to the file and execs the service.
    command = ["sh", "-c", f'exec "$0" -m rcp.cli serve --log-level debug "$@" >{log} 2>&1', sys.executable]
    with ServerProcess(command, env=env) as server:
        yield LoggedService(server, log, settings, meeting_id)


async def _sign_in(http: httpx.AsyncClient, username: str, seen: set[str]) -> dict[str, Any]:
    response = await http.post("/api/session", json=credentials(username, DEMO_PASSWORD))
    assert response.status_code == 201, response.text
    me: dict[str, Any] = response.json()
    seen.update({me["csrf_token"], http.cookies["rcp_session"]})
    http.headers["X-CSRF-Token"] = me["csrf_token"]
    return me


async def _patient_data(db: Database) -> set[str]:
    """Names, INS, IPP and study UIDs of the demo patients, as the database holds them."""
    found: set[str] = set()
    async with db.session() as s:
        for patient in (await s.exec(select(Patient))).all():
            found.update({patient.family_name, patient.given_names})
        for identifier in (await s.exec(select(PatientIdentifier))).all():
            found.add(identifier.value)
        for case in (await s.exec(select(Case))).all():
            found.update(case.study_uids or [])
    return {value for value in found if len(value) >= 4}


async def test_logs_carry_no_health_data_and_no_secret(logged_service: LoggedService) -> None:
    base = logged_service.server.url
    meeting_id = logged_service.meeting_id
    secrets_seen: set[str] = {logged_service.settings.secret_key}
    db = Database(logged_service.settings.database_url)
    try:
        patient_data = await _patient_data(db)
    finally:
        await db.close()
    family = min(v for v in patient_data if v.isalpha())
    async with httpx.AsyncClient(base_url=base, timeout=60) as coordinator, \
            httpx.AsyncClient(base_url=base, timeout=60) as radiologist, \
            httpx.AsyncClient(base_url=base, timeout=60) as guest:
        # Anonymous pages, a refused API call, an address that matches no route but names a patient.
        assert (await guest.get("/login", params={"next": f"/patients?q={family}"})).status_code == 200
        assert (await guest.post("/api/patients/search", json={"q": family})).status_code == 401
        # An old-style search with the name in the address: no route answers it with patients.
        assert (await guest.get("/api/patients", params={"q": family})).status_code in {401, 405}
        assert (await guest.get(f"/patients/{family}")).status_code == 404
        await _sign_in(coordinator, "secretariat", secrets_seen)
        meeting = (await coordinator.get(f"/api/meetings/{meeting_id}")).json()
        assert (await coordinator.get(f"/meetings/{meeting_id}")).status_code == 200
        for case in meeting["cases"]:
            assert (await coordinator.get(f"/cases/{case['id']}")).status_code == 200
            assert (await coordinator.get(f"/api/cases/{case['id']}")).status_code == 200
        # Searches: names and identifiers in the body (and, from an old client, in the address: refused).
        for value in sorted(patient_data):
            field = "identifier" if value[0].isdigit() else "q"
            assert (await coordinator.post("/api/patients/search", json={field: value})).status_code == 200
            assert (await coordinator.get("/api/patients", params={field: value})).status_code == 405
            page = await coordinator.post(f"/meetings/{meeting_id}/patient-search", data={field: value})
            assert page.status_code == 200
        alike = await coordinator.post("/api/patients/duplicates", json={
            "family_name": family, "identifiers": sorted(v for v in patient_data if v[0].isdigit())[:5]})
        assert alike.status_code == 200
        # A guest's join link, as the guest gets it (the mail) and uses it (the page, then its POST).
        address = f"d.{secrets.token_hex(4)}@chu-x.fr"
        invited = await coordinator.post(f"/api/meetings/{meeting_id}/guests", json={
            "given_name": "Denis", "family_name": "Guest", "prefix": "Dr", "email": address, "specialty": "surgeon", "hospital": "CHU X"})
        assert invited.status_code == 201, invited.text
        secrets_seen.add(address)
        mail = await until(lambda: sorted((logged_service.log.parent / "mail").glob("*.eml")),
                           "the join-link mail")
        _link, token = join_link(email.message_from_bytes(mail[0].read_bytes(), policy=email.policy.default))
        secrets_seen.add(token)
        assert (await guest.get("/join")).status_code == 200
        # The demo meeting is next week: the link is refused (it opens an hour before), the token still sent.
        assert (await guest.post("/join", data={"token": token})).status_code < 500
        # Frames: study, series and SOP Instance UIDs in the path.
        await _sign_in(radiologist, "dr.radiologue", secrets_seen)
        frames = 0
        for case in meeting["cases"]:
            studies = (await radiologist.get(f"/api/cases/{case['id']}/studies")).json()
            for study in studies if isinstance(studies, list) else []:
                uid = study["study_uid"]
                series = (await radiologist.get(f"/api/imaging/studies/{uid}/series",
                                                params={"case_id": case["id"]})).json()
                for one in series if isinstance(series, list) else []:
                    secrets_seen.add(one["series_uid"])
                    descriptor = (await radiologist.get(f"/api/imaging/studies/{uid}/series/{one['series_uid']}",
                                                        params={"case_id": case["id"]})).json()
                    for frame in descriptor["frames"]:
                        secrets_seen.add(frame["sop_uid"])
                        assert (await radiologist.get(frame["url"])).status_code == 200
                        frames += 1
        assert frames, "the demo meeting has studies with frames"
        # The room socket, with the session cookie.
        cookie = f"rcp_session={radiologist.cookies['rcp_session']}"
        room = await RoomClient.open(base, cookie, meeting_id)
        await room.close()
        await radiologist.delete("/api/session")
    logged_service.server.close()  # everything it had to say is in the file now

    written = logged_service.log.read_text(encoding="utf-8", errors="replace")
    assert "rcp.access" in written and "/api/imaging/frames/{study_uid}" in written, written[-2000:]
    assert " DEBUG " in written, "the service ran at DEBUG"
    leaked = sorted(v for v in patient_data | secrets_seen if v and v.casefold() in written.casefold())
    assert not leaked, f"the log holds {len(leaked)} patient data or secrets, e.g. {leaked[:3]}"


# -- who accessed a patient -------------------------------------------------------------------------------------


async def _a_patient_of(client: Any) -> int:
    meetings = (await client.get("/api/meetings")).json()
    for meeting in meetings:
        for case in (await client.get(f"/api/meetings/{meeting['id']}")).json().get("cases", []):
            detail = (await client.get(f"/api/cases/{case['id']}")).json()
            patient = detail.get("patient") or {}
            if patient.get("id"):
                return int(patient["id"])
    raise AssertionError("the clinician sees no patient in the demo")


async def test_admins_see_who_accessed_a_patient(login: Any, anonymous: httpx.AsyncClient, settings: Settings,
                                                 tmp_path: Path) -> None:
    clinician = await login("dr.radiologue")
    patient_id = await _a_patient_of(clinician)
    assert (await clinician.get(f"/api/patients/{patient_id}")).status_code == 200
    # Only administrators read the list (it is personal data of the staff, and says who treats whom).
    assert (await clinician.get(f"/audit/patients/{patient_id}")).status_code == 403
    assert (await anonymous.get(f"/audit/patients/{patient_id}")).status_code in {303, 401}
    admin = await login("admin")
    page = await admin.get(f"/audit/patients/{patient_id}")
    assert page.status_code == 200
    assert "dr.radiologue" in page.text and "110110" in page.text
    assert "Dr Hélène DUBOIS" in page.text  # the demo radiologist, named as every page names people
    other = await admin.get(f"/audit/patients/{patient_id + 100_000}")
    assert other.status_code == 200 and "dr.radiologue" not in other.text
    # The same list for the command line, read from the service's database.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCP_")} | {
        "RCP_DATA_DIR": str(tmp_path), "RCP_DATABASE_URL": settings.database_url}
    listed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "rcp.cli", "audit", "patient", str(patient_id)], env=env,
        capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()[1:]]
    assert any(row[1] == "dr.radiologue" and row[2].startswith("110110") for row in rows), listed.stdout
    assert any(row[1] == "admin" and row[2].startswith("110106") for row in rows), "looking is recorded too"


# -- the trail reaches the SIEM (RFC 5424 over TLS) -------------------------------------------------------------


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate it signed for localhost / 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    import ipaddress
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "RCP test SIEM CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
          .not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class SyslogReceiver:
    """A syslog-over-TLS collector (RFC 5425 octet-counting frames) on loopback; ``lines`` in arrival order."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.server: asyncio.Server | None = None

    async def start(self, cert: Path, key: Path) -> int:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.server = await asyncio.start_server(self._read, sock=listening_socket(), ssl=context)
        return int(self.server.sockets[0].getsockname()[1])

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = int((await reader.readuntil(b" ")).strip())
                self.lines.append((await reader.readexactly(length)).decode("utf-8"))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_the_trail_reaches_the_siem_over_tls(tmp_path_factory: pytest.TempPathFactory) -> None:
    import dataclasses
    import ssl

    from rcp.app import create_app
    from rcp.auth.siem import SyslogForwarder
    from tests.servers import ServerThread

    folder = tmp_path_factory.mktemp("siem")
    ca, cert, key = _certificates(folder)
    receiver = SyslogReceiver()
    port = await receiver.start(cert, key)
    try:
        settings, _meeting = await demo_service(folder / "data")
        settings = dataclasses.replace(settings, audit_syslog_url=f"syslog+tls://localhost:{port}",
                                       audit_syslog_ca=str(ca))
        with ServerThread(create_app(settings)) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                seen: set[str] = set()
                await _sign_in(http, "dr.radiologue", seen)
                patient_id = await _a_patient_of(http)
                assert (await http.get(f"/api/patients/{patient_id}")).status_code == 200

            def patient_read() -> list[str]:
                return [line for line in receiver.lines
                        if " 110110 " in line and 'user="dr.radiologue"' in line and f'patient="{patient_id}"' in line]

            lines = await until(patient_read, "the patient read to reach the SIEM")
        # A listener with a certificate our CA did not sign gets nothing: the trail is not sent to whoever answers.
        _rogue_ca, rogue_cert, rogue_key = _certificates(tmp_path_factory.mktemp("rogue"))
        rogue = SyslogReceiver()
        rogue_port = await rogue.start(rogue_cert, rogue_key)
        db = Database(settings.database_url)
        try:
            forwarder = SyslogForwarder(dataclasses.replace(settings, audit_syslog_url=f"syslog+tls://localhost:"
                                                            f"{rogue_port}/"), db)
            with pytest.raises(ssl.SSLCertVerificationError):
                await forwarder.forward_once()
        finally:
            await db.close()
            await rogue.close()
        assert rogue.lines == []
    finally:
        await receiver.close()
    # RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG; facility 13 (log audit), notice.
    assert re.match(r'^<109>1 \d{4}-\d\d-\d\dT[\d:.]+Z 127\.0\.0\.1 rcp - 110110 \[atna@32473 eventId="110110" ',
                    lines[0]), lines[0]
    assert any(" 110100 " in line and "application start" in line for line in receiver.lines)
    refs = [re.search(r' ref="(\d+)"', line) for line in receiver.lines]
    numbers = [int(m.group(1)) for m in refs if m]
    assert numbers == sorted(numbers) and len(numbers) == len(receiver.lines), "every event once, in order"


@pytest.mark.postgres
async def test_the_service_role_cannot_rewrite_the_trail(trail_db: Database) -> None:
    """deploy/postgresql-roles.sql, as the README tells operators to run it, leaves the service's role unable to
    UPDATE or DELETE audit events and signed versions (even with the triggers gone)."""
    import psycopg
    from sqlalchemy.engine import make_url

    if not trail_db.url.startswith("postgresql"):
        pytest.skip("roles are PostgreSQL's")
    await _audit_row(trail_db)
    owner = make_url(trail_db.url)
    role = f"rcp_app_{secrets.token_hex(4)}"
    script = (Path(__file__).parents[2] / "deploy" / "postgresql-roles.sql").read_text(encoding="utf-8")
    owner_dsn = f"postgresql://{owner.username}@{owner.host}:{owner.port}/{owner.database}"
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(script.replace("rcp_app", f'"{role}"'))
    try:
        with psycopg.connect(f"postgresql://{role}@{owner.host}:{owner.port}/{owner.database}",
                             autocommit=True) as service:
            service.execute("INSERT INTO audit_events (at, event_code, action, outcome, username, source, what) "
                            "VALUES (now(), '110110', 'R', 0, 'x', '', 'case 1')")
            assert service.execute("SELECT count(*) FROM audit_events").fetchone() is not None
            for statement in ("UPDATE audit_events SET what = ''", "DELETE FROM audit_events",
                              "DELETE FROM decision_versions", "TRUNCATE audit_events"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                    service.execute(statement)
    finally:
        with psycopg.connect(owner_dsn, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
