"""One of two nodes killed (SIGKILL) during a meeting: its participants resume on the other node with nothing lost.

The presenter, on the surviving node, keeps scrolling while node B dies; the participants B held reconnect as the
page does (tests.room.client.rejoin: the page's backoff, ``?last_seq=``, the load balancer sending them to the node
that answers) and get exactly the events they missed. Every participant's history has no gap and is the room's
log; the decision fields the surgeon saved on B are all there, and the surgeon signs on A. How long the rejoin
takes is a figure (bench/failover.py), not asserted here.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.factories import make_meeting, proof
from tests.faults.cluster import Cluster, cookie_of, history, log_seqs, signed_in
from tests.room.client import RoomClient, rejoin

#: The first test of the session also waits for the two nodes to start (tests/faults/conftest.py).
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(300)]

DRAFT = {
    "question": "Opérable ?",
    "proposal": {"type": "surgery", "details": "Lobectomie."},
    "guideline": {"conforms": True},
    "patient_informed": True,
    "case_status": "discussed",
}


async def test_a_node_killed_mid_meeting_loses_no_event_field_or_signature(cluster: Cluster) -> None:
    a, b = cluster.nodes
    meeting = await make_meeting(cluster.db, invite=("surgeon", "medical_oncologist", "radiotherapist"), cases=1)
    case_id = meeting.cases[0].id
    people = {"chair": meeting.coordinator, "surgeon": meeting.invitee("surgeon"),
              "oncologist": meeting.invitee("medical_oncologist"),
              "radiotherapist": meeting.invitee("radiotherapist")}
    home = {"chair": a, "oncologist": a, "surgeon": b, "radiotherapist": b}
    http = {n: await signed_in(home[n].url, user) for n, user in people.items()}
    rooms = {n: await RoomClient.open(home[n].url, cookie_of(http[n]), meeting.id) for n in people}
    resumed: dict[str, RoomClient] = {}
    try:
        chair = rooms["chair"]
        await chair.send({"type": "case.set", "case_id": case_id})
        await chair.send({"type": "floor.take"})
        for client in rooms.values():
            await client.wait_for(lambda c: any(e["case_id"] == case_id for e in c.of("case.changed")))
        surgeon = http["surgeon"]
        me = (await surgeon.get("/api/session")).json()["id"]
        saved = {}
        for name, value in DRAFT.items():
            answer = await surgeon.put(f"/api/cases/{case_id}/decision/fields/{name}",
                                       json={"value": value, "base_version": 0})
            assert answer.status_code == 200, answer.text
            saved[name] = value

        # The presenter scrolls on A while B is killed: no close frames, no leave events from B.
        async def scroll() -> None:
            for index in range(1, 41):
                await chair.send({"type": "view", "slice": index})
                await asyncio.sleep(0.05)

        scrolling = asyncio.create_task(scroll())
        await chair.wait_for(lambda c: any(e["view"]["slice"] >= 5 for e in c.of("view.changed")))
        b.process.kill()
        for name in ("surgeon", "radiotherapist"):
            resumed[name], _seconds = await rejoin(rooms[name], [b.url, a.url], cookie_of(http[name]), meeting.id)
            assert resumed[name].welcome["node"] == "node-a"
        await scrolling

        # The surgeon goes on on A (the load balancer sends the page's requests there): the fields saved on B are
        # all in the draft, a new one is saved, and the signature goes through.
        surgeon.base_url = a.url
        await surgeon.put(f"/api/cases/{case_id}/decision/fields/responsible_physician",
                          json={"value": {"name": "Dr Lefèvre", "user_id": me}, "base_version": 0})
        state = (await surgeon.get(f"/api/cases/{case_id}/decision")).json()
        for name, value in saved.items():
            assert state["draft"]["fields"][name]["value"] == value, name
        signed = await surgeon.post(f"/api/cases/{case_id}/decision/sign",
                                    json={**proof(people["surgeon"]), "seen_revision": state["draft"]["revision"]})
        assert signed.status_code == 201, signed.text
        await chair.send({"type": "view", "slice": 99})  # the last event everybody waits for
        final = {n: resumed.get(n) or rooms[n] for n in people}
        for client in final.values():
            await client.wait_for(lambda c: any(e["view"]["slice"] == 99 for e in c.of("view.changed")))
            await client.wait_for(lambda c: bool(c.of("decision.signed")))

        # No gap for anybody, across the reconnection: each history is a run of the room's log.
        log = await log_seqs(cluster.db, meeting.id)
        for name in people:
            seen = history(rooms[name], *([resumed[name]] if name in resumed else []))
            start = log.index(seen[0])
            assert seen == log[start:start + len(seen)], name
            assert seen[-1] == log[-1], name
        slices = [e["view"]["slice"] for c in (rooms["surgeon"], resumed["surgeon"]) for e in c.of("view.changed")]
        assert slices[-41:] == [*range(1, 41), 99]
        assert not any(c.errors for c in final.values()), [c.errors for c in final.values()]
    finally:
        await asyncio.gather(*(c.close() for c in (*rooms.values(), *resumed.values())), return_exceptions=True)
        await asyncio.gather(*(h.aclose() for h in http.values()), return_exceptions=True)
