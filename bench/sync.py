"""Room synchronisation benchmark: presenter action → follower latency, and pointer fan-out.

Runs with no arguments in about three minutes and writes ``bench/results/sync.json``:

- ``p50_ms_ws_<n>`` / ``p99_ms_ws_<n>`` for rooms of n = 10, 50, 200 participants on one node (SQLite log, the
  embedded default): the presenter sends view changes at 10 Hz, every follower times each one's arrival;
- ``p50_ms_2node_ws_50`` (and its p99): the same for 50 participants spread over two server processes sharing
  PostgreSQL and Redis pub/sub, presenter on node A; ``p50_ms_1node_pg_ws_50`` is the one-node baseline on the
  same PostgreSQL, so the cost of the second node is the difference. The two-node run is repeated
  ``TWO_NODE_RUNS`` times (fresh meeting, same nodes): ``p99_ms_2node_ws_50`` is the *worst* run, every run is in
  ``runs_2node_ws_50`` with the median over followers of its worst view change (``worst_change_p50``: close to the
  p99 when one change was late for everybody, a stall of a node rather than of a socket), and
  ``gc_pause_max_ms_2node_gen*`` is the longest garbage-collector pause either node took (rcp.heap: a full
  collection over the start-up heap was the 266 ms outlier of issue 18; ``--two-nodes-only --unfreeze`` runs the
  nodes without the fix, to see it again);
- ``pointer_20x10_delivered_ratio``: 20 rooms of 10 participants, each presenter pointing at 30 Hz for a few
  seconds; samples delivered to followers / (samples sent × followers).
- ``fanout_msgs_per_s_ws_200``: frames per second the node pushed during the 200-participant run.

Clients are real WebSocket clients (websockets 17, permessage-deflate off: compressing ~300-byte frames once per
follower costs the server more than it saves) in this process; servers are uvicorn processes
(``python bench/sync.py --serve ...``) running the service app with the room mounted and a media hub; ``dc``
followers are aiortc clients whose room messages arrive on the ``view`` data channel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "sync.json"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
VIEW_CHANGES = 40
VIEW_HZ = 10.0
POINTER_HZ = 30.0
POINTER_SECONDS = 4.0
#: Larger data-channel rooms are not attempted: every aiortc peer (DTLS, SCTP in Python) costs both processes.
DC_MAX = 50
#: The two-node measurement is repeated (issue 18): one run's p99 hides a tail that shows up once in a few runs.
TWO_NODE_RUNS = 5


# --- server side ------------------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    from starlette.applications import Starlette

    from rcp.app import create_app
    from rcp.config import Settings
    from rcp.room import routes as room_routes
    from rcp.room.connection import RoomConfig
    from rcp.room.live import open_rooms
    from tests.servers import serve_fd

    settings = Settings(
        env="test",
        database_url=args.database_url,
        secret_key=args.secret,
        redis_url=args.redis_url,
        embedded_worker=False,
        node_id=args.node,
    )
    app = create_app(settings)
    if "meeting_room_socket" not in {getattr(r, "name", None) for r in app.routes}:
        app.router.routes[0:0] = room_routes.routes
    inner = app.router.lifespan_context
    config = RoomConfig(command_rate=100, command_burst=200)
    hub = None
    if args.media:
        from media.hub import MediaHub

        hub = MediaHub()

    @asynccontextmanager
    async def lifespan(a: Starlette) -> AsyncIterator[Any]:
        async with inner(a) as state:
            if args.unfreeze:
                gc.unfreeze()  # the service before issue 18 (rcp.heap): every collection walks the start-up heap
            pauses = watch_gc()
            if getattr(a.state, "rooms", None) is not None:
                await a.state.rooms.close()
            try:
                async with open_rooms(
                    settings, a.state.db, config=config, channel_prefix=args.prefix, media=hub
                ) as rooms:
                    a.state.rooms = rooms
                    yield state
            finally:
                if hub is not None:
                    await hub.close()
                if args.gc_report:
                    Path(args.gc_report).write_text(json.dumps(pauses))

    app.router.lifespan_context = lifespan
    serve_fd(app, args.fd)


def watch_gc() -> dict[str, float]:
    """The longest garbage-collector pause of each generation from now on (ms), kept up to date in the dict."""
    pauses: dict[str, float] = {"gen0": 0.0, "gen1": 0.0, "gen2": 0.0, "gen2_count": 0.0}
    started = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        key = f"gen{info['generation']}"
        pauses[key] = max(pauses[key], (time.perf_counter() - started[0]) * 1000)
        if info["generation"] == 2:
            pauses["gen2_count"] += 1

    gc.callbacks.append(timed)
    return pauses


class Node:
    """One node in its own process, serving on a socket bound here and handed over (tests.servers.ServerProcess)."""

    def __init__(
        self,
        *,
        database_url: str,
        secret: str,
        redis_url: str = "",
        prefix: str = "rcp:room:",
        node: str,
        media: bool = False,
        unfreeze: bool = False,
    ) -> None:
        from tests.servers import ServerProcess

        self.gc_report = Path(tempfile.mkdtemp(prefix="rcp-bench-gc-")) / "gc.json"
        args = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            *(["--media"] if media else []),
            *(["--unfreeze"] if unfreeze else []),
            f"--gc-report={self.gc_report}",
            "--database-url",
            database_url,
            f"--secret={secret}",
            f"--redis-url={redis_url}",
            f"--prefix={prefix}",
            f"--node={node}",
        ]
        self.server = ServerProcess(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).start()
        self.url = self.server.url.replace("http://", "ws://")

    def close(self) -> dict[str, float]:
        """Stop the node; its garbage-collector pauses (``watch_gc``), once it wrote them on the way out."""
        self.server.close()
        try:
            pauses: dict[str, float] = json.loads(self.gc_report.read_text())
        except (OSError, ValueError):
            return {}
        finally:
            self.gc_report.unlink(missing_ok=True)
            self.gc_report.parent.rmdir()
        return pauses


# --- data -------------------------------------------------------------------------------------------------------


async def seed(
    database_url: str, secret: str, *, users: int, rooms: list[list[int]]
) -> tuple[list[int], list[str]]:
    """A board, one meeting per entry of ``rooms`` (user indexes invited), users with ready-made sessions."""
    from rcp.auth.models import LoginSession, User
    from rcp.auth.sessions import cookie_signer
    from rcp.config import Settings
    from rcp.db import Database
    from rcp.scheduling.models import Board, Invitation, Meeting

    db = Database(database_url)
    signer = cookie_signer(Settings(env="test", database_url=database_url, secret_key=secret))
    cookies: list[str] = []
    meeting_ids: list[int] = []
    async with db.session() as s:
        board = Board(name="Bench board", required_specialties=[])
        s.add(board)
        people = [
            User(
                username=f"bench{i}",
                family_name=f"Bench {i}",
                role="clinician",
                specialty="radiologist",
                hospital="CHU Bench",
            )
            for i in range(users)
        ]
        s.add_all(people)
        await s.flush()
        now = datetime.now(UTC)
        for user in people:
            sid = secrets.token_urlsafe(32)
            s.add(
                LoginSession(
                    id=sid,
                    user_id=user.id,
                    csrf_token=secrets.token_urlsafe(16),
                    created_at=now,  # type: ignore[arg-type]
                    last_seen_at=now,
                )
            )
            cookies.append(f"rcp_session={signer.dumps(sid)}")
        for members in rooms:
            meeting = Meeting(board_id=board.id, title="Bench", starts_at=now, status="live")  # type: ignore[arg-type]
            s.add(meeting)
            await s.flush()
            meeting_ids.append(meeting.id)  # type: ignore[arg-type]
            for i in members:
                s.add(Invitation(meeting_id=meeting.id, user_id=people[i].id))  # type: ignore[arg-type]
    await db.close()
    return meeting_ids, cookies


def create_pg() -> str:
    import psycopg

    name = f"rcp_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- clients ----------------------------------------------------------------------------------------------------


class Participant:
    """A light client: answers pings, timestamps view changes and pointer samples as they arrive."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.user_id = 0
        self.views: dict[int, float] = {}
        self.pointer_samples: set[float] = set()
        self.frames = 0
        self.task = asyncio.create_task(self.read())
        self.ready = asyncio.Event()
        self.answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.pc: Any = None

    def take(self, raw: str) -> None:
        now = time.perf_counter()
        self.frames += 1
        if '"view.changed"' in raw:
            frame = json.loads(raw)
            self.views.setdefault(frame["view"]["slice"], now)
        elif raw.startswith('{"type":"pointer"'):
            for sample in json.loads(raw)["s"]:
                self.pointer_samples.add(sample[1])

    async def open_data_channels(self) -> None:
        """WebRTC to the server's media hub: ``view`` (ordered) and ``pointer`` (unordered) channels."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        self.pc = RTCPeerConnection()
        view = self.pc.createDataChannel("view", ordered=True)
        pointer = self.pc.createDataChannel("pointer", ordered=False, maxRetransmits=0)
        opened = asyncio.Event()
        view.on("open", opened.set)
        view.on("message", self.take)
        pointer.on("message", self.take)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.send({"type": "rtc.offer", "sdp": self.pc.localDescription.sdp})
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=await asyncio.wait_for(self.answer, 30), type="answer")
        )
        await asyncio.wait_for(opened.wait(), 30)
        view.send(json.dumps({"type": "path", "path": "dc"}))

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._read()

    async def _read(self) -> None:
        async for raw in self.ws:
            now = time.perf_counter()
            self.frames += 1
            if '"rtc.answer"' in raw:
                self.answer.set_result(json.loads(raw)["sdp"])
            elif '"view.changed"' in raw:
                frame = json.loads(raw)
                self.views.setdefault(frame["view"]["slice"], now)
            elif raw.startswith('{"type":"pointer"'):
                for sample in json.loads(raw)["s"]:
                    self.pointer_samples.add(sample[1])
            elif '"type": "ping"' in raw:
                await self.ws.send('{"type":"pong"}')
            elif '"type": "welcome"' in raw:
                self.user_id = json.loads(raw)["user_id"]
                self.ready.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        await self.ws.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def join(url: str, meeting_id: int, cookie: str, *, dc: bool = False) -> Participant:
    from websockets.asyncio.client import connect

    ws = await connect(
        f"{url}/ws/meetings/{meeting_id}",
        additional_headers={"Cookie": cookie, "Origin": url.replace("ws://", "http://", 1)},
        max_queue=None,
        compression=None,
    )
    participant = Participant(ws)
    await asyncio.wait_for(participant.ready.wait(), 30)
    if dc:
        await participant.open_data_channels()
    return participant


async def latency(
    urls: list[str], meeting_id: int, cookies: list[str], n: int, *, dc: bool = False
) -> dict[str, float]:
    """Presenter on urls[0]; followers round-robin over the nodes; n participants in all."""
    presenter = await join(urls[0], meeting_id, cookies[0])
    followers: list[Participant] = []
    try:
        for i in range(1, n):
            followers.append(await join(urls[i % len(urls)], meeting_id, cookies[i], dc=dc))
        await presenter.send({"type": "floor.take"})
        await asyncio.sleep(1.0)
        sent: dict[int, float] = {}
        base = 1000 * len(urls) + n + (500 if dc else 0)  # fresh slice numbers for every run
        frames_before = sum(f.frames for f in followers)
        started = time.perf_counter()
        for i in range(VIEW_CHANGES):
            index = base + i
            sent[index] = time.perf_counter()
            await presenter.send(
                {"type": "view", "slice": index, "window_center": 40 + i, "window_width": 400}
            )
            await asyncio.sleep(1 / VIEW_HZ)
        await asyncio.sleep(1.5)
        elapsed = time.perf_counter() - started
        samples = [
            (f.views[index] - t0) * 1000 for f in followers for index, t0 in sent.items() if index in f.views
        ]
        missing = len(followers) * len(sent) - len(samples)
        frames = sum(f.frames for f in followers) - frames_before
        # One change late for everybody is a stall of the server (its event loop, GC, the bus); one follower late
        # on every change is that client's or its socket's. The median of the worst change tells them apart.
        per_change = [
            statistics.median([(f.views[i] - t0) * 1000 for f in followers if i in f.views] or [0.0])
            for i, t0 in sent.items()
        ]
    finally:
        await asyncio.gather(presenter.close(), *(f.close() for f in followers), return_exceptions=True)
    samples.sort()
    return {
        "p50": statistics.median(samples),
        "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "missing": float(missing),
        "frames_per_s": frames / elapsed,
        "worst_change_p50": max(per_change),
    }


async def pointer(
    url: str, meeting_ids: list[int], cookies: list[str], rooms: list[list[int]]
) -> dict[str, float]:
    groups: list[tuple[Participant, list[Participant]]] = []
    for meeting_id, members in zip(meeting_ids, rooms, strict=True):
        presenter = await join(url, meeting_id, cookies[members[0]])
        followers = [await join(url, meeting_id, cookies[i]) for i in members[1:]]
        await presenter.send({"type": "floor.take"})
        groups.append((presenter, followers))
    await asyncio.sleep(1.0)

    async def point(presenter: Participant, offset: float) -> int:
        await asyncio.sleep(offset)
        count = int(POINTER_SECONDS * POINTER_HZ)
        start = time.perf_counter()
        for i in range(count):
            await presenter.ws.send(json.dumps({"type": "pointer", "p": [float(i), 100.0, 0]}))
            # Keep the sender's rate (30 Hz) without drifting.
            await asyncio.sleep(max(0.0, start + (i + 1) / POINTER_HZ - time.perf_counter()))
        return count

    counts = await asyncio.gather(
        *(point(p, i / len(groups) / POINTER_HZ) for i, (p, _) in enumerate(groups))
    )
    await asyncio.sleep(1.0)
    expected = sum(c * len(f) for c, (_, f) in zip(counts, groups, strict=True))
    delivered = sum(len(f.pointer_samples) for _, fs in groups for f in fs)
    await asyncio.gather(*(p.close() for p, fs in groups), *(f.close() for _, fs in groups for f in fs))
    return {"ratio": delivered / expected, "sent": float(sum(counts))}


# --- main -------------------------------------------------------------------------------------------------------


async def one_node(figures: dict[str, float]) -> None:
    from rcp.db import migrate

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite3"
        await asyncio.to_thread(migrate, url)
        sizes = (10, 50, 200)
        pointer_rooms = [list(range(r * 10, r * 10 + 10)) for r in range(20)]
        secret = secrets.token_urlsafe(48)
        ids, cookies = await seed(
            url, secret, users=200, rooms=[list(range(n)) for n in sizes * 2] + pointer_rooms
        )
        node = Node(database_url=url, secret=secret, node="bench-1", media=True)
        try:
            for meeting_id, n in zip(ids[len(sizes) : 2 * len(sizes)], sizes, strict=True):
                if n > DC_MAX:
                    print(
                        f"  dc {n:>3}: not measured ({n} aiortc peers in one client process exceed this machine)"
                    )
                    continue
                started = time.perf_counter()
                try:
                    result = await asyncio.wait_for(latency([node.url], meeting_id, cookies, n, dc=True), 90)
                except TimeoutError:
                    print(f"  dc {n:>3}: did not complete within 90 s on this machine", flush=True)
                    break
                figures[f"p50_ms_dc_{n}"] = round(result["p50"], 2)
                figures[f"p99_ms_dc_{n}"] = round(result["p99"], 2)
                figures[f"missing_dc_{n}"] = result["missing"]
                print(
                    f"  dc {n:>3}: p50 {result['p50']:.2f} ms  p99 {result['p99']:.2f} ms"
                    f"  ({time.perf_counter() - started:.0f} s with set-up)",
                    flush=True,
                )
            for meeting_id, n in zip(ids, sizes, strict=False):
                result = await latency([node.url], meeting_id, cookies, n)
                figures[f"p50_ms_ws_{n}"] = round(result["p50"], 2)
                figures[f"p99_ms_ws_{n}"] = round(result["p99"], 2)
                figures[f"missing_ws_{n}"] = result["missing"]
                if n == 200:
                    figures["fanout_msgs_per_s_ws_200"] = round(result["frames_per_s"])
                print(f"  ws {n:>3}: p50 {result['p50']:.2f} ms  p99 {result['p99']:.2f} ms", flush=True)
            result = await pointer(node.url, ids[2 * len(sizes) :], cookies, pointer_rooms)
            figures["pointer_20x10_delivered_ratio"] = round(result["ratio"], 4)
            print(f"  pointer 20x10 at 30 Hz: delivered ratio {result['ratio']:.4f}", flush=True)
        finally:
            node.close()


async def two_nodes(figures: dict[str, float], runs: list[dict[str, float]]) -> None:
    """One-node baseline on PostgreSQL, then ``TWO_NODE_RUNS`` runs of 50 participants over two nodes (each in a
    fresh meeting, same nodes); the figure is the worst run's p99, every run is kept in ``runs``."""
    from rcp.db import migrate

    name = await asyncio.to_thread(create_pg)
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    nodes: list[Node] = []
    try:
        await asyncio.to_thread(migrate, url)
        secret = secrets.token_urlsafe(48)
        ids, cookies = await seed(url, secret, users=50, rooms=[list(range(50))] * (1 + TWO_NODE_RUNS))
        prefix = f"bench-{secrets.token_hex(3)}:rcp:room:"
        nodes = [
            Node(database_url=url, secret=secret, redis_url=REDIS, prefix=prefix, node=f"bench-{x}",
                 unfreeze="--unfreeze" in sys.argv)
            for x in "ab"
        ]
        single = await latency([nodes[0].url], ids[0], cookies, 50)
        figures["p50_ms_1node_pg_ws_50"] = round(single["p50"], 2)
        figures["p99_ms_1node_pg_ws_50"] = round(single["p99"], 2)
        print(f"  1 node (PostgreSQL + Redis) ws 50: p50 {single['p50']:.2f} ms  p99 {single['p99']:.2f} ms")
        for run in range(TWO_NODE_RUNS):
            double = await latency([n.url for n in nodes], ids[1 + run], cookies, 50)
            runs.append({k: round(v, 2) for k, v in double.items()})
            print(
                f"  2 nodes (PostgreSQL + Redis) ws 50, run {run + 1}/{TWO_NODE_RUNS}: p50 {double['p50']:.2f} ms"
                f"  p99 {double['p99']:.2f} ms  (worst change, median over followers: "
                f"{double['worst_change_p50']:.2f} ms)",
                flush=True,
            )
        worst = max(runs, key=lambda r: r["p99"])
        figures["p50_ms_2node_ws_50"] = round(statistics.median(r["p50"] for r in runs), 2)
        figures["p99_ms_2node_ws_50"] = worst["p99"]
        figures["p99_ms_2node_ws_50_median_run"] = round(statistics.median(r["p99"] for r in runs), 2)
        figures["missing_2node_ws_50"] = sum(r["missing"] for r in runs)
    finally:
        pauses = [node.close() for node in nodes]
        await asyncio.to_thread(drop_pg, name)
    for generation in ("gen0", "gen1", "gen2"):
        figures[f"gc_pause_max_ms_2node_{generation}"] = round(max(p.get(generation, 0.0) for p in pauses), 2)
    figures["gc_full_collections_2node"] = sum(p.get("gen2_count", 0.0) for p in pauses)
    print(f"  garbage collector, longest pause on either node: {pauses}")


