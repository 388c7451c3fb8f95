"""The media package's public surface, pinned (the room code and the app import these names)."""

from __future__ import annotations

import inspect

import media
from media import MediaHub, RoomMedia, open_media_plane


def test_all_is_pinned() -> None:
    assert sorted(media.__all__) == [
        "AIORTC_VERSION",
        "CHANNELS",
        "MediaHub",
        "MediaNode",
        "MediaPlane",
        "OnMedia",
        "OnSpeaker",
        "Peer",
        "PlacedRoom",
        "RoomMedia",
        "contract_problems",
        "open_media_plane",
    ]


def test_room_signatures_the_room_code_relies_on() -> None:
    connect = inspect.signature(RoomMedia.connect)
    assert list(connect.parameters) == [
        "self",
        "participant_id",
        "offer_sdp",
        "on_message",
        "on_state",
        "on_media",
    ]
    assert list(inspect.signature(RoomMedia.send).parameters) == ["self", "participant_id", "channel", "data"]
    assert list(inspect.signature(RoomMedia.set_paused).parameters) == [
        "self",
        "subscriber",
        "publisher",
        "kind",
        "paused",
    ]
    assert inspect.iscoroutinefunction(RoomMedia.disconnect)
    assert inspect.iscoroutinefunction(MediaHub.close)


def test_browser_ice_servers_from_settings() -> None:
    class FakeSettings:
        ice_servers = ("stun:stun.example.org:3478", "turn:turn.example.org:3478")
        ice_username = "rcp"
        ice_credential = "secret"

    hub = MediaHub.from_settings(FakeSettings())
    assert hub.browser_ice_servers() == [
        {
            "urls": ["stun:stun.example.org:3478", "turn:turn.example.org:3478"],
            "username": "rcp",
            "credential": "secret",
        }
    ]
    assert MediaHub().browser_ice_servers() == []


async def test_open_media_plane_without_redis_is_one_hub() -> None:
    from rcp.config import Settings

    async with open_media_plane(Settings(env="test", ice_servers=("stun:stun.example.org",))) as plane:
        assert isinstance(plane, MediaHub)
        assert plane.browser_ice_servers() == [{"urls": ["stun:stun.example.org"]}]
        plane.room("m1")
    assert plane.rooms == {}
