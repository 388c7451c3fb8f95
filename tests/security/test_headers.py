"""Attacks on what a shared workstation keeps and what a browser leaks (issue 13, findings 5 and 10).

Black-box over HTTP: the shared service (``live_server``, http) and a service of this module's own that says it is
reached over TLS (``RCP_PUBLIC_URL=https://…``, served on loopback: the scheme of the public URL decides). The
secret-key attack forges a join link with the secret that used to be published in the code.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlmodel import col, select

from rcp.app import create_app
from rcp.config import SECRET_KEY_FILE, Settings, SettingsError
from rcp.db import Database
from rcp.scheduling.models import Invitation, Meeting
from tests.conftest import DEMO_PASSWORD
from tests.factories import credentials, make_meeting
from tests.room.node import demo_service
from tests.servers import ServerThread

#: The secret every copy of the code carried before issue 13.
PUBLISHED_SECRET = "dev-insecure-secret-change-me"


def _session_cookie(response: httpx.Response) -> str:
    found = [v for v in response.headers.get_list("set-cookie") if v.startswith("rcp_session=")]
    assert found, response.headers
    return found[0]


def assert_not_stored(response: httpx.Response) -> None:
    assert "no-store" in response.headers.get("cache-control", ""), (response.url.path, response.headers)


# -- the shared service (http) ----------------------------------------------------------------------------------


async def test_pages_and_json_are_never_stored(login: Any, anonymous: httpx.AsyncClient,
                                               db: Database) -> None:
    assert_not_stored(await anonymous.get("/login"))
    made = await make_meeting(db, cases=1)
    coordinator = await login(made.coordinator)
    meetings = await coordinator.get("/api/meetings")
    assert meetings.status_code == 200
    assert_not_stored(meetings)
    meeting_id = made.id
    detail = await coordinator.get(f"/api/meetings/{meeting_id}")
    assert_not_stored(detail)
    cases = [c for c in detail.json().get("cases", [])]
    assert cases, "the meeting has a case"
    for url in (f"/api/cases/{cases[0]['id']}", f"/cases/{cases[0]['id']}", f"/meetings/{meeting_id}",
                "/meetings", "/api/session"):
        response = await coordinator.get(url)
        assert response.status_code == 200, url
        assert_not_stored(response)
    assert "no-store" not in (await anonymous.get("/static/js/frames.js")).headers.get("cache-control", "")


async def test_no_referrer_and_media_only_in_the_room(login: Any, anonymous: httpx.AsyncClient,
                                                      db: Database) -> None:
    page = await anonymous.get("/login")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "camera=()" in page.headers["permissions-policy"]
    assert "microphone=()" in page.headers["permissions-policy"]
    made = await make_meeting(db, cases=1)
    clinician = await login(made.invitee("medical_oncologist"))
    meeting_id = made.id
    meeting = await clinician.get(f"/meetings/{meeting_id}")
    assert "camera=()" in meeting.headers["permissions-policy"]
    room = await clinician.get(f"/meetings/{meeting_id}/room")
    assert room.status_code == 200
    assert "camera=(self)" in room.headers["permissions-policy"]
    assert "microphone=(self)" in room.headers["permissions-policy"]


async def test_session_cookie_ends_with_the_browser(live_server: ServerThread) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        response = await http.post("/api/session", json=credentials("secretariat", DEMO_PASSWORD))
    assert response.status_code == 201
    cookie = _session_cookie(response).lower()
    assert "max-age" not in cookie and "expires" not in cookie, cookie
    assert "httponly" in cookie
    # Served over plain http: no HSTS promise (a browser would ignore it anyway, RFC 6797 §8.1).
    assert "strict-transport-security" not in response.headers


# -- a service reached over TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def tls_service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ServerThread, Database]]:
    settings, _meeting = await demo_service(tmp_path_factory.mktemp("tls"), imaging_slices=2)
    settings = dataclasses.replace(settings, public_url="https://rcp.chu-test.fr")
    db = Database(settings.database_url)
    with ServerThread(create_app(settings)) as server:
        yield server, db
    await db.close()


async def test_tls_means_hsts_and_secure_cookies(tls_service: tuple[ServerThread, Database]) -> None:
    server, _db = tls_service
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/api/session", json=credentials("secretariat", DEMO_PASSWORD))
        assert response.status_code == 201
        assert "; secure" in _session_cookie(response).lower()
        assert response.headers["strict-transport-security"].startswith("max-age=")
        page = await http.get("/meetings")
        assert "max-age=" in page.headers["strict-transport-security"]


async def test_frames_are_not_kept_on_disk(tls_service: tuple[ServerThread, Database]) -> None:
    server, _db = tls_service
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        signed = await http.post("/api/session", json=credentials("dr.radiologue", DEMO_PASSWORD))
        assert signed.status_code == 201, signed.text
        # The cookie is Secure and this loopback is plain http: send it by hand, as the TLS proxy would pass it.
        http.cookies.clear()
        http.headers["Cookie"] = _session_cookie(signed).split(";")[0]
        meetings = (await http.get("/api/meetings")).json()
        frame_url = ""
        for m in meetings:
            for case in (await http.get(f"/api/meetings/{m['id']}")).json().get("cases", []):
                studies = (await http.get(f"/api/cases/{case['id']}/studies")).json()
                for study in studies if isinstance(studies, list) else []:
                    uid = study.get("study_uid")
                    series = (await http.get(f"/api/imaging/studies/{uid}/series",
                                             params={"case_id": case["id"]})).json()
                    if isinstance(series, list) and series:
                        descriptor = (await http.get(
                            f"/api/imaging/studies/{uid}/series/{series[0]['series_uid']}",
                            params={"case_id": case["id"]})).json()
                        frame_url = descriptor["frames"][0]["url"]
                        break
                if frame_url:
                    break
            if frame_url:
                break
        assert frame_url, "the demo has a study with frames"
        frame = await http.get(frame_url)
    assert frame.status_code == 200
    assert_not_stored(frame)
    assert "immutable" not in frame.headers["cache-control"]


# -- the secret key ---------------------------------------------------------------------------------------------


async def test_a_join_link_signed_with_the_published_secret_is_refused(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    async with db.session() as s:
        invitation = (await s.exec(select(Invitation).join(Meeting, col(Meeting.id) == col(Invitation.meeting_id))
                                   .where(Meeting.status == "scheduled"))).first()
    assert invitation is not None
    # The service as an operator starts it outside production: RCP_* variables, no RCP_SECRET_KEY.
    started = Settings.from_env({"RCP_ENV": "development", "RCP_DATA_DIR": str(tmp_path),
                                 "RCP_DATABASE_URL": settings.database_url, "RCP_DEFAULT_LOCALE": "en",
                                 "RCP_EMBEDDED_WORKER": "false"})
    # A link as the service signed them before issue 13 (itsdangerous, the published secret); links are now random
    # tokens the service minted and stored hashed (rcp.auth.links), so a signature opens nothing either way.
    forged = URLSafeTimedSerializer(PUBLISHED_SECRET, salt="rcp.join-link").dumps(
        {"m": invitation.meeting_id, "u": invitation.user_id, "n": "00000000"})
    with ServerThread(create_app(started)) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.get(f"/join/{forged}")
            await http.post(f"/join/{forged}")
            await http.post("/join", data={"token": forged})
            assert (await http.get("/api/session")).status_code == 401


def test_the_generated_key_is_private_and_kept(tmp_path: Path) -> None:
    first = Settings.from_env({"RCP_DATA_DIR": str(tmp_path)})
    key_file = tmp_path / SECRET_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32 and first.secret_key != PUBLISHED_SECRET
    assert Settings.from_env({"RCP_DATA_DIR": str(tmp_path)}).secret_key == first.secret_key
    assert Settings.from_env({"RCP_DATA_DIR": str(tmp_path / "other")}).secret_key != first.secret_key
    key_file.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        Settings.from_env({"RCP_DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize("variables", [
    {"RCP_ENV": "production", "RCP_PUBLIC_URL": "https://rcp.chu-test.fr"},
    {"RCP_REDIS_URL": "redis://127.0.0.1:6379/0"},
])
def test_production_and_several_nodes_need_a_secret(variables: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="RCP_SECRET_KEY"):
        Settings.from_env({"RCP_DATA_DIR": str(tmp_path)} | variables)
    assert not (tmp_path / SECRET_KEY_FILE).exists()


def test_the_in_process_bus_is_one_node(tmp_path: Path) -> None:
    assert Settings.from_env({"RCP_DATA_DIR": str(tmp_path), "RCP_REDIS_URL": "memory://"}).secret_key == \
        (tmp_path / SECRET_KEY_FILE).read_text().strip()


def test_production_is_served_over_tls() -> None:
    with pytest.raises(SettingsError, match="RCP_PUBLIC_URL"):
        Settings(env="production", secret_key="k" * 48)
    assert Settings(env="production", secret_key="k" * 48, public_url="https://rcp.chu-test.fr/").origin == \
        "https://rcp.chu-test.fr"


def _rcp(data_dir: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCP_")}
    env |= {"RCP_DATA_DIR": str(data_dir), **variables}
    return subprocess.run([sys.executable, "-m", "rcp.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_demo_refuses_production(tmp_path: Path) -> None:
    production = {"RCP_ENV": "production", "RCP_SECRET_KEY": "k" * 48, "RCP_PUBLIC_URL": "https://rcp.chu-test.fr"}
    assert _rcp(tmp_path, "migrate", **production).returncode == 0
    refused = _rcp(tmp_path, "demo", **production)
    assert refused.returncode != 0 and "production" in refused.stderr
    assert "rcp-demo-2026" not in refused.stdout



async def test_signing_out_clears_the_site_from_the_browser(login: Any, live_server: ServerThread) -> None:
    clinician = await login("dr.radiologue")
    out = await clinician.delete("/api/session")
    assert out.status_code == 204
    assert '"cache"' in out.headers["clear-site-data"] and '"storage"' in out.headers["clear-site-data"]
    again = await login("dr.radiologue")
    page = await again.post("/logout", headers={"X-CSRF-Token": again.csrf}, follow_redirects=False)
    assert page.status_code == 303 and '"cookies"' in page.headers["clear-site-data"]
