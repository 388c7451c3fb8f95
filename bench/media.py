"""Media plane benchmark: server CPU and delivered frame rate for rooms of 4, 8 and 12, side by side with Janus.

Every participant sends the same pre-encoded 640x360 VP8 clip at 30 fps (about 600 kbit/s) and receives every
other participant's video; nothing is decoded or encoded by the clients (they count encoded frames through the
receiver tap), so the figures are the server's. The RCP media hub runs in its own process (this file with
``--serve``), signalled over stdin/stdout; Janus (Debian package, videoroom plugin, HTTP API on 127.0.0.1) carries
the same load in its own process. CPU is read from /proc/<pid>/stat (user + system) over a measuring window.

    .venv/bin/python bench/media.py        # < 5 min; writes bench/results/media.json

Figures: ``cores_<n>``, ``fps_<n>`` (RCP, n = 4, 8, 12), ``cores_per_stream`` (RCP, slope between n = 4 and 12 per
forwarded stream, between the smallest room and the largest one delivered at >= 90 % of the frame rate), ``janus_cores_<n>``, ``janus_fps_<n>``, ``janus_cores_per_stream``, ``ratio_vs_janus``,
``cycles_500_*`` (join/leave cycles: tasks, threads, fds and RSS of the server before/after).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = (4, 8, 12)
#: Each room size is measured this many times on each server, alternating, and averaged: one 8-second window
#: on a shared 2-core machine can be a third off.
ROUNDS = 2
WARMUP_S = 3.0
WINDOW_S = 8.0
CYCLES = 500
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the RCP server process ---------------------------------------------------------------------------------------
async def serve() -> None:
    """Run a MediaHub answering JSON lines on stdin: connect / disconnect / stats / close."""
    import gc
    import threading

    from media import MediaHub

    hub = MediaHub()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        request = json.loads(line)
        op = request["op"]
        if op == "connect":
            answer = await hub.room(request["room"]).connect(request["pid"], request["offer"])
            reply({"answer": answer})
        elif op == "disconnect":
            await hub.room(request["room"]).disconnect(request["pid"])
            reply({})
        elif op == "resources":
            gc.collect()
            reply(
                {
                    "tasks": len([t for t in asyncio.all_tasks() if not t.done()]),
                    "threads": len([t for t in threading.enumerate() if not t.name.startswith("ThreadPool")]),
                    "fds": len(os.listdir("/proc/self/fd")),
                    "rss_mb": rss_mb(os.getpid()),
                    "task_names": sorted(
                        t.get_coro().__qualname__  # type: ignore[union-attr]
                        for t in asyncio.all_tasks()
                        if not t.done()
                    ),
                }
            )
        elif op == "stats":
            room = hub.rooms.get(request["room"])
            publications = [p for p in (room._publications.values() if room else ())]
            slots = [slot for member in (room._members.values() if room else ()) for slot in member.slots]
            reply(
                {
                    "received": sum(p.frames for p in publications),
                    "forwarded": sum(slot.forwarded for slot in slots),
                    "dropped": sum(slot.dropped for slot in slots),
                    "plis": sum(p.keyframe_requests_sent for p in publications),
                    "lost": sum(
                        stream.packets_lost
                        for p in publications
                        if p._tap is not None
                        for stream in getattr(
                            p._tap._receiver, "_RTCRtpReceiver__remote_streams", {}
                        ).values()
                    ),
                    "packets": sum(p._tap.packets for p in publications if p._tap is not None),
                }
            )
        elif op == "close":
            await hub.close(timeout=10)
            reply({})
            return


class RcpServer:
    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", stdin=subprocess.PIPE, stdout=subprocess.PIPE, limit=1 << 24
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def call(self, **request: Any) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        await self.process.stdin.drain()
        result: dict[str, Any] = json.loads(await self.process.stdout.readline())
        return result

    async def stop(self) -> None:
        if self.process is None:
            return
        try:
            await asyncio.wait_for(self.call(op="close"), 15)
            await asyncio.wait_for(self.process.wait(), 10)
        finally:
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()


async def wait_connected(clients: list[Any], patience: float = 30.0) -> None:
    deadline = time.monotonic() + patience
    while not all(c.pc.connectionState == "connected" for c in clients):
        if time.monotonic() > deadline:
            raise RuntimeError("peers did not connect within 30 s")
        await asyncio.sleep(0.05)


def frames_received(clients: list[Any]) -> int:
    return sum(record.frames for c in clients for record in c.received.values() if record.kind == "video")


async def measure(pid: int, clients: list[Any], streams: int) -> tuple[float, float]:
    await asyncio.sleep(WARMUP_S)
    me = os.getpid()
    cpu0, mine0, frames0, t0 = cpu_seconds(pid), cpu_seconds(me), frames_received(clients), time.monotonic()
    await asyncio.sleep(WINDOW_S)
    cpu1, mine1, frames1, t1 = cpu_seconds(pid), cpu_seconds(me), frames_received(clients), time.monotonic()
    print(f"      (clients used {(mine1 - mine0) / (t1 - t0):.2f} cores)", flush=True)
    return (cpu1 - cpu0) / (t1 - t0), (frames1 - frames0) / (t1 - t0) / max(1, streams)


async def rcp_room(server: RcpServer, n: int) -> tuple[float, float]:
    from media.synthetic import SyntheticParticipant

    room = f"bench-{n}"
    clients = [SyntheticParticipant(f"p{i}", slots=n - 1, audio=False, count_only=True) for i in range(n)]
    try:
        for client in clients:
            answer = await server.call(op="connect", room=room, pid=client.name, offer=await client.offer())
            await client.accept(answer["answer"])
        await wait_connected(clients)
        before = await server.call(op="stats", room=room)
        result = await measure(server.pid, clients, n * (n - 1))
        after = await server.call(op="stats", room=room)
        window = WARMUP_S + WINDOW_S
        print(
            "      (server received {:.1f} fps per publisher, forwarded {:.1f} fps per stream, dropped {}, plis {}, "
            "packets in {}, lost {})".format(
                (after["received"] - before["received"]) / window / n,
                (after["forwarded"] - before["forwarded"]) / window / (n * (n - 1)),
                after["dropped"] - before["dropped"],
                after["plis"] - before["plis"],
                after["packets"] - before["packets"],
                after["lost"] - before["lost"],
            ),
            flush=True,
        )
        return result
    finally:
        for client in clients:
            await server.call(op="disconnect", room=room, pid=client.name)
            await client.close()


async def rcp_cycles(server: RcpServer, cycles: int) -> dict[str, float]:
    """Join/leave ``cycles`` times next to a host; the server's tasks, threads, fds and RSS before and after."""
    from media.synthetic import SyntheticParticipant

    host = SyntheticParticipant("host", slots=1, audio=False)
    answer = await server.call(op="connect", room="cycles", pid="host", offer=await host.offer())
    await host.accept(answer["answer"])

    async def cycle(i: int) -> None:
        guest = SyntheticParticipant(f"g{i}", slots=1, audio=False)
        answer = await server.call(op="connect", room="cycles", pid=guest.name, offer=await guest.offer())
        await guest.accept(answer["answer"])
        await wait_connected([guest])
        await server.call(op="disconnect", room="cycles", pid=guest.name)
        await guest.close()

    for i in range(5):
        await cycle(i)
    await asyncio.sleep(1)
    before = await server.call(op="resources")
    started = time.monotonic()
    for i in range(cycles):
        await cycle(i)
    elapsed = time.monotonic() - started
    for _ in range(20):  # closing peers finish their last tasks within a few seconds
        await asyncio.sleep(0.5)
        after = await server.call(op="resources")
        if after["tasks"] <= before["tasks"] and after["threads"] <= before["threads"]:
            break
    await server.call(op="disconnect", room="cycles", pid="host")
    await host.close()
    extra = sorted((Counter(after.pop("task_names")) - Counter(before.pop("task_names"))).elements())
    if extra:
        print(f"      (tasks left after the cycles: {extra})", flush=True)
    result = {f"cycles_{cycles}_{key}_before": float(value) for key, value in before.items()}
    result.update({f"cycles_{cycles}_{key}_after": float(value) for key, value in after.items()})
    result[f"cycles_{cycles}_per_s"] = cycles / elapsed
    return result


