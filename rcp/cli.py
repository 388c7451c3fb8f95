"""The ``rcp`` command: serve, migrate, load the demo, manage users and tokens, export the audit trail.

Every command reads its settings from ``RCP_*`` environment variables (``RCP_DATABASE_URL``, ``RCP_DATA_DIR``...).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rcp.config import Settings, SettingsError

if TYPE_CHECKING:
    from rcp.db import Database
    from rcp.people import PersonName

__all__ = ["main"]


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"rcp: configuration error: {exc}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from rcp.app import create_app
    from rcp.protocols import http_protocol

    settings = _settings()
    from rcp.logs import configure_logging

    json_lines = settings.log_format == "json"
    configure_logging(str(args.log_level).upper(), json_lines=json_lines)
    app = create_app(settings)
    # uvicorn's access log writes paths and queries (UIDs, names, tokens): rcp.logs.AccessLogMiddleware writes
    # route templates instead. uvicorn's proxy headers are off: it would take X-Forwarded-For from any local peer as
    # the client; rcp.clients reads it from the proxies in RCP_TRUSTED_PROXIES only.
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, proxy_headers=False,
                            access_log=False,
                            # JSON lines: uvicorn's own loggers go through the service's handler, not its own.
                            log_config=None if json_lines else LOGGING_CONFIG,
                            # A request that is not HTTP/1.1 gets the service's JSON error, not uvicorn's text.
                            http=http_protocol(),
                            ws_max_size=1 << 20, timeout_graceful_shutdown=10,
                            # Room frames are small and fanned out to every follower: compressing each copy
                            # costs more CPU than it saves bytes (measured in bench/sync.py).
                            ws_per_message_deflate=False)
    if args.fd is None:
        uvicorn.Server(config).run()
    else:
        # A listening TCP socket inherited from the parent (systemd socket activation, tests): uvicorn's own
        # Config(fd=) expects a Unix socket, socket(fileno=) detects the family.
        import socket

        uvicorn.Server(config).run(sockets=[socket.socket(fileno=args.fd)])
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from rcp.db import downgrade, migrate

    settings = _settings()
    if args.down:
        downgrade(settings.database_url, args.down)
    else:
        migrate(settings.database_url, args.revision)
    print(f"rcp: database is at {'revision ' + args.down if args.down else 'the latest revision'}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from rcp.backup import BackupError, backup

    try:
        manifest = backup(_settings(), Path(args.file))
    except BackupError as exc:
        raise SystemExit(f"rcp backup: {exc}") from None
    files = manifest["files"]
    assert isinstance(files, dict)
    print(f"rcp: backup written to {args.file} ({manifest['database']} database and {len(files) - 1} data files); "
          "it holds health data and the secret key: keep it on encrypted storage")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from rcp.backup import BackupError, restore

    try:
        restored = restore(_settings(), Path(args.file), replace=args.replace)
    except BackupError as exc:
        raise SystemExit(f"rcp restore: {exc}") from None
    print(f"rcp: restored the {restored.database} database and {restored.files} data files; run `rcp migrate` "
          "if this backup comes from an older version, then start the service")
    return 0


async def _demo(settings: Settings) -> None:
    from rcp.db import Database
    from rcp.demo import DEMO_PASSWORD, DEMO_TOTP_SECRET, DEMO_USERS, load_demo
    from rcp.epr.outbox import configured_receivers

    db = Database(settings.database_url)
    try:
        result = await load_demo(db, argon2=settings.argon2, secret_key=settings.secret_key,
                                 receivers=configured_receivers(settings))
        await _demo_imaging(settings, db)
    finally:
        await db.close()
    print("rcp: demo data " + ("loaded" if result["created"] else "already present"))
    print(f"Demo logins (password for all: {DEMO_PASSWORD}):")
    for user in DEMO_USERS:
        print(f"  {user.username:<20} {user.role:<12} {user.specialty or '-':<20} {user.hospital}")
    print(f"Second factor of every demo account (TOTP, RFC 6238): add the key {DEMO_TOTP_SECRET} to an "
          "authenticator app,\n  or run `rcp demo-code` for the current code. Accounts you create enrol at their "
          "first sign-in (QR code).")


async def _demo_imaging(settings: Settings, db: Database) -> None:
    """Synthetic studies for the demo patients, when the imaging package offers them."""
    try:
        from rcp.imaging.demo import load_demo_imaging
    except ImportError:
        return
    await load_demo_imaging(settings, db)


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings.production:
        # The demo creates accounts whose password is printed here and published in the README.
        raise SystemExit("rcp: the demo data is never loaded in production (RCP_ENV=production): its accounts share "
                         "a published password; add real accounts with `rcp user add`")
    asyncio.run(_demo(settings))
    return 0


async def _user_add(settings: Settings, args: argparse.Namespace, password: str) -> None:
    from sqlmodel import select

    from rcp.auth.models import Role, User
    from rcp.auth.passwords import hash_password
    from rcp.db import Database
    from rcp.scheduling.specialties import specialty

    if args.role not in {r.value for r in Role}:
        raise SystemExit(f"rcp: --role must be one of {', '.join(r.value for r in Role)}")
    if args.specialty:
        try:
            specialty(args.specialty)
        except ValueError as exc:
            raise SystemExit(f"rcp: --specialty: {exc}") from None
    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            if (await s.exec(select(User).where(User.username == args.username))).first() is not None:
                raise SystemExit(f"rcp: user {args.username!r} already exists")
            name, rpps = _person(args)
            s.add(User(username=args.username, family_name=name.family if name else "",
                       given_name=name.given if name else "", prefix=name.prefix if name else "", rpps=rpps,
                       role=args.role, specialty=args.specialty, hospital=args.hospital, email=args.email,
                       password_hash=hash_password(password, settings.argon2) if password else ""))
    finally:
        await db.close()


def _person(args: argparse.Namespace) -> tuple[PersonName | None, str]:
    """The name (``--family-name``/``--given-name``/``--prefix``, or ``--display-name`` with the family name in
    capitals) and RPPS of ``rcp user add``/``rcp user name``; exits naming the option that is wrong."""
    from rcp.errors import Invalid
    from rcp.people import PersonName, check_rpps

    option = {"family_name": "--family-name", "given_name": "--given-name", "prefix": "--prefix",
              "display_name": "--display-name", "rpps": "--rpps"}
    try:
        rpps = check_rpps(args.rpps)
        if args.display_name and (args.family_name or args.given_name or args.prefix):
            raise SystemExit("rcp: give either --display-name or --family-name/--given-name/--prefix, not both")
        if args.display_name:
            return PersonName.parse(args.display_name), rpps
        if args.family_name or args.given_name or args.prefix:
            return PersonName.of(family=args.family_name, given=args.given_name, prefix=args.prefix), rpps
        return None, rpps
    except Invalid as refused:
        field, message = next(iter(refused.fields.items()))
        raise SystemExit(f"rcp: {option.get(field, field)}: {message}") from None


async def _user_name(settings: Settings, args: argparse.Namespace) -> None:
    from sqlmodel import select

    from rcp.auth import audit
    from rcp.auth.models import User
    from rcp.db import Database

    name, rpps = _person(args)
    if name is None:
        raise SystemExit("rcp: give --family-name (and --given-name, --prefix) or --display-name")
    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            user = (await s.exec(select(User).where(User.username == args.username))).first()
            if user is None:
                raise SystemExit(f"rcp: no user {args.username!r}")
            user.family_name, user.given_name, user.prefix = name.family, name.given, name.prefix
            user.name_to_check = False
            if args.rpps:
                user.rpps = rpps
            s.add(user)
            # DCM 110113 Security Alert, 110137 "User Security Attributes Changed": the name signs documents.
            await audit.record(s, event="security_alert", action="U", source="localhost",
                               what=f"name of user {user.id} set by an administrator (rcp user name)")
    finally:
        await db.close()


def cmd_user_name(args: argparse.Namespace) -> int:
    """Set (or complete, after migration 0013 flagged it) the structured name and RPPS of an account."""
    asyncio.run(_user_name(_settings(), args))
    print(f"rcp: name of {args.username} set")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    _person(args)  # a wrong name or RPPS stops here, before the password is asked for
    password = ""
    if args.role == "guest" and args.password_stdin:
        raise SystemExit("rcp: a guest has no password: they enter by the link mailed for each invitation")
    if args.role not in {"service", "guest"} or args.password_stdin:
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password again: "):
                raise SystemExit("rcp: the two passwords differ")
        from rcp.auth.passwords import MIN_PASSWORD_LENGTH

        if len(password) < MIN_PASSWORD_LENGTH:
            raise SystemExit(f"rcp: the password must have at least {MIN_PASSWORD_LENGTH} characters")
    asyncio.run(_user_add(_settings(), args, password))
    print(f"rcp: user {args.username} added")
    return 0


async def _user_email(settings: Settings, username: str, address: str) -> None:
    from sqlmodel import select

    from rcp.auth import audit
    from rcp.auth.models import User
    from rcp.db import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            user = (await s.exec(select(User).where(User.username == username))).first()
            if user is None:
                raise SystemExit(f"rcp: no user {username!r}")
            user.email = address
            s.add(user)
            # DCM 110113 Security Alert, type 110137 "User Security Attributes Changed": guests' links go there.
            await audit.record(s, event="security_alert", action="U", source="localhost",
                               what=f"e-mail address of user {user.id} changed by an administrator (rcp user email)")
    finally:
        await db.close()


def cmd_user_email(args: argparse.Namespace) -> int:
    """Only administrators set the e-mail address of an account (a guest's join links are mailed to it)."""
    address = args.address.strip().lower()
    if address and (address.count("@") != 1 or "." not in address.partition("@")[2] or " " in address):
        raise SystemExit(f"rcp: {args.address!r} is not an e-mail address (name@hospital.fr)")
    asyncio.run(_user_email(_settings(), args.username, address))
    print(f"rcp: e-mail address of {args.username} set")
    return 0


async def _token_create(settings: Settings, username: str, name: str, days: int) -> str:
    from sqlmodel import select

    from rcp.auth import audit
    from rcp.auth.models import User
    from rcp.auth.tokens import TokenRefused, create_api_token
    from rcp.db import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            user = (await s.exec(select(User).where(User.username == username))).first()
            if user is None:
                raise SystemExit(f"rcp: no user {username!r}")
            try:
                token = await create_api_token(s, user, name, days=days, now=settings.clock.now())
            except TokenRefused as refused:
                raise SystemExit(f"rcp: {refused}") from None
            await audit.record(s, event="security_alert", action="C", source="localhost",
                               what=f"bearer token for user {user.id} created (rcp token create, {days} days)")
            return token
    finally:
        await db.close()


def cmd_token_create(args: argparse.Namespace) -> int:
    token = asyncio.run(_token_create(_settings(), args.username, args.name, args.days))
    print(token)
    print(f"rcp: store this token now; it cannot be shown again (it expires in {args.days} days)", file=sys.stderr)
    return 0


async def _token_list(settings: Settings) -> list[str]:
    from rcp.auth.tokens import list_tokens
    from rcp.db import Database

    def when(at: object) -> str:
        return at.strftime("%Y-%m-%d %H:%M") if hasattr(at, "strftime") else "never"

    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            return [f"{t.id}\t{t.name}\t{t.username}\t{when(t.created_at)}\t{when(t.expires_at)}\t"
                    f"{when(t.last_used_at)}\t{'yes' if t.revoked else 'no'}" for t in await list_tokens(s)]
    finally:
        await db.close()


def cmd_token_list(args: argparse.Namespace) -> int:
    """One tab-separated line per token: id, name, account, created, expires, last used, revoked (UTC). Never the
    token itself: only its digest is stored."""
    print("id\tname\taccount\tcreated\texpires\tlast used\trevoked")
    for line in asyncio.run(_token_list(_settings())):
        print(line)
    return 0


async def _token_revoke(settings: Settings, token_id: int) -> None:
    from rcp.auth import audit
    from rcp.auth.tokens import TokenRefused, revoke_token
    from rcp.db import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            try:
                row = await revoke_token(s, token_id)
            except TokenRefused as refused:
                raise SystemExit(f"rcp: {refused}") from None
            await audit.record(s, event="security_alert", action="D", source="localhost",
                               what=f"bearer token {token_id} of user {row.user_id} revoked (rcp token revoke)")
    finally:
        await db.close()


def cmd_token_revoke(args: argparse.Namespace) -> int:
    asyncio.run(_token_revoke(_settings(), args.token_id))
    print(f"rcp: token {args.token_id} revoked; every node refuses it within RCP_SESSION_CACHE_S seconds")
    return 0


async def _audit_export(settings: Settings, limit: int) -> list[str]:
    from sqlmodel import col, select

    from rcp.auth.audit import as_syslog
    from rcp.auth.models import AuditEvent
    from rcp.db import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            rows = (await s.exec(select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit))).all()
            return list(as_syslog(reversed(rows)))
    finally:
        await db.close()


