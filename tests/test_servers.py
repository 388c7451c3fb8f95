"""tests/servers.py itself: each server holds its socket from before it starts until it stops; until() says what
it waited for."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.fixtures import orthanc
from tests.servers import ServerProcess, ServerThread, listening_socket, serve_in_loop, until, until_sync

ROOT = Path(__file__).resolve().parents[1]

#: The child's app: answers with its process id, so the test knows another process served it.
CHILD = """
import os, sys
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from tests.servers import serve_fd
app = Starlette(routes=[Route("/health", lambda request: PlainTextResponse(str(os.getpid())))])
serve_fd(app, int(sys.argv[1].removeprefix("--fd=")))
"""


def loop_id_app() -> Starlette:
    async def which(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(id(asyncio.get_running_loop())))

    return Starlette(routes=[Route("/loop", which)])


def port_taken(port: int) -> bool:
    with socket.socket() as other:
        try:
            other.bind(("127.0.0.1", port))
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE, exc
            return True
        return False


def test_a_server_thread_holds_its_port_from_before_start_until_close() -> None:
    server = ServerThread(loop_id_app())
    assert port_taken(server.port), "bound before the thread starts"
    with server:
        answer = httpx.get(f"{server.url}/loop")
        assert answer.status_code == 200
        assert answer.text == str(id(server.loop))
    assert not port_taken(server.port)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/loop")


async def test_serve_in_loop_answers_from_the_tests_own_loop() -> None:
    async with serve_in_loop(loop_id_app()) as url, httpx.AsyncClient() as http:
        answer = await http.get(f"{url}/loop")
        assert answer.text == str(id(asyncio.get_running_loop()))
        port = int(url.rsplit(":", 1)[1])
    assert not port_taken(port)


def test_a_server_process_serves_on_the_socket_it_was_handed() -> None:
    with ServerProcess([sys.executable, "-c", CHILD], cwd=ROOT) as child:
        answer = httpx.get(f"{child.url}/health")
        assert answer.text == str(child.process.pid)
    assert child.process.returncode is not None


async def test_until_returns_what_the_condition_found_and_names_what_it_gave_up_on() -> None:
    calls: list[int] = []

    async def third_time() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else None

    assert await until(third_time, "the third call") == 3
    with pytest.raises(pytest.fail.Exception, match="waiting for the moon"):
        await until(lambda: False, "the moon", timeout=0.05)
    with pytest.raises(pytest.fail.Exception, match="waiting for the sun"):
        until_sync(lambda: 0, "the sun", timeout=0.05)


@pytest.mark.orthanc
def test_orthanc_starts_again_on_other_ports_when_its_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    if not orthanc.orthanc_available():
        pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    pick = orthanc._pick_ports
    with listening_socket() as taken:
        picks = iter([(taken.getsockname()[1], pick()[1])])
        monkeypatch.setattr(orthanc, "_pick_ports", lambda: next(picks, None) or pick())
        server = orthanc.OrthancProcess()
        server.start()
        try:
            assert server.http_port != taken.getsockname()[1]
            assert httpx.get(f"{server.root}/system").status_code == 200
        finally:
            server.stop()
