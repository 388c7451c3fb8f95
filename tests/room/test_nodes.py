"""Two server processes sharing the real PostgreSQL and Redis: one history, in the same order, for everybody."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest

from rcp.db import Database, migrate
from rcp.demo import load_demo
from tests.factories import CHEAP_ARGON2, SECRET_KEY
from tests.fixtures.postgres import create_database, drop_database
from tests.room.client import RoomClient, session_cookie
from tests.room.node import NodeProcess, scheduled_meeting_id

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[NodeProcess, NodeProcess, str]]:
    name = create_database()
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    nodes: list[NodeProcess] = []
    try:
        migrate(url)
        asyncio.run(_demo(url))
        secret = SECRET_KEY  # the factories' (the demo users' second factor is encrypted with it)
        prefix = f"test-{secrets.token_hex(4)}:"
        for node in ("node-a", "node-b"):
            nodes.append(
                NodeProcess(
                    database_url=url,
                    secret=secret,
                    redis_url="redis://127.0.0.1:6379/0",
                    prefix=prefix,
                    node=node,
                )
            )
        for n in nodes:
            n.start()
        yield nodes[0], nodes[1], url
    finally:
        for n in nodes:
            n.close()
        drop_database(name)


async def _demo(url: str) -> None:
    db = Database(url)
    try:
        await load_demo(db, argon2=CHEAP_ARGON2, secret_key=SECRET_KEY)
    finally:
        await db.close()


async def _meeting(url: str) -> int:
    db = Database(url)
    try:
        return await scheduled_meeting_id(db)
    finally:
        await db.close()


async def test_participants_on_two_nodes_see_the_same_events_in_the_same_order(
    cluster: tuple[NodeProcess, NodeProcess, str],
) -> None:
    a, b, url = cluster
    meeting_id = await _meeting(url)
    names = [
        "secretariat",
        "dr.radiologue",
        "dr.chirurgien",
        "dr.oncologue",
        "dr.radiotherapeute",
        "dr.pneumologue",
    ]
    cookies = {n: await session_cookie(a.url, n) for n in names}
    clients: list[RoomClient] = []
    try:
        chair = await RoomClient.open(a.url, cookies["secretariat"], meeting_id)
        radio = await RoomClient.open(b.url, cookies["dr.radiologue"], meeting_id)
        others = [
            await RoomClient.open(a.url if i % 2 else b.url, cookies[n], meeting_id)
            for i, n in enumerate(names[2:])
        ]
        clients = [chair, radio, *others]
        assert {c.welcome["node"] for c in clients} == {"node-a", "node-b"}
        radio_id = radio.welcome["user_id"]
        await chair.wait_for(lambda c: sum(1 for e in c.of("participant.joined")) >= 5 or c.seq >= 7)
        await chair.send({"type": "floor.handover", "to": radio_id})
        await radio.wait_for(lambda c: any(e["user_id"] == radio_id for e in c.of("floor.granted")))

        # Both nodes append at the same time: the presenter (node b) scrolls while people on node a and b switch
        # between follow and browse freely. The log's unique (meeting, seq) serialises them.
        async def scroll() -> None:
            for index in range(1, 31):
                await radio.send({"type": "view", "slice": index})

        async def toggle(client: RoomClient) -> None:
            for i in range(10):
                await client.send({"type": "mode", "mode": "free" if i % 2 == 0 else "follow"})

        await asyncio.gather(scroll(), *(toggle(c) for c in others))
        for client in clients:
            await client.wait_for(
                lambda c: any(e["view"]["slice"] == 30 for e in c.of("view.changed")), timeout=30
            )
        final = max(c.seq for c in clients)
        for client in clients:
            await client.wait_for(lambda c: c.seq >= final, timeout=30)
        start = max(c.events[0]["seq"] for c in clients)
        histories = [
            [(e["seq"], e["event"], e.get("user_id")) for e in c.events if e["seq"] >= start] for c in clients
        ]
        assert all(h == histories[0] for h in histories)
        assert [s for s, _, _ in histories[0]] == list(range(start, final + 1))
        assert not any(c.errors for c in clients), [c.errors for c in clients]
        assert [e["view"]["slice"] for e in chair.of("view.changed")][-30:] == list(range(1, 31))
        assert not any(c.errors for c in clients)

        # The pointer crosses nodes too.
        await radio.send({"type": "pointer", "p": [10.0, 20.0, 30]})
        await chair.wait_for(lambda c: bool(c.pointers))
        assert chair.pointers[-1] == [radio_id, 10.0, 20.0, 30]
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def test_participants_of_a_crashed_node_are_shown_gone() -> None:
    """Node b dies without saying goodbye: node a stops hearing it vouch for its participants and marks them gone."""
    name = create_database()
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    nodes: list[NodeProcess] = []
    clients: list[RoomClient] = []
    try:
        migrate(url)
        await _demo(url)
        secret, prefix = SECRET_KEY, f"test-{secrets.token_hex(4)}:"
        nodes = [
            NodeProcess(
                database_url=url, secret=secret, redis_url="redis://127.0.0.1:6379/0", prefix=prefix, node=n
            )
            for n in ("node-a", "node-b")
        ]
        for n in nodes:
            n.start()
        meeting_id = await _meeting(url)
        chair = await RoomClient.open(
            nodes[0].url, await session_cookie(nodes[0].url, "secretariat"), meeting_id
        )
        doomed = await RoomClient.open(
            nodes[1].url, await session_cookie(nodes[0].url, "dr.chirurgien"), meeting_id
        )
        clients = [chair, doomed]
        user = doomed.welcome["user_id"]
        await chair.wait_for(
            lambda c: any(e["participant"]["user_id"] == user for e in c.of("participant.joined"))
        )
        nodes[1].process.kill()  # no close frames, no leave events from node b
        await chair.wait_for(
            lambda c: any(e["user_id"] == user and e["reason"] == "lost" for e in c.of("participant.left")),
            timeout=30,
        )
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        for n in nodes:
            n.close()
        drop_database(name)
