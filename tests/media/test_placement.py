"""Two media nodes sharing the real Redis (127.0.0.1:6379): a room's media lives on the node that claimed it,
and a participant whose WebSocket is on the other node still gets its peer, media and data channels there."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from media import MediaHub
from media.placement import MediaNode
from media.synthetic import SyntheticParticipant

from .helpers import until

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[MediaNode, MediaNode]]:
    prefix = f"rcp-test-media-{secrets.token_hex(4)}:"
    probe = aioredis.from_url(REDIS_URL)
    try:
        await probe.ping()
    except (aioredis.RedisError, OSError):
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    finally:
        await probe.aclose()
    a = MediaNode(MediaHub(), REDIS_URL, node_id="node-a", prefix=prefix, claim_ttl_s=3)
    b = MediaNode(MediaHub(), REDIS_URL, node_id="node-b", prefix=prefix, claim_ttl_s=3)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()
        cleanup = aioredis.from_url(REDIS_URL)
        keys = [key async for key in cleanup.scan_iter(f"{prefix}*")]
        if keys:
            await cleanup.delete(*keys)
        await cleanup.aclose()


async def test_participants_on_two_nodes_share_one_media_node(nodes: tuple[MediaNode, MediaNode]) -> None:
    node_a, node_b = nodes
    room_on_a = node_a.room("m1")
    speakers_on_b: list[str | None] = []
    room_on_b = node_b.room("m1", on_speaker=speakers_on_b.append)
    alice = SyntheticParticipant("alice", slots=1, speaking=True)
    bob = SyntheticParticipant("bob", slots=1)
    bob_messages: list[tuple[str, str | bytes]] = []
    bob_states: list[str] = []
    try:
        answer = await room_on_a.connect("alice", await alice.offer(), on_media=alice.on_media)
        await alice.accept(answer)
        assert await node_b.owner("m1") == "node-a"

        # Bob's WebSocket is on node B: his offer is relayed to node A, which answers with its own candidates.
        answer = await room_on_b.connect(
            "bob",
            await bob.offer(),
            on_message=lambda channel, data: bob_messages.append((channel, data)),
            on_state=bob_states.append,
            on_media=bob.on_media,
        )
        await bob.accept(answer)
        await until(lambda: bob.pc.connectionState == "connected", "bob connected to node A")
        assert node_a.hub.room("m1").participants == ["alice", "bob"]
        assert "m1" not in node_b.hub.rooms, "node B must not hold media for a room node A owns"

        await until(
            lambda: (r := bob.showing("alice")) is not None and r.frames > 10, "bob receives alice via A"
        )
        await until(lambda: (r := alice.showing("bob")) is not None and r.frames > 10, "alice receives bob")
        await until(lambda: "connected" in bob_states, "bob's peer state relayed to node B")
        assert bob.media_events and bob.media_events[-1]["slots"][1]["participant"] == "alice"
        await until(lambda: "alice" in speakers_on_b, "the speaker relayed to node B")
        # What a newcomer's welcome shows on either node (rcp.room.live reads it).
        assert room_on_a.speaker == "alice" and room_on_b.speaker == "alice"

        # Data channels, both ways, in order, across the nodes.
        await until(lambda: bob.channels["view"].readyState == "open", "bob's view channel")
        for i in range(50):
            bob.channels["view"].send(json.dumps({"seq": i}))
        await until(lambda: len(bob_messages) == 50, "bob's messages at node B")
        assert [json.loads(data)["seq"] for _, data in bob_messages] == list(range(50))
        for i in range(50):
            assert room_on_b.send("bob", "view", json.dumps({"seq": i}))
        assert room_on_b.send("bob", "pointer", b"\x00\x01")
        await until(lambda: len(bob.messages["view"]) == 50, "node B's messages at bob")
        assert [json.loads(m)["seq"] for m in bob.messages["view"]] == list(range(50))
        await until(lambda: bob.messages["pointer"] == [b"\x00\x01"], "binary pointer sample")

        # Pausing is relayed too.
        assert room_on_b.set_paused("bob", "alice", "video", True)
        await until(
            lambda: bob.media_events[-1]["slots"][1]["paused"] is True, "bob's pause applied on node A"
        )
        assert room_on_b.set_paused("bob", "alice", "video", False)
        await until(
            lambda: bob.media_events[-1]["slots"][1]["paused"] is False, "bob's resume applied on node A"
        )

        await room_on_b.disconnect("bob")
        assert node_a.hub.room("m1").participants == ["alice"]
        await room_on_a.disconnect("alice")
        # The claim is freed once the room is empty, so the next meeting can land anywhere.
        await until(lambda: "m1" not in node_a.hub.rooms, "room gone from node A")

        async def released() -> bool:
            return await node_b.owner("m1") is None

        await until(released, "node A to release its claim on the empty room", interval=0.1)
        assert await node_b.claim("m1") == "node-b"
    finally:
        await alice.close()
        await bob.close()


async def test_open_media_plane_with_redis_places_rooms() -> None:
    from media import open_media_plane
    from rcp.config import Settings

    settings = Settings(env="test", redis_url=REDIS_URL, node_id=f"node-{secrets.token_hex(3)}",
                        secret_key=secrets.token_urlsafe(48))
    try:
        async with open_media_plane(settings) as plane:
            assert isinstance(plane, MediaNode)
            assert plane.node_id == settings.node_id
    except (aioredis.RedisError, OSError):
        pytest.skip("Redis is not running on 127.0.0.1:6379")
