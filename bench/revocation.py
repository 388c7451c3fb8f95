"""Revocation benchmark: sign-out → the room socket closed, on the node signed out on and on another node.

Runs with no arguments in about a minute and writes ``bench/results/revocation.json``:

- ``revocation_ms_same_node``: the slowest of the rounds, from the ``DELETE /api/session`` request leaving the
  client to the server closing the participant's room socket, socket and sign-out on the same node (issue 13
  goal: ≤ 1,000 ms); ``revocation_ms_same_node_p50`` its median;
- ``revocation_ms_other_node`` (and ``_p50``): the same with the socket on a second node (goal: ≤ 5,000 ms).

Two server processes (tests.room.node.NodeProcess: the service app with the room) share a fresh PostgreSQL database
and Redis, the room bus that carries the revocation message (rcp.room.revocation). The clients are real WebSocket
and HTTP clients in this process. Without the message, the periodic re-check (``RoomConfig.recheck_s``) would bound
both delays at a few seconds: the figures show what the message buys.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "revocation.json"
REDIS = "redis://127.0.0.1:6379/0"
ROUNDS = 15


async def one_round(sign_out_url: str, room_url: str, meeting_id: int, username: str, password: str) -> float:
    """Sign in on ``sign_out_url``, enter the room on ``room_url``, sign out: milliseconds until the socket closed."""
    from tests.room.client import RoomClient

    async with httpx.AsyncClient(base_url=sign_out_url, timeout=30) as http:
        made = await http.post("/api/session", json={"username": username, "password": password})
        assert made.status_code == 201, made.text
        cookie = f"rcp_session={http.cookies['rcp_session']}"
        room = await RoomClient.open(room_url, cookie, meeting_id)
        try:
            assert room.welcome, f"entered the room (closed with {room.close_code})"
            started = time.perf_counter()
            out = await http.delete("/api/session", headers={"X-CSRF-Token": made.json()["csrf_token"]})
            assert out.status_code == 204, out.text
            await room.closed.wait()
            elapsed = (time.perf_counter() - started) * 1000
            assert room.close_code == 4401, room.close_code
            return elapsed
        finally:
            await room.close()


async def main() -> None:
    from rcp.db import Database, migrate
    from tests.factories import make_meeting
    from tests.fixtures.postgres import create_database, drop_database
    from tests.room.node import NodeProcess

    name = create_database()
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    nodes: list[NodeProcess] = []
    try:
        await asyncio.to_thread(migrate, url)
        db = Database(url)
        try:
            meeting = await make_meeting(db, invite=("radiologist",), cases=1)
        finally:
            await db.close()
        secret, prefix = secrets.token_urlsafe(48), f"bench-{secrets.token_hex(4)}:"
        for node in ("node-a", "node-b"):
            nodes.append(NodeProcess(database_url=url, secret=secret, redis_url=REDIS, prefix=prefix, node=node))
        for n in nodes:
            n.start()
        a, b = nodes
        user = meeting.invitee("radiologist")
        timings: dict[str, list[float]] = {"same_node": [], "other_node": []}
        for _ in range(ROUNDS):
            for where, room_url in (("same_node", a.url), ("other_node", b.url)):
                timings[where].append(await one_round(a.url, room_url, meeting.id, user.username, user.password))
    finally:
        for n in nodes:
            n.close()
        drop_database(name)

    figures: dict[str, float] = {}
    print(f"{'sign-out → socket closed':<28} {'p50 ms':>8} {'max ms':>8} {'goal ms':>8}  rounds={ROUNDS}")
    for where, goal in (("same_node", 1000), ("other_node", 5000)):
        values = timings[where]
        figures[f"revocation_ms_{where}"] = round(max(values), 1)
        figures[f"revocation_ms_{where}_p50"] = round(statistics.median(values), 1)
        print(f"{where.replace('_', ' '):<28} {statistics.median(values):>8.1f} {max(values):>8.1f} {goal:>8}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"figures": figures}, indent=2) + "\n")
    print(f"written {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
