"""Browsers get the configured STUN/TURN servers in the room's welcome (hospital networks need TURN)."""

from __future__ import annotations

from dataclasses import replace

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database
from tests.room.client import RoomClient, session_cookie
from tests.servers import ServerThread


async def test_welcome_carries_the_ice_servers_from_settings(settings: Settings, db: Database, login) -> None:  # type: ignore[no-untyped-def]
    configured = replace(settings, ice_servers=("stun:stun.example.org:3478", "turn:turn.example.org:3478"),
                         ice_username="rcp", ice_credential="secret-turn")
    server = ServerThread(create_app(configured))
    server.start()
    try:
        coordinator = await login("secretariat")
        meeting_id = (await coordinator.get("/api/meetings?when=upcoming")).json()[0]["id"]
        cookie = await session_cookie(server.url, "dr.radiologue")
        client = await RoomClient.open(server.url, cookie, meeting_id)
        try:
            assert client.welcome["ice_servers"] == [{
                "urls": ["stun:stun.example.org:3478", "turn:turn.example.org:3478"],
                "username": "rcp", "credential": "secret-turn",
            }]
        finally:
            await client.close()
    finally:
        server.close()