# -- Janus ----------------------------------------------------------------------------------------------------------
JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Janus:
    """A Janus process on loopback (HTTP API only, videoroom plugin only) and a minimal REST client."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="janus-bench-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.session: int | None = None
        self._events: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._http: Any = None

    def configure(self) -> None:
        plugins = ",".join(p.name for p in (JANUS_LIB / "plugins").glob("*.so") if "videoroom" not in p.name)
        transports = ",".join(p.name for p in (JANUS_LIB / "transports").glob("*.so") if "http" not in p.name)
        (self.folder / "janus.jcfg").write_text(
            f"""general: {{
  configs_folder = "{self.folder}"
  plugins_folder = "{JANUS_LIB / "plugins"}"
  transports_folder = "{JANUS_LIB / "transports"}"
  events_folder = "{JANUS_LIB / "events"}"
  loggers_folder = "{JANUS_LIB / "loggers"}"
  debug_level = 2
  session_timeout = 120
}}
media: {{ rtp_port_range = "20000-40000" }}
nat: {{ ice_enforce_list = "lo" }}
plugins: {{ disable = "{plugins}" }}
transports: {{ disable = "{transports}" }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
events: {{ broadcast = false }}
"""
        )
        (self.folder / "janus.transport.http.jcfg").write_text(
            f"""general: {{ json = "compact", base_path = "/janus", http = true, port = {self.port}, ip = "127.0.0.1" }}
admin: {{ admin_http = false }}
"""
        )
        (self.folder / "janus.plugin.videoroom.jcfg").write_text("general: { }\n")

    async def start(self) -> None:
        import httpx

        if shutil.which("janus") is None:
            raise RuntimeError("janus is not installed: apt-get install janus")
        self.configure()
        with (self.folder / "janus.log").open("wb") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - janus runs beside the loop, not awaited
                ["janus", "-F", str(self.folder), "-C", str(self.folder / "janus.jcfg")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}/janus", timeout=30)
        deadline = time.monotonic() + 20
        while True:
            try:
                created = await self._post("", {"janus": "create"})
                break
            except (httpx.HTTPError, ValueError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(
                        "janus did not start; its log says:\n"
                        + (self.folder / "janus.log").read_text()[-2000:]
                    ) from None
                await asyncio.sleep(0.2)
        self.session = int(created["data"]["id"])
        self._poller = asyncio.ensure_future(self._poll())

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": uuid.uuid4().hex}
        response = await self._http.post(path, json=body)
        data: dict[str, Any] = response.json()
        if data.get("janus") == "error":
            raise RuntimeError(f"janus error: {data['error']}")
        return data

    async def _poll(self) -> None:
        import httpx

        while True:
            try:
                response = await self._http.get(f"/{self.session}", params={"maxev": 20}, timeout=40)
            except (httpx.HTTPError, OSError):
                await asyncio.sleep(0.1)
                continue
            events = response.json()
            for event in events if isinstance(events, list) else [events]:
                sender = event.get("sender")
                if sender is not None:
                    self._events.setdefault(int(sender), asyncio.Queue()).put_nowait(event)

    async def attach(self) -> int:
        data = await self._post(f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        handle = int(data["data"]["id"])
        self._events.setdefault(handle, asyncio.Queue())
        return handle

    async def message(
        self,
        handle: int,
        body: dict[str, Any],
        jsep: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        want_jsep: bool = False,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        data = await self._post(f"/{self.session}/{handle}", request)
        if data.get("janus") == "success" or not wait:
            return data
        while True:  # asynchronous request: wait for the plugin's event
            event = await asyncio.wait_for(self._events[handle].get(), 30)
            if event.get("janus") == "event":
                plugindata = event.get("plugindata", {}).get("data", {})
                if "error" in plugindata:
                    raise RuntimeError(f"videoroom error: {plugindata['error']}")
                if want_jsep and "jsep" not in event:
                    continue  # e.g. a notification about other publishers
                return event

    async def detach(self, handle: int) -> None:
        await self._post(f"/{self.session}/{handle}", {"janus": "detach"})
        self._events.pop(handle, None)

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


async def janus_room(janus: Janus, n: int, room_id: int) -> tuple[float, float]:
    from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from media.forwarding import count_frames, intercept_keyframe_requests
    from media.synthetic import ClipTrack, SyntheticParticipant, _Received

    admin = await janus.attach()
    await janus.message(
        admin,
        {
            "request": "create",
            "room": room_id,
            "publishers": n + 2,
            "videocodec": "vp8",
            "bitrate": 2_000_000,
            "audiocodec": "opus",
        },
    )
    publishers: list[tuple[RTCPeerConnection, int, int]] = []
    subscribers: list[tuple[RTCPeerConnection, int]] = []
    counters: list[Any] = []
    handles = [admin]
    try:
        for i in range(n):
            pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
            track = ClipTrack()
            transceiver = pc.addTransceiver(track, direction="sendonly")
            intercept_keyframe_requests(transceiver.sender, track.request_keyframe)
            await pc.setLocalDescription(await pc.createOffer())
            handle = await janus.attach()
            handles.append(handle)
            joined = await janus.message(
                handle, {"request": "join", "ptype": "publisher", "room": room_id, "display": f"p{i}"}
            )
            feed = int(joined["plugindata"]["data"]["id"])
            event = await janus.message(
                handle,
                {"request": "publish", "audio": False, "video": True},
                {"type": "offer", "sdp": pc.localDescription.sdp},
                want_jsep=True,
            )
            await pc.setRemoteDescription(RTCSessionDescription(sdp=event["jsep"]["sdp"], type="answer"))
            publishers.append((pc, handle, feed))
        # Janus accepts subscriptions to a feed only once its media is up.
        deadline = time.monotonic() + 30
        while not all(pc.connectionState == "connected" for pc, _, _ in publishers):
            if time.monotonic() > deadline:
                raise RuntimeError("janus publishers did not connect within 30 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        feeds = [feed for _, _, feed in publishers]
        for i in range(n):
            handle = await janus.attach()
            handles.append(handle)
            streams = [{"feed": feed} for j, feed in enumerate(feeds) if j != i]
            event = await janus.message(
                handle,
                {"request": "join", "ptype": "subscriber", "room": room_id, "streams": streams},
                want_jsep=True,
            )
            pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=event["jsep"]["sdp"], type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.receiver.track is not None and transceiver.kind == "video":
                    record = _Received(kind="video", mid=transceiver.mid)
                    counters.append(record)
                    count_frames(
                        transceiver.receiver, functools.partial(SyntheticParticipant._count_marker, record)
                    )
            await pc.setLocalDescription(await pc.createAnswer())
            await janus.message(
                handle, {"request": "start"}, {"type": "answer", "sdp": pc.localDescription.sdp}, wait=False
            )
            subscribers.append((pc, handle))

        class Counted:
            def __init__(self, pc: RTCPeerConnection) -> None:
                self.pc = pc
                self.received = {str(i): r for i, r in enumerate(counters)}

        everyone = [pc for pc, _, _ in publishers] + [pc for pc, _ in subscribers]
        deadline = time.monotonic() + 30
        while not all(pc.connectionState == "connected" for pc in everyone):
            if time.monotonic() > deadline:
                states = [pc.connectionState for pc in everyone]
                raise RuntimeError(f"janus peers did not connect within 30 s: {states}")
            await asyncio.sleep(0.05)
        return await measure(janus.pid, [Counted(everyone[0])], n * (n - 1))
    finally:
        for pc in [p for p, _, _ in publishers] + [p for p, _ in subscribers]:
            await pc.close()
        for handle in handles:
            with contextlib.suppress(RuntimeError, OSError):
                await janus.detach(handle)


# -- main -------------------------------------------------------------------------------------------------------------
def per_stream(cores: dict[int, float], fps: dict[int, float], full_fps: float = 30.0) -> float | None:
    """Marginal cores per forwarded stream: slope between the smallest room and the largest one served at full rate.

    A room delivered below 90 % of the frame rate was CPU-starved (by the server or, on a shared machine, by the
    neighbours): its CPU says nothing about the cost of a stream, so it is left out. None if only one room counts.
    """
    small = min(cores)
    served = [n for n in cores if n != small and fps[n] >= 0.9 * full_fps]
    if not served:
        return None
    large = max(served)
    return (cores[large] - cores[small]) / (large * (large - 1) - small * (small - 1))


def _mean(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean cores and mean frame rate of repeated measurements of one room."""
    return sum(r[0] for r in runs) / len(runs), sum(r[1] for r in runs) / len(runs)


async def main() -> dict[str, float]:
    """Each room size is measured on the RCP server and then on Janus, back to back, ROUNDS times.

    Why interleaved: on a small shared machine the CPU a process spends for the same work drifts with what the
    neighbours do (caches, hyper-threads); measuring both servers under the same minute's conditions compares
    like with like, where one series after the other could differ by a third.
    """
    from media.synthetic import vp8_clip

    vp8_clip()  # encode the clip before measuring anything
    figures: dict[str, float] = {
        "loadavg_1min_start": round(os.getloadavg()[0], 2),
        "cpus": float(os.cpu_count() or 0),
    }
    rcp_cores: dict[int, float] = {}
    rcp_fps: dict[int, float] = {}
    janus_cores: dict[int, float] = {}
    janus_fps: dict[int, float] = {}
    server = RcpServer()
    janus: Janus | None = None
    await server.start()
    try:
        candidate = Janus()
        try:
            await candidate.start()
            janus = candidate
        except Exception as exc:  # noqa: BLE001 - no Janus here: RCP figures alone, and say why
            print(f"janus: {exc}", file=sys.stderr)
            figures["janus_error"] = str(exc)  # type: ignore[assignment]
            await candidate.stop()
        for n in SIZES:
            rcp_runs: list[tuple[float, float]] = []
            janus_runs: list[tuple[float, float]] = []
            for _ in range(ROUNDS):
                rcp_runs.append(await rcp_room(server, n))
                print(
                    f"rcp   n={n:2d}  streams={n * (n - 1):3d}  cores={rcp_runs[-1][0]:.3f}  fps={rcp_runs[-1][1]:.1f}"
                )
                if janus is not None:
                    janus_runs.append(await janus_room(janus, n, 1000 + 100 * len(janus_runs) + n))
                    cores, fps = janus_runs[-1]
                    print(
                        f"janus n={n:2d}  streams={n * (n - 1):3d}  cores={cores:.3f}  fps={fps:.1f}",
                        flush=True,
                    )
            rcp_cores[n], rcp_fps[n] = _mean(rcp_runs)
            figures[f"cores_{n}"] = round(rcp_cores[n], 3)
            figures[f"fps_{n}"] = round(rcp_fps[n], 1)
            if janus_runs:
                janus_cores[n], janus_fps[n] = _mean(janus_runs)
                figures[f"janus_cores_{n}"] = round(janus_cores[n], 3)
                figures[f"janus_fps_{n}"] = round(janus_fps[n], 1)
        rcp_per_stream = per_stream(rcp_cores, rcp_fps)
        if rcp_per_stream is not None:
            figures["cores_per_stream"] = round(rcp_per_stream, 5)
        if janus is not None:
            # Like with like: Janus's slope over the same pair of rooms as ours (when ours has one).
            pair = (
                [n for n in SIZES if n == min(SIZES) or rcp_fps.get(n, 0) >= 27]
                if rcp_per_stream
                else list(SIZES)
            )
            janus_per_stream = per_stream({n: janus_cores[n] for n in pair}, {n: janus_fps[n] for n in pair})
            if janus_per_stream is not None:
                figures["janus_cores_per_stream"] = round(janus_per_stream, 5)
                if rcp_per_stream is not None and janus_per_stream > 0:
                    figures["ratio_vs_janus"] = round(rcp_per_stream / janus_per_stream, 2)
            await janus.stop()
            janus = None
        figures.update({k: round(v, 2) for k, v in (await rcp_cycles(server, CYCLES)).items()})
    finally:
        if janus is not None:
            await janus.stop()
        await server.stop()
    figures["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
    return figures


def report(figures: dict[str, float]) -> None:
    width = max(len(k) for k in figures)
    print()
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    out = ROOT / "bench" / "results" / "media.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"figures": figures}, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        if os.environ.get("RCP_BENCH_PROFILE"):  # where the server's time goes: RCP_BENCH_PROFILE=out.prof
            import cProfile

            profile = cProfile.Profile(time.process_time)  # CPU time, not time spent waiting
            profile.runcall(asyncio.run, serve())
            profile.dump_stats(os.environ["RCP_BENCH_PROFILE"])
        else:
            asyncio.run(serve())
    else:
        started = time.monotonic()
        report(asyncio.run(main()))
        print(f"took {time.monotonic() - started:.0f} s")
