"""Soak benchmark: three meetings of 15 running at once on one node for five minutes; does the server's memory grow?

Runs with no arguments and writes ``bench/results/soak.json``. The soak itself lasts ``SOAK_S`` (5 minutes), counted
from the moment every room is running; starting the node, loading the demo with its CTs and connecting 45
participants and 15 WebRTC peers comes on top (about 30 s alone, more on a shared machine), so the whole run takes a
little over five minutes: a five-minute soak cannot fit a five-minute budget with its own set-up.

- **The imaging room** (the demo's thoracic meeting, its cases' CTs in the local archive): 15 participants with
  WebRTC peers to the server's media hub (aiortc clients, media/synthetic.py: every camera on, pre-encoded VP8 at
  15 fps; three microphones; each page receiving three video tiles, as rtc.js offers), the presenter scrolling the
  current series at 2 Hz and pointing at 10 Hz, every follower fetching the frame of each slice shown through the
  frames API, as the viewer does;
- **two data-only rooms** of 15: the presenter scrolling at 2 Hz and pointing at 10 Hz, participants switching
  between following and browsing freely;
- in every room, every 30 s, one participant leaves and comes back (``?last_seq=``), and a decision field is saved.

Figures: ``soak_minutes``; ``rss_start_mb`` / ``rss_end_mb`` of the server process; ``rss_growth_mb_per_h``, the
slope of a least-squares line through the RSS sampled every 5 s over the second half of the soak, extrapolated to
an hour. The first half is the warm-up of what is bounded but fills slowly: each room's replay window
(``RoomConfig.replay_window``, 2,048 events, full after about two minutes at this soak's 16 events per second per
room), the frame cache, SQLAlchemy's compiled statements, the media hub's pools; RSS then rises in steps and
stops. ``rss_growth_mb_per_h_from_1min`` is the same slope from the first minute on, warm-up included (an upper
bound; a leak shows in both). ``events`` handled,
``frames_served``, ``video_frames_received`` (by all the peers), ``errors`` (error frames and failed requests),
``client_reconnects`` (sockets the server dropped because this process, starved on a shared machine, did not
answer their pings in time; reopened with ``?last_seq=``; a page whose socket drops loses its video peer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "soak.json"
SOAK_S = 300.0
WARMUP_S = 60.0
SAMPLE_S = 5.0
ROOM_SIZE = 15
SCROLL_HZ = 2.0
POINTER_HZ = 10.0
CHURN_S = 30.0
VIDEO_FPS = 15
TILES = 3
SPEAKERS = 3
DEMO_SLICES = 40
#: ``Soak.send`` bound to one room: (participant index, message).
Send = Callable[[int, dict[str, Any]], Awaitable[None]]


# --- server side ------------------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """The node: the service with the room and a media hub, on the demo's data folder (SQLite, local archive)."""
    from rcp.config import Settings
    from tests.factories import CHEAP_ARGON2, TOTP_STEP_S
    from tests.room.node import room_app
    from tests.servers import serve_fd

    settings = Settings(
        env="test",
        data_dir=Path(args.data_dir),
        secret_key=args.secret,
        totp_step_s=TOTP_STEP_S,
        default_locale="en",
        embedded_worker=False,
        argon2=CHEAP_ARGON2,
    )
    from rcp.room.connection import RoomConfig

    serve_fd(room_app(settings, media=True, config=RoomConfig(command_rate=100, command_burst=200)), args.fd)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB), in MB per hour."""
    xs, ys = [t for t, _ in samples], [m for _, m in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var * 3600


# --- data -------------------------------------------------------------------------------------------------------


async def prepare(data_dir: Path) -> tuple[str, dict[str, Any]]:
    """The demo with its CTs, 45 bench users with ready-made sessions, 15 of them invited to the demo's thoracic
    meeting (the imaging room) and 15 to each of two meetings of their own (data only)."""
    from sqlmodel import select

    from rcp.db import Database
    from rcp.scheduling.models import Case, Invitation
    from tests.factories import SECRET_KEY
    from tests.room.node import demo_service

    settings, imaging_meeting = await demo_service(data_dir, imaging_slices=DEMO_SLICES)
    from bench.sync import seed

    data_meetings, cookies = await seed(
        settings.database_url, SECRET_KEY, users=3 * ROOM_SIZE,
        rooms=[list(range(ROOM_SIZE, 2 * ROOM_SIZE)), list(range(2 * ROOM_SIZE, 3 * ROOM_SIZE))],
    )
    db = Database(settings.database_url)
    async with db.session() as s:
        from rcp.auth.models import User

        bench_users = (await s.exec(select(User).where(User.username.startswith("bench")))).all()
        by_name = {u.username: u for u in bench_users}
        for i in range(ROOM_SIZE):
            s.add(Invitation(meeting_id=imaging_meeting, user_id=by_name[f"bench{i}"].id))  # type: ignore[arg-type]
        cases = (await s.exec(select(Case).where(Case.meeting_id == imaging_meeting))).all()
    await db.close()
    imaged = [c for c in cases if c.study_uids]
    return SECRET_KEY, {
        "rooms": [imaging_meeting, *data_meetings],
        "cookies": cookies,
        "case_id": imaged[0].id,
        "study_uid": imaged[0].study_uids[0],
    }


# --- clients ----------------------------------------------------------------------------------------------------


class Soak:
    def __init__(self, url: str, plan: dict[str, Any]) -> None:
        self.url = url
        self.plan = plan
        self.errors = 0
        self.frames_served = 0
        self.events = 0
        self.slow_joins = 0
        self.reconnects = 0
        #: The imaging room's peers and their offers, made before any socket opens (see ``peer``).
        self.offers: list[tuple[Any, str]] = []
        self.peers: list[Any] = []
        self.stop = asyncio.Event()
        #: Set once every room runs (and the peers connect): the soak's clock starts then.
        self.ready = asyncio.Event()
        #: Set once the imaging room's peers are signalled (answered or given up).
        self.signalled = asyncio.Event()

    async def open(self, meeting_id: int, cookie: str, last_seq: int | None = None) -> Any:
        from tests.room.client import RoomClient

        for _ in range(3):  # as the page does, try again when the welcome is slow to come on a busy machine
            try:
                return await RoomClient.open(self.url, cookie, meeting_id, last_seq=last_seq)
            except TimeoutError:
                self.slow_joins += 1
        return await RoomClient.open(self.url, cookie, meeting_id, last_seq=last_seq)

    async def send(self, meeting_id: int, clients: list[Any], cookies: list[str], k: int,
                   message: dict[str, Any]) -> None:
        """Send as participant ``k``; a socket the server dropped (this process too busy to answer its pings, on a
        shared machine) is reopened with ``?last_seq=``, as the page does, and counted in ``reconnects``."""
        from websockets.exceptions import ConnectionClosed

        try:
            await clients[k].send(message)
        except ConnectionClosed:
            self.reconnects += 1
            old = clients[k]
            self.events += old.seq
            clients[k] = await self.open(meeting_id, cookies[k], last_seq=old.seq)
            await clients[k].send(message)

    async def peer(self, index: int) -> tuple[Any, str]:
        """A WebRTC peer and its offer. Made before its room socket opens: creating a peer (DTLS certificate, ICE
        gathering) holds this process for a while, and a socket whose pings go unanswered 3.5 s is dropped."""
        from media.synthetic import SyntheticParticipant

        peer = SyntheticParticipant(f"p{index}", slots=TILES, audio=index < SPEAKERS, speaking=index < SPEAKERS,
                                    count_only=True, fps=VIDEO_FPS)
        return peer, await peer.offer()

    async def video(self, client: Any, peer: Any, offer: str) -> Any:
        """Signal ``peer`` over the participant's room socket (rtc.offer / rtc.answer); a peer whose socket was
        dropped before the answer came is left out and counted (``video_peers_connected`` says how many took part)."""
        from websockets.exceptions import ConnectionClosed

        try:
            await client.send({"type": "rtc.offer", "sdp": offer})
            await client.wait_for(lambda c: c.closed.is_set() or any(f["type"] == "rtc.answer" for f in c.frames),
                                  90)
        except (ConnectionClosed, TimeoutError):
            await peer.close()
            return None
        if not any(f["type"] == "rtc.answer" for f in client.frames):
            await peer.close()
            return None
        answer = next(f for f in reversed(client.frames) if f["type"] == "rtc.answer")
        await peer.accept(answer["sdp"])
        self.peers.append(peer)
        return peer

    async def room(self, meeting_id: int, cookies: list[str], *, imaging: bool) -> None:
        import httpx

        peers = self.offers if imaging else []
        clients = [await self.open(meeting_id, cookie) for cookie in cookies]
        print(f"  meeting {meeting_id}: {len(clients)} participants in", flush=True)
        await asyncio.gather(*(self.video(c, peer, offer) for c, (peer, offer) in zip(clients, peers, strict=False)))
        if imaging:
            print(f"  meeting {meeting_id}: {len(self.peers)} of {len(peers)} WebRTC peers answered", flush=True)
            self.signalled.set()
        send = functools.partial(self.send, meeting_id, clients, cookies)
        await send(0, {"type": "floor.take"})
        frames: list[str] = []
        http = [httpx.AsyncClient(base_url=self.url, cookies=_jar(c), timeout=30) for c in cookies]
        try:
            if imaging:
                study = self.plan["study_uid"]
                await send(0, {"type": "case.set", "case_id": self.plan["case_id"]})
                listed = (await http[0].get(f"/api/imaging/studies/{study}/series")).json()
                descriptor = (await http[0].get(listed[0]["url"])).json()
                frames = [f["url"] for f in descriptor["frames"]]
            await self.ready.wait()
            await asyncio.gather(
                self._scroll(send, frames, http),
                self._point(send),
                self._churn(meeting_id, clients, cookies),
                self._browse(send, len(clients)),
            )
        finally:
            self.events += max(c.seq for c in clients)
            self.errors += sum(len(c.errors) for c in clients)
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
            await asyncio.gather(*(h.aclose() for h in http), return_exceptions=True)

    async def _scroll(self, send: Send, frames: list[str], http: list[Any]) -> None:
        index = 0
        while not self.stop.is_set():
            index += 1
            await send(0, {"type": "view", "slice": index % max(1, len(frames) or 100)})
            if frames:
                url = frames[index % len(frames)]
                answers = await asyncio.gather(*(h.get(url) for h in http[1:]), return_exceptions=True)
                for answer in answers:
                    if isinstance(answer, BaseException) or answer.status_code != 200:
                        self.errors += 1
                    else:
                        self.frames_served += 1
            await _pause(self.stop, 1 / SCROLL_HZ)

    async def _point(self, send: Send) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            await send(0, {"type": "pointer", "p": [float(i % 512), 100.0, 0]})
            await _pause(self.stop, 1 / POINTER_HZ)

    async def _browse(self, send: Send, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            await send(1 + i % (n - 1), {"type": "mode", "mode": "free" if i % 2 else "follow"})
            await _pause(self.stop, 1.0)

    async def _churn(self, meeting_id: int, clients: list[Any], cookies: list[str]) -> None:
        i = 0
        while not self.stop.is_set():
            await _pause(self.stop, CHURN_S)
            if self.stop.is_set():
                return
            i += 1
            k = 1 + i % (len(clients) - 1)
            old = clients[k]
            await old.close()
            self.events += old.seq
            clients[k] = await self.open(meeting_id, cookies[k], last_seq=old.seq)


def _jar(cookie: str) -> dict[str, str]:
    name, _, value = cookie.partition("=")
    return {name: value}


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def main() -> None:
    from tests.servers import ServerProcess

    started = time.perf_counter()
    print("soak benchmark: 3 meetings of 15 (one with images and video) on one node", flush=True)
    with tempfile.TemporaryDirectory(prefix="rcp-soak-") as tmp:
        secret, plan = await prepare(Path(tmp))
        node = ServerProcess(
            [sys.executable, str(Path(__file__).resolve()), "--serve", f"--data-dir={tmp}", f"--secret={secret}"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        ).start(timeout=180)
        soak = Soak(node.url, plan)
        cookies = plan["cookies"]
        samples: list[tuple[float, float]] = []
        try:
            soak.offers = [await soak.peer(index) for index in range(ROOM_SIZE)]
            rooms = [
                asyncio.create_task(soak.room(meeting_id, cookies[k * ROOM_SIZE:(k + 1) * ROOM_SIZE], imaging=k == 0))
                for k, meeting_id in enumerate(plan["rooms"])
            ]
            waited = time.monotonic()
            while not soak.signalled.is_set() or sum(
                p.pc.connectionState == "connected" for p in soak.peers
            ) < len(soak.peers):
                if any(r.done() for r in rooms):
                    await asyncio.gather(*rooms)  # a room failed to start: say why
                if time.monotonic() - waited > 120:
                    break  # go on with the peers that connected; the figure says how many
                await asyncio.sleep(0.2)
            connected = sum(p.pc.connectionState == "connected" for p in soak.peers)
            print(f"  set-up {time.perf_counter() - started:.0f} s; soaking {SOAK_S / 60:.0f} min", flush=True)
            soak.ready.set()
            t0 = time.monotonic()
            while (elapsed := time.monotonic() - t0) < SOAK_S:
                samples.append((elapsed, rss_mb(node.process.pid)))
                if len(samples) % 12 == 1:
                    print(f"  {elapsed:5.0f} s  server RSS {samples[-1][1]:.1f} MB", flush=True)
                await asyncio.sleep(SAMPLE_S)
            samples.append((time.monotonic() - t0, rss_mb(node.process.pid)))
            soaked = time.monotonic() - t0
            soak.stop.set()
            for ended in await asyncio.gather(*rooms, return_exceptions=True):
                if isinstance(ended, BaseException):  # a room's clients broke off: said, counted, the figures stand
                    print(f"  a room's clients ended with {ended!r}", flush=True)
                    soak.errors += 1
            video = sum(r.frames for p in soak.peers for r in p.received.values() if r.kind == "video")
        finally:
            soak.stop.set()
            await asyncio.gather(*(p.close() for p in soak.peers), return_exceptions=True)
            node.close()
    steady = [(t, m) for t, m in samples if t >= WARMUP_S]
    second_half = [(t, m) for t, m in samples if t >= soaked / 2]
    figures = {
        "soak_minutes": round(soaked / 60, 2),
        "rss_start_mb": round(samples[0][1], 1),
        "rss_after_warmup_mb": round(steady[0][1], 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "rss_growth_mb_per_h": round(slope_per_hour(second_half), 2),
        "rss_growth_mb_per_h_from_1min": round(slope_per_hour(steady), 2),
        "participants": float(3 * ROOM_SIZE),
        "events": float(soak.events),
        "frames_served": float(soak.frames_served),
        "video_frames_received": float(video),
        "errors": float(soak.errors),
        "slow_joins": float(soak.slow_joins),
        "client_reconnects": float(soak.reconnects),
        "video_peers_connected": float(connected),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"figures": figures, "rss_samples_mb": [[round(t, 1), round(m, 1)]
                                                                         for t, m in samples]}, indent=2) + "\n")
    print()
    print(f"{'figure':<26}{'value':>12}")
    for key, value in figures.items():
        print(f"{key:<26}{value:>12}")
    print(f"\nwritten {RESULTS.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Soak benchmark")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--fd", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--secret")
    cli = parser.parse_args()
    if cli.serve:
        serve(cli)
    else:
        asyncio.run(main())
