"""The servers the tests start, and one way to wait for something.

Every server listens on a socket bound *before* it starts (``listening_socket()``): the kernel picks the port and
nobody else can take it between "find a free port" and "bind" — the race of ``bind(0); close(); bind(port)`` when
tests run side by side. The same socket goes to uvicorn in a thread (``ServerThread``), in the test's own event
loop (``serve_in_loop``), or to a child process by file descriptor (``ServerProcess``), as uvicorn's ``--fd`` and
gunicorn do. Servers that cannot be handed a socket (Orthanc) pick a port and retry when it is taken.

``until(condition, what)`` is the one bounded wait: it polls until the condition holds and, if it never does,
fails naming what it waited for. The bound stops a hung test; it is never a speed goal.

    with ServerThread(create_app(settings)) as server:
        await until(lambda: probe(server.url), "the app answers")
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar, overload

import httpx
import pytest
import uvicorn

__all__ = [
    "PATIENCE_S",
    "ServerProcess",
    "ServerThread",
    "listening_socket",
    "serve_fd",
    "serve_in_loop",
    "until",
    "until_sync",
]

T = TypeVar("T")

#: How long a condition may take on a loaded 2-core machine before a test gives up (not a speed goal).
PATIENCE_S = 20.0

HOST = "127.0.0.1"


# -- waiting ----------------------------------------------------------------------------------------------------
@overload
async def until(
    condition: Callable[[], Awaitable[T]], what: str, *, timeout: float = ..., interval: float = ...
) -> T: ...
@overload
async def until(condition: Callable[[], T], what: str, *, timeout: float = ..., interval: float = ...) -> T: ...
async def until(
    condition: Callable[[], Any], what: str, *, timeout: float = PATIENCE_S, interval: float = 0.02
) -> Any:
    """Poll ``condition()`` (plain or async) until it returns something truthy, and return that.

    Fails the test with "gave up after N s waiting for <what>" when ``timeout`` passes first.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = condition()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if loop.time() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def until_sync(condition: Callable[[], T], what: str, *, timeout: float = PATIENCE_S, interval: float = 0.02) -> T:
    """``until`` for code without an event loop (starting a thread or a process): blocks while it polls."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# -- sockets ----------------------------------------------------------------------------------------------------
def listening_socket(host: str = HOST, *, port: int = 0) -> socket.socket:
    """A TCP socket bound to a port the kernel picks on ``host``, already listening.

    Connections made before the server starts wait in the backlog; the port is ours until the socket closes.
    ``port`` only to come back on a port this test held before (a receiver that restarts, as a real one does).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its old connections may be in TIME_WAIT
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: in a test, Ctrl-C belongs to pytest."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: Any, **options: Any) -> uvicorn.Config:
    """Quiet, no WebSocket pings (tests hold sockets idle), and a lifespan that must succeed."""
    # No uvicorn access log: it writes paths and queries; the app's own (rcp.logs) writes route templates. No proxy
    # headers, as ``rcp serve``: the app reads X-Forwarded-For from RCP_TRUSTED_PROXIES only (rcp.clients).
    return uvicorn.Config(app, **({"log_level": "warning", "ws_ping_interval": None, "lifespan": "on",
                                   "access_log": False, "proxy_headers": False} | options))


# -- uvicorn in a thread ----------------------------------------------------------------------------------------
class ServerThread:
    """An ASGI app served by uvicorn in a thread of its own (its own event loop), as httpx's tests do.

    ``options`` are ``uvicorn.Config`` keywords (``lifespan="off"``, ``ws="none"``...). ``start()`` returns once
    the lifespan has run and the socket accepts; ``close()`` (or leaving the ``with``) stops it.
    ``loop`` is the server's event loop, for objects that belong to it (``asyncio.run_coroutine_threadsafe``).
    """

    def __init__(self, app: Any, **options: Any) -> None:
        self.socket = listening_socket()
        self.port: int = self.socket.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self.server = _Server(_config(app, **options))
        self.thread = threading.Thread(target=self._run, name=f"uvicorn:{self.port}", daemon=True)
        self.error: SystemExit | None = None

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        except SystemExit as exc:  # uvicorn's "the lifespan failed": reported by start(); other errors print
            self.error = exc

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.server.servers[0].get_loop()

    def start(self, *, timeout: float = PATIENCE_S) -> Self:
        self.thread.start()
        until_sync(lambda: self.server.started or not self.thread.is_alive(), f"the server on {self.url} to start",
                   timeout=timeout)
        if not self.server.started:
            raise RuntimeError(f"the server on {self.url} did not start: {self.error!r} (see the log above)")
        return self

    def close(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=15)
        self.socket.close()  # uvicorn closes it too when it ran; closing twice is harmless

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- uvicorn in the running loop --------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def serve_in_loop(app: Any, **options: Any) -> AsyncIterator[str]:
    """Serve ``app`` in the test's own event loop (objects shared with the test need no thread hop); yields the
    base URL and stops the server on exit.

        async with serve_in_loop(app, lifespan="off") as url: ...
    """
    sock = listening_socket()
    server = _Server(_config(app, **options))

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn's way of saying the lifespan failed; never end the test run
            raise RuntimeError(f"the server did not start (exit {exc.code}); see the log above") from exc

    task = asyncio.create_task(serve())
    try:
        await until(lambda: server.started or task.done(), "the in-loop server to start")
        if task.done():
            task.result()
        yield f"http://{HOST}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        sock.close()


# -- uvicorn in a child process ---------------------------------------------------------------------------------
class ServerProcess:
    """A server in its own process, handed a socket that is already listening as ``--fd N``.

    The child serves with ``serve_fd(app, fd)``. ``start()`` returns once ``GET ready`` answers (any status: the
    app is up); ``close()`` terminates it, then kills it if it does not stop.
    """

    def __init__(self, args: Sequence[str], *, ready: str = "/health", cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        sock = listening_socket()
        self.port: int = sock.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self.ready = ready
        try:
            self.process = subprocess.Popen([*args, f"--fd={sock.fileno()}"], pass_fds=[sock.fileno()], cwd=cwd,
                                            env=env)
        finally:
            sock.close()  # the child holds its own copy; the port stays taken while it lives

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.process.args!r} exited with {self.process.returncode} before answering")
        try:
            httpx.get(self.url + self.ready, timeout=2)
        except httpx.TransportError:
            return False
        return True

    def start(self, *, timeout: float = 3 * PATIENCE_S) -> Self:
        """Until the app answers; a child imports the whole service first, which takes long on a loaded machine."""
        until_sync(self._answers, f"{self.url}{self.ready} to answer", timeout=timeout, interval=0.1)
        return self

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_fd(app: Any, fd: int, **options: Any) -> None:
    """The child's side of ``ServerProcess``: serve ``app`` on the inherited listening socket until terminated.

    (uvicorn's own ``Config(fd=)`` reads the descriptor as a Unix socket; ``socket(fileno=)`` detects TCP.)
    """
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    uvicorn.Server(_config(app, **options)).run(sockets=[sock])
