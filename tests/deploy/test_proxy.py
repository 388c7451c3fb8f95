"""deploy/nginx/rcp.conf, the very file compose mounts, in front of two ``rcp serve`` processes sharing PostgreSQL
and Redis, over TLS with a test certificate: both nodes answer through it, the room's WebSocket is upgraded, the
request id and HSTS come through, /metrics stays inside, and losing a node loses no request.

Only the two included files differ from compose: ``rcp/listen.conf`` (a free loopback port instead of 443; Debian's
nginx 1.22 has no ``http2 on``) and ``rcp/upstream.conf`` (the two processes' ports instead of rcp1/rcp2).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rcp.clock import SystemClock
from tests.factories import credentials
from tests.fixtures.postgres import create_database, drop_database
from tests.servers import ServerProcess, listening_socket, until_sync

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(300)]


def _certificate(folder: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (what the hospital's PKI would issue for the public name)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rcp.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True)
    (folder / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return folder / "fullchain.pem"


@dataclass
class Proxy:
    url: str
    ca: Path
    prefix: Path
    nodes: list[ServerProcess]
    envs: list[dict[str, str]]
    process: subprocess.Popen[bytes]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca)), timeout=30)

    def point_at_nodes(self) -> None:
        """Write the nodes' ports into rcp/upstream.conf and reload nginx (as an operator replacing a node)."""
        (self.prefix / "rcp" / "upstream.conf").write_text(
            "".join(f"server 127.0.0.1:{n.port} max_fails=1 fail_timeout=5s;\n" for n in self.nodes))
        subprocess.run([NGINX, "-p", str(self.prefix), "-c", "nginx.conf", "-s", "reload"], check=True,
                       capture_output=True)

    def wait_for_both(self) -> None:
        with self.client() as http:
            def both_nodes() -> bool:
                answers = [http.get("/health") for _ in range(6)]
                return {a.json()["node"] for a in answers if a.status_code == 200} == {"rcp1", "rcp2"}

            until_sync(both_nodes, "both nodes behind the proxy", timeout=60)


def _start_nginx(prefix: Path, upstreams: list[int]) -> tuple[subprocess.Popen[bytes], int]:
    """nginx cannot be handed a socket: pick a free port, and pick again if another process took it meanwhile."""
    (prefix / "rcp" / "upstream.conf").write_text(
        "".join(f"server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;\n" for port in upstreams))
    for _attempt in range(5):
        probe = listening_socket()
        port = probe.getsockname()[1]
        probe.close()
        (prefix / "rcp" / "listen.conf").write_text(f"listen 127.0.0.1:{port} ssl;\n")
        log = prefix / "error.log"
        with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen([NGINX, "-p", str(prefix), "-c", "nginx.conf"], stderr=subprocess.STDOUT,
                                       stdout=sink)

        def answering(port: int = port, process: subprocess.Popen[bytes] = process) -> bool:
            if process.poll() is not None:
                return True
            try:
                httpx.get(f"https://127.0.0.1:{port}/health", verify=False, timeout=2)
            except httpx.TransportError:
                return False
            return True

        until_sync(answering, "nginx to answer", timeout=30)
        if process.poll() is None:
            return process, port
        if "in use" not in log.read_text(errors="replace"):
            raise RuntimeError(f"nginx did not start: {log.read_text(errors='replace')[-800:]}")
    raise RuntimeError("nginx found no free port in five tries")