async def _audit_patient(settings: Settings, patient_id: int, limit: int) -> list[str]:
    from rcp.auth import audit
    from rcp.auth.trail import patient_accesses, text_lines
    from rcp.db import Database

    db = Database(settings.database_url)
    try:
        async with db.session() as s:
            events = await patient_accesses(s, patient_id, limit=limit)
            await audit.record(s, event="export", action="R", patient_id=patient_id, source="cli",
                               what=f"accesses to patient {patient_id} ({len(events)} events), rcp audit patient")
            return text_lines(events)
    finally:
        await db.close()


def cmd_audit_patient(args: argparse.Namespace) -> int:
    """Who accessed one patient's data (GDPR art. 15 requests, the DPO's checks)."""
    for line in asyncio.run(_audit_patient(_settings(), args.patient_id, args.limit)):
        print(line)
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    for line in asyncio.run(_audit_export(_settings(), args.limit)):
        print(line)
    return 0


async def _worker(settings: Settings) -> None:
    import signal

    from rcp.db import Database
    from rcp.epr.worker import run_worker

    db = Database(settings.database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from rcp.app import mail_composers
    from rcp.mail import MailWorker, transport_for

    transport = transport_for(settings)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(run_worker(settings, db, stop), name="epr-worker")
            if transport is not None:  # the outbox of mails (guests' join links, the GP's copies) too
                mailer = MailWorker(settings, db, transport=transport, composers=mail_composers())
                tasks.create_task(mailer.run(stop), name="mail-worker")
    finally:
        await db.close()


def cmd_worker(args: argparse.Namespace) -> int:
    """Deliver signed decisions to the EPR receivers and send the outbox's mails; several workers may run against
    one PostgreSQL."""
    asyncio.run(_worker(_settings()))
    return 0


def cmd_demo_code(args: argparse.Namespace) -> int:
    """What an authenticator app holding the demo key shows now: the demo signs in without a phone."""
    from rcp.auth.totp import code_at
    from rcp.clock import utcnow
    from rcp.demo import DEMO_TOTP_SECRET

    print(code_at(DEMO_TOTP_SECRET, utcnow()))
    return 0


def _name_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family-name", default="", help="nom de famille, e.g. Rousseau")
    parser.add_argument("--given-name", default="", help="prénom(s), e.g. Amélie")
    parser.add_argument("--prefix", default="", help="title of practice: Dr, Pr or nothing")
    parser.add_argument("--display-name", default="",
                        help="the whole name with the family name in capitals (Dr Amélie ROUSSEAU), instead")
    parser.add_argument("--rpps", default="", help="RPPS number (11 digits, checked with its Luhn key)")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="rcp", description="Virtual tumour-board (RCP) collaboration service.")
    sub = root.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the web app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--fd", type=int, default=None, help="serve on this inherited listening socket instead")
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="bring the database schema up to date")
    mig.add_argument("--revision", default="head")
    mig.add_argument("--down", metavar="REVISION", help="downgrade to REVISION instead (e.g. base)")
    mig.set_defaults(func=cmd_migrate)

    demo = sub.add_parser("demo", help="load the demo data (idempotent)")
    demo.set_defaults(func=cmd_demo)
    demo_code = sub.add_parser("demo-code", help="the demo accounts' current second-factor code (TOTP)")
    demo_code.set_defaults(func=cmd_demo_code)

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="add a user (password prompted, or read from stdin)")
    add.add_argument("username")
    add.add_argument("--role", required=True, help="coordinator, clinician, admin, service or guest (no password)")
    add.add_argument("--specialty", default="")
    add.add_argument("--hospital", default="")
    _name_options(add)
    add.add_argument("--email", default="")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.set_defaults(func=cmd_user_add)
    email = user.add_parser("email", help="set the e-mail address of an account (administrators only)")
    email.add_argument("username")
    email.add_argument("address")
    email.set_defaults(func=cmd_user_email)

    name = user.add_parser("name", help="set or complete the name and RPPS number of an account")
    name.add_argument("username")
    _name_options(name)
    name.set_defaults(func=cmd_user_name)

    token = sub.add_parser("token", help="bearer tokens for service accounts").add_subparsers(
        dest="token_command", required=True)
    create = token.add_parser("create", help="create a token for a service account and print it once")
    create.add_argument("username")
    create.add_argument("--name", default="")
    create.add_argument("--days", type=int, default=90, help="days until it expires (default 90, at most 366)")
    create.set_defaults(func=cmd_token_create)
    listing = token.add_parser("list", help="every token: id, name, account, created, expires, last used, revoked")
    listing.set_defaults(func=cmd_token_list)
    revoke = token.add_parser("revoke", help="revoke a token by its id (rcp token list)")
    revoke.add_argument("token_id", type=int)
    revoke.set_defaults(func=cmd_token_revoke)

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    export = audit.add_parser("export", help="print the newest events as RFC 5424 syslog lines")
    export.add_argument("--limit", type=int, default=10_000)
    export.set_defaults(func=cmd_audit_export)
    patient = audit.add_parser("patient", help="who accessed one patient's data, oldest first (tab-separated)")
    patient.add_argument("patient_id", type=int, help="the patient's id in the service (as in /patients/ID)")
    patient.add_argument("--limit", type=int, default=10_000)
    patient.set_defaults(func=cmd_audit_patient)

    saving = sub.add_parser("backup", help="write the database and the data folder to one file (0600)")
    saving.add_argument("file", help="the backup file to write, e.g. /backup/rcp-2026-12-03.tar.gz")
    saving.set_defaults(func=cmd_backup)
    restoring = sub.add_parser("restore", help="restore a backup into an empty database and data folder")
    restoring.add_argument("file", help="a file written by `rcp backup`")
    restoring.add_argument("--replace", action="store_true",
                           help="overwrite a database and data folder that are not empty")
    restoring.set_defaults(func=cmd_restore)

    worker = sub.add_parser("worker", help="run the EPR delivery worker on its own")
    worker.set_defaults(func=cmd_worker)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    from rcp.logs import configure_logging

    args = parser().parse_args(argv)
    configure_logging(str(getattr(args, "log_level", "info")).upper())
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
