"""Redis and PostgreSQL "restarted" mid-meeting (cut and restored behind tests.fixtures.faults.FaultProxy, never
the machine's own servers): the room goes on, and nothing decided meanwhile is lost.

- Redis away: each node keeps deciding (the log is in PostgreSQL) and its own participants keep seeing the
  room; the other node's participants get what they missed as soon as the bus is back, in order and without gap,
  and nobody is shown gone for the silence of a bus that could not carry their node's heartbeats.
- PostgreSQL away: a command is answered with an ``unavailable`` error frame (try again) and the connection stays
  up; an API call gets the service's 503 JSON error with ``Retry-After``, never a 500; once the database is back
  the same command and the same save go through, and every history is still the room's log.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.factories import make_meeting
from tests.faults.cluster import Cluster, cookie_of, history, log_seqs, signed_in
from tests.room.client import RoomClient
from tests.servers import until

#: The first test of the session also waits for the two nodes to start (tests/faults/conftest.py).
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(300)]

#: Refused reconnections (both nodes retry every half second) that make the outage outlast the presence delay
#: (RoomConfig.presence_timeout_s, 4.5 s): without the bus's own notion of being away, remote participants would
#: have been declared gone by then.
REFUSALS = 24


async def _room(cluster: Cluster) -> tuple[Any, dict[str, Any], dict[str, RoomClient]]:
    a, b = cluster.nodes
    meeting = await make_meeting(cluster.db, invite=("surgeon", "medical_oncologist"), cases=1)
    people = {"chair": meeting.coordinator, "surgeon": meeting.invitee("surgeon"),
              "oncologist": meeting.invitee("medical_oncologist")}
    home = {"chair": a, "surgeon": a, "oncologist": b}
    http = {n: await signed_in(home[n].url, user) for n, user in people.items()}
    rooms = {n: await RoomClient.open(home[n].url, cookie_of(http[n]), meeting.id) for n in people}
    await rooms["chair"].send({"type": "case.set", "case_id": meeting.cases[0].id})
    await rooms["chair"].send({"type": "floor.take"})  # the chair presents (already, when first in)
    for client in rooms.values():
        await client.wait_for(lambda c: bool(c.of("case.changed")) or bool(c.errors))
    assert not any(c.errors for c in rooms.values()), [c.errors for c in rooms.values()]
    return meeting, http, rooms


def _same_history_as_the_log(rooms: dict[str, RoomClient], log: list[int]) -> None:
    for name, client in rooms.items():
        seen = history(client)
        start = log.index(seen[0])
        assert seen == log[start:], name


async def test_redis_restarted_mid_meeting(cluster: Cluster) -> None:
    meeting, http, rooms = await _room(cluster)
    chair, oncologist = rooms["chair"], rooms["oncologist"]  # node a, node b
    try:
        cluster.redis.cut()
        await until(lambda: cluster.redis.refused >= REFUSALS, "both nodes to retry Redis for a while")
        for index in range(1, 11):  # the presenter scrolls on node a: the log has it, the bus cannot carry it
            await chair.send({"type": "view", "slice": index})
        await oncologist.send({"type": "mode", "mode": "free"})  # and someone on node b browses freely
        await chair.wait_for(lambda c: any(e["view"]["slice"] == 10 for e in c.of("view.changed")))
        await oncologist.wait_for(lambda c: bool(c.of("participant.mode")))
        cluster.redis.restore()

        for client in rooms.values():  # what was missed arrives once the bus is back, in order
            await client.wait_for(lambda c: any(e["view"]["slice"] == 10 for e in c.of("view.changed")), 30)
            await client.wait_for(lambda c: bool(c.of("participant.mode")), 30)
        await chair.send({"type": "view", "slice": 99})  # and the bus carries the room again
        for client in rooms.values():
            await client.wait_for(lambda c: any(e["view"]["slice"] == 99 for e in c.of("view.changed")))

        _same_history_as_the_log(rooms, await log_seqs(cluster.db, meeting.id))
        assert [e["view"]["slice"] for e in oncologist.of("view.changed")] == [*range(1, 11), 99]
        assert not any(e["reason"] == "lost" for c in rooms.values() for e in c.of("participant.left"))
        assert not any(c.errors for c in rooms.values()), [c.errors for c in rooms.values()]
    finally:
        cluster.redis.restore()
        await asyncio.gather(*(c.close() for c in rooms.values()), return_exceptions=True)
        await asyncio.gather(*(h.aclose() for h in http.values()), return_exceptions=True)


async def test_postgresql_restarted_mid_meeting(cluster: Cluster) -> None:
    meeting, http, rooms = await _room(cluster)
    case_id = meeting.cases[0].id
    chair, surgeon = rooms["chair"], http["surgeon"]
    try:
        before = await surgeon.put(f"/api/cases/{case_id}/decision/fields/question",
                                   json={"value": "Opérable ?", "base_version": 0})
        assert before.status_code == 200, before.text
        seq = chair.seq

        cluster.pg.cut()
        # A command needs the log: refused with "try again", the connection stays.
        await chair.send({"type": "view", "slice": 7, "id": "during"})
        await chair.wait_for(lambda c: bool(c.errors))
        assert chair.errors[0]["error"] == "unavailable" and chair.errors[0]["ref"] == "during"
        assert chair.seq == seq and not chair.closed.is_set()
        # An API call: the service's 503 with Retry-After, the same whether the session or the route met it.
        answer = await surgeon.put(f"/api/cases/{case_id}/decision/fields/clinical_summary",
                                   json={"value": "Adénocarcinome.", "base_version": 0})
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "unavailable" and int(answer.headers["retry-after"]) > 0
        cluster.pg.restore()

        # The page tries again: the same command and the same save go through once the database is back.
        async def retried_save() -> bool:
            again = await surgeon.put(f"/api/cases/{case_id}/decision/fields/clinical_summary",
                                      json={"value": "Adénocarcinome.", "base_version": 0})
            return bool(again.status_code == 200)

        await until(retried_save, "the save to go through once PostgreSQL is back", interval=0.5)
        await chair.send({"type": "view", "slice": 7})
        for client in rooms.values():
            await client.wait_for(lambda c: any(e["view"]["slice"] == 7 for e in c.of("view.changed")), 30)
        state = (await surgeon.get(f"/api/cases/{case_id}/decision")).json()
        assert state["draft"]["fields"]["question"]["value"] == "Opérable ?"
        assert state["draft"]["fields"]["clinical_summary"]["value"] == "Adénocarcinome."
        _same_history_as_the_log(rooms, await log_seqs(cluster.db, meeting.id))
        assert all(not c.closed.is_set() for c in rooms.values())
    finally:
        cluster.pg.restore()
        await asyncio.gather(*(c.close() for c in rooms.values()), return_exceptions=True)
        await asyncio.gather(*(h.aclose() for h in http.values()), return_exceptions=True)
