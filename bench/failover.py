"""Failover benchmark: one of two nodes killed (SIGKILL) during a meeting of 15, again and again.

Runs with no arguments in about two to four minutes (most of it starting nodes again) and writes
``bench/results/failover.json``:

- ``failover_rejoin_s_p95`` (and p50, max): for each participant the killed node held, seconds from its socket
  closing to its ``resumed`` on the surviving node, reconnecting as the page does (tests.room.client.rejoin: the
  page's backoff 250 ms, 500 ms, ... ±25 %, ``?last_seq=``; the load balancer's next pick is the node that
  answers);
- ``lost_events``: sequence numbers of the room's log missing from a participant's history (over its
  connections), summed over participants and kills;
- ``lost_fields``: decision fields whose save was acknowledged (200) but are not in the draft afterwards;
- ``lost_deliveries``: signed versions with no delivery to the EPR receiver once a worker has run (the surgeon signs
  on the doomed node just before each kill; the outbox row is written in the signature's transaction).

Each round: the chair (node A) opens the next case and scrolls at 20 Hz; the surgeon (node B) saves the decision
fields and signs on B; B is killed; everybody B held rejoins on A; B is started again and its participants go back
to it for the next round. The nodes reach PostgreSQL and Redis through the fault tests' proxies (tests/faults).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "failover.json"
ROUNDS = 3
PARTICIPANTS = 15
#: Specialties of the 14 clinicians invited beside the chair (the quorum first).
INVITED = ("surgeon", "medical_oncologist", "radiotherapist", *(["radiologist", "pathologist"] * 5), "pulmonologist")
DRAFT: dict[str, Any] = {
    "question": "Opérable ?",
    "proposal": {"type": "surgery", "details": "Lobectomie."},
    "guideline": {"conforms": True},
    "patient_informed": True,
    "case_status": "discussed",
}


async def run() -> tuple[dict[str, float], dict[str, Any]]:
    import sqlalchemy as sa

    from rcp.db import Database
    from rcp.epr.receivers import open_receiver
    from rcp.epr.worker import Worker
    from tests.factories import make_meeting, proof
    from tests.faults.cluster import cookie_of, log_seqs, running_cluster, signed_in
    from tests.room.client import RoomClient, rejoin

    drop = Path(tempfile.mkdtemp(prefix="rcp-failover-epr-"))
    receiver = f"file://{drop}"
    rejoin_s: list[float] = []
    lost_events = lost_fields = 0
    signed_versions = 0
    async with running_cluster(receivers=(receiver,)) as cluster:
        a = cluster.nodes[0]
        meeting = await make_meeting(cluster.db, invite=INVITED, cases=ROUNDS)
        people = [meeting.coordinator, *(i.user for i in meeting.invitations if i.user.id != meeting.coordinator.id)]
        assert len(people) == PARTICIPANTS
        surgeon = meeting.invitee("surgeon")
        # Node b holds the surgeon and every other participant but the chair's side: 7 of 15.
        on_b = {p.id for k, p in enumerate(people) if k % 2 == 1} | {surgeon.id}
        http = {p.id: await signed_in(a.url, p) for p in people}
        cookie = {p.id: cookie_of(http[p.id]) for p in people}
        histories: dict[int, list[RoomClient]] = {p.id: [] for p in people}

        def home(user_id: int) -> str:
            return cluster.urls[1] if user_id in on_b else cluster.urls[0]

        for p in people:
            histories[p.id].append(await RoomClient.open(home(p.id), cookie[p.id], meeting.id))
        chair = histories[meeting.coordinator.id][0]
        try:
            for round_ in range(ROUNDS):
                case_id = meeting.cases[round_].id
                await chair.send({"type": "case.set", "case_id": case_id})
                def opened(c: RoomClient, k: int = case_id) -> bool:
                    return any(e["case_id"] == k for e in c.of("case.changed"))

                for clients in histories.values():
                    await clients[-1].wait_for(opened, 60)
                writer = http[surgeon.id]
                writer.base_url = cluster.urls[1]
                saved: dict[str, Any] = {}
                fields = {**DRAFT, "responsible_physician": {"name": surgeon.display_name, "user_id": surgeon.id}}
                for name, value in fields.items():
                    answer = await writer.put(f"/api/cases/{case_id}/decision/fields/{name}",
                                              json={"value": value, "base_version": 0})
                    if answer.status_code == 200:
                        saved[name] = value
                state = (await writer.get(f"/api/cases/{case_id}/decision")).json()
                credentials = proof(surgeon) if round_ == 0 else {}
                signed = await writer.post(f"/api/cases/{case_id}/decision/sign",
                                           json={**credentials, "seen_revision": state["draft"]["revision"]})
                assert signed.status_code == 201, signed.text
                signed_versions += 1

                async def scroll(base: int) -> None:
                    for index in range(base, base + 60):
                        await chair.send({"type": "view", "slice": index})
                        await asyncio.sleep(0.05)

                scrolling = asyncio.create_task(scroll(1000 * (round_ + 1)))
                await asyncio.sleep(0.5)
                cluster.nodes[1].process.kill()
                moved = await asyncio.gather(*(
                    rejoin(histories[uid][-1], cluster.urls[::-1], cookie[uid], meeting.id) for uid in on_b
                ))
                for uid, (client, seconds) in zip(on_b, moved, strict=True):
                    histories[uid].append(client)
                    rejoin_s.append(seconds)
                await scrolling
                writer.base_url = cluster.urls[0]
                draft = (await writer.get(f"/api/cases/{case_id}/decision")).json()["draft"]["fields"]
                lost_fields += sum(1 for name, value in saved.items() if draft[name]["value"] != value)
                print(f"  round {round_ + 1}/{ROUNDS}: {len(on_b)} participants back on node a in "
                      f"{min(s for _, s in moved):.2f}-{max(s for _, s in moved):.2f} s", flush=True)
                if round_ + 1 < ROUNDS:
                    await asyncio.to_thread(cluster.start_node, 1)
                    for uid in on_b:  # back to node b for the next round (a page reloaded there)
                        old = histories[uid][-1]
                        await old.close()
                        histories[uid].append(await RoomClient.open(cluster.urls[1], cookie[uid], meeting.id,
                                                                    last_seq=old.seq))
                        await histories[uid][-1].wait_for(lambda c: any(f["type"] == "resumed" for f in c.frames))

            await chair.send({"type": "view", "slice": 99})
            for clients in histories.values():
                await clients[-1].wait_for(lambda c: any(e["view"]["slice"] == 99 for e in c.of("view.changed")), 60)
            log = await log_seqs(cluster.db, meeting.id)
            for clients in histories.values():
                seen = {e["seq"] for c in clients for e in c.events}
                first = min(seen)
                lost_events += sum(1 for seq in log if seq >= first and seq not in seen)
        finally:
            await asyncio.gather(*(c.close() for cs in histories.values() for c in cs), return_exceptions=True)
            await asyncio.gather(*(h.aclose() for h in http.values()), return_exceptions=True)

        # The deliveries the signatures queued: a worker (as `rcp worker` would) drains them.
        db = Database(cluster.direct_url)
        worker = Worker(db, [open_receiver(receiver)], poll_s=0.2, name="bench-epr")
        try:
            for _ in range(50):
                if not await worker.run_once():
                    break
            async with db.session() as s:
                delivered = (await s.exec(sa.text(  # type: ignore[call-overload]
                    "SELECT count(*) FROM deliveries WHERE status = 'delivered'"))).one()[0]
        finally:
            await worker.close()
            await db.close()
    lost_deliveries = signed_versions - int(delivered)
    rejoin_s.sort()
    figures = {
        "failover_rejoin_s_p50": round(statistics.median(rejoin_s), 2),
        "failover_rejoin_s_p95": round(rejoin_s[min(len(rejoin_s) - 1, int(len(rejoin_s) * 0.95))], 2),
        "failover_rejoin_s_max": round(rejoin_s[-1], 2),
        "failover_kills": float(ROUNDS),
        "failover_rejoins": float(len(rejoin_s)),
        "lost_events": float(lost_events),
        "lost_fields": float(lost_fields),
        "lost_deliveries": float(lost_deliveries),
    }
    notes = {"participants": PARTICIPANTS, "on_killed_node": len(on_b), "signed_versions": signed_versions,
             "rejoin_s": [round(s, 3) for s in rejoin_s]}
    return figures, notes


async def main() -> None:
    print("failover benchmark: node b killed mid-meeting, its participants rejoin on node a", flush=True)
    started = time.perf_counter()
    figures, notes = await run()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"figures": figures, "notes": notes}, indent=2) + "\n")
    print()
    print(f"{'figure':<28}{'value':>10}")
    for key, value in figures.items():
        print(f"{key:<28}{value:>10}")
    print(f"\nwritten {RESULTS.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
