"""Browsers get the configured STUN/TURN servers in the room's welcome (hospital networks need TURN)."""

from __future__ import annotations

from dataclasses import replace

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database
from tests.factories import make_meeting
from tests.room.client import RoomClient, session_cookie
from tests.servers import ServerThread


async def test_welcome_carries_the_ice_servers_from_settings(settings: Settings, db: Database) -> None:
    configured = replace(settings, ice_servers=("stun:stun.example.org:3478", "turn:turn.example.org:3478"),
                         ice_username="rcp", ice_credential="secret-turn")
    server = ServerThread(create_app(configured))
    server.start()
    try:
        meeting = await make_meeting(db, cases=1)
        radiologist = meeting.invitee("radiologist")
        cookie = await session_cookie(server.url, radiologist.username, radiologist.password)
        client = await RoomClient.open(server.url, cookie, meeting.id)
        try:
            assert client.welcome["ice_servers"] == [{
                "urls": ["stun:stun.example.org:3478", "turn:turn.example.org:3478"],
                "username": "rcp", "credential": "secret-turn",
            }]
        finally:
            await client.close()
    finally:
        server.close()