def merge_two_node_runs(figures: dict[str, float], runs: list[dict[str, float]], *, unfrozen: bool) -> None:
    """``--two-nodes-only``: put the two-node figures into the committed results, leaving the one-node figures of
    the last full run as they are; with ``--unfreeze`` (the nodes as before rcp.heap) they are kept apart, under
    ``unfrozen_*``, as the "before" of the comparison."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"figures": {}, "notes": {}}
    load = os.getloadavg()[0]
    if unfrozen:
        results["figures"].update({f"unfrozen_{k}": v for k, v in figures.items() if "2node" in k})
        results["unfrozen_runs_2node_ws_50"] = runs
        results.setdefault("notes", {})["unfrozen_loadavg_1min"] = round(load, 1)
    else:
        results["figures"].update({k: v for k, v in figures.items() if "2node" in k or "1node_pg" in k})
        results["runs_2node_ws_50"] = runs
        results.setdefault("notes", {})["two_node_loadavg_1min"] = round(load, 1)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:<40}{value:>12}")
    print(f"\nmerged into {RESULTS.relative_to(ROOT)} (load average {load:.1f} on {os.cpu_count()} cores)")


async def main() -> None:
    figures: dict[str, float] = {}
    runs: list[dict[str, float]] = []
    print("room sync benchmark (WebSocket path)", flush=True)
    if "--two-nodes-only" not in sys.argv:
        await one_node(figures)
    await two_nodes(figures, runs)
    if "--two-nodes-only" in sys.argv:
        merge_two_node_runs(figures, runs, unfrozen="--unfreeze" in sys.argv)
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "figures": figures,
                "runs_2node_ws_50": runs,
                "notes": {
                    "dc": "aiortc clients in the benchmark process, data channels to the server's media hub",
                    "loadavg_1min": round(os.getloadavg()[0], 1),
                    "view_changes": VIEW_CHANGES,
                    "view_hz": VIEW_HZ,
                    "pointer_hz": POINTER_HZ,
                },
            },
            indent=2,
        )
        + "\n"
    )
    print()
    print(f"{'figure':<34}{'value':>12}")
    for key, value in figures.items():
        print(f"{key:<34}{value:>12}")
    print(f"\nwritten {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Room synchronisation benchmark")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--media", action="store_true")
    parser.add_argument("--fd", type=int, help="a listening socket inherited from the parent")
    parser.add_argument("--database-url")
    parser.add_argument("--secret")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--prefix", default="rcp:room:")
    parser.add_argument("--node", default="bench")
    parser.add_argument("--two-nodes-only", action="store_true", help="only the two-node runs; nothing written")
    parser.add_argument("--unfreeze", action="store_true", help="nodes without rcp.heap's frozen start-up heap")
    parser.add_argument("--gc-report", default="", help="(node) where to write its garbage-collector pauses")
    cli = parser.parse_args()
    if cli.serve:
        serve(cli)
    else:
        asyncio.run(main())