def _node(env: dict[str, str]) -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "rcp.cli", "serve"], cwd=ROOT, env=env).start()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    folder = tmp_path_factory.mktemp("proxy")
    database = create_database()
    url = f"postgresql://postgres@127.0.0.1:5432/{database}"
    secret = secrets.token_urlsafe(48)
    base_env = {**os.environ, "PYTHONPATH": str(ROOT), "RCP_DATABASE_URL": url, "RCP_SECRET_KEY": secret,
                "RCP_REDIS_URL": "redis://127.0.0.1:6379/0", "RCP_ENV": "test", "RCP_TOTP_STEP_S": "1",
                "RCP_ARGON2_MEMORY_KIB": "64", "RCP_ARGON2_TIME_COST": "1", "RCP_DATA_DIR": str(folder / "data")}
    for command in (["migrate"], ["demo"]):
        done = subprocess.run([sys.executable, "-m", "rcp.cli", *command], env=base_env, cwd=ROOT,
                              capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    prefix = folder / "nginx"
    (prefix / "conf.d").mkdir(parents=True)
    (prefix / "logs").mkdir()
    shutil.copyfile(ROOT / "deploy" / "nginx" / "rcp.conf", prefix / "conf.d" / "rcp.conf")
    ca = _certificate(prefix / "rcp" / "tls")
    (prefix / "nginx.conf").write_text(
        f"daemon off;\npid {prefix}/nginx.pid;\nerror_log stderr warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n"
        f"  include conf.d/rcp.conf;\n}}\n")
    nodes: list[ServerProcess] = []
    envs: list[dict[str, str]] = []
    process: subprocess.Popen[bytes] | None = None
    try:
        # The public URL names the proxy; its port is known only once nginx runs, so the nodes start second.
        probe_nodes = [listening_socket(), listening_socket()]
        ports = [s.getsockname()[1] for s in probe_nodes]
        for s in probe_nodes:
            s.close()
        process, port = _start_nginx(prefix, ports)
        public = f"https://127.0.0.1:{port}"
        for name in ("rcp1", "rcp2"):
            env = {**base_env, "RCP_NODE_ID": name, "RCP_PUBLIC_URL": public, "RCP_TRUSTED_PROXIES": "127.0.0.1",
                   "RCP_EMBEDDED_WORKER": "false"}
            envs.append(env)
            nodes.append(_node(env))
        # nginx was pointed at ports picked before the nodes existed: point it at theirs and reload.
        result = Proxy(url=public, ca=ca, prefix=prefix, nodes=nodes, envs=envs, process=process)
        result.point_at_nodes()
        result.wait_for_both()
        yield result
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)
            process.wait(timeout=10)
        for node in nodes:  # the same list as the Proxy's: a replaced node is closed too
            node.close()
        drop_database(database)


def test_both_nodes_answer_through_tls_with_the_service_s_headers(proxy: Proxy) -> None:
    with proxy.client() as http:
        answers = [http.get("/health") for _ in range(8)]
        assert {a.json()["node"] for a in answers} == {"rcp1", "rcp2"}
        login = http.get("/login")
        assert login.status_code == 200
        assert "max-age" in login.headers["strict-transport-security"]
        # nginx's $request_id (32 hex digits) reaches the service and comes back: one id in both logs.
        assert len(login.headers["x-request-id"]) == 32
        assert http.get("/metrics").status_code == 404  # the scraper reaches the nodes directly


async def test_the_room_socket_is_upgraded_through_the_proxy(proxy: Proxy) -> None:
    context = ssl.create_default_context(cafile=str(proxy.ca))
    async with httpx.AsyncClient(base_url=proxy.url, verify=context, timeout=30) as http:
        signed = await http.post("/api/session", json=credentials("secretariat", clock=SystemClock()))
        assert signed.status_code == 201, signed.text
        meetings = (await http.get("/api/meetings")).json()
        listed = meetings["items"] if isinstance(meetings, dict) else meetings
        meeting_id = next(m["id"] for m in listed if m["status"] in {"scheduled", "live"})
        cookie = f"rcp_session={http.cookies['rcp_session']}"
    url = proxy.url.replace("https://", "wss://") + f"/ws/meetings/{meeting_id}"
    async with websockets.connect(url, ssl=context, additional_headers={"Cookie": cookie, "Origin": proxy.url},
                                  open_timeout=30) as ws:
        first = json.loads(await ws.recv())
    assert first["type"] == "welcome", first


def test_a_node_killed_loses_no_request(proxy: Proxy) -> None:
    victim = proxy.nodes[0]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    try:
        with proxy.client() as http:
            answers = [http.get("/health") for _ in range(10)]
        assert all(a.status_code == 200 for a in answers)
        assert {a.json()["node"] for a in answers} == {"rcp2"}
    finally:
        # The operator's replacement, so that the module's other tests find two nodes whatever the order.
        proxy.nodes[0] = _node(proxy.envs[0])
        proxy.point_at_nodes()
        proxy.wait_for_both()
