"""What a load balancer and an operator read from a node: /health, /ready, /metrics, request ids (rcp.monitoring)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import secrets
from collections.abc import Iterator

import httpx
import pytest

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database
from rcp.epr.models import Delivery, DeliveryStatus
from rcp.logs import JsonFormatter, configure_logging
from tests.room.client import RoomClient, cookies_for
from tests.room.people import make_room_people
from tests.servers import ServerThread, listening_socket

TOKEN = "metrics-" + "t" * 30


@pytest.fixture(scope="module")
def watched(settings: Settings, db: Database) -> Iterator[ServerThread]:
    """The app with metrics on (its own bearer token), on the shared database."""
    with ServerThread(create_app(dataclasses.replace(settings, metrics_token=TOKEN))) as server:
        yield server


def _value(text: str, name: str, labels: str = "") -> float:
    """One sample of the exposition (``name{labels} value``); 0 when absent."""
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(?:\{\})?") + r" ([0-9.e+-]+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _scrape(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_health_is_liveness_and_ready_names_each_part(anonymous: httpx.AsyncClient) -> None:
    health = await anonymous.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = await anonymous.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "bus": "ok", "archive": "ok"}


async def test_ready_says_503_and_which_part_when_the_pacs_is_gone(settings: Settings, db: Database) -> None:
    # A PACS address where nothing answers: a socket bound, never listened on, refuses connections.
    gone = listening_socket()
    port = gone.getsockname()[1]
    gone.close()
    broken = dataclasses.replace(settings, pacs_url=f"http://127.0.0.1:{port}/dicom-web")
    with ServerThread(create_app(broken)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            ready = await http.get("/ready")
            health = await http.get("/health")
    assert ready.status_code == 503
    assert ready.headers["retry-after"].isdigit()
    body = ready.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == "ok" and body["checks"]["archive"] != "ok"
    assert str(port) not in ready.text  # the reason names no address
    assert health.status_code == 200  # alive all the same: the load balancer must not restart it for the PACS


async def test_metrics_are_off_without_a_token_and_closed_without_it(
    anonymous: httpx.AsyncClient, watched: ServerThread
) -> None:
    off = await anonymous.get("/metrics")
    assert off.status_code == 404 and "RCP_METRICS_TOKEN" in off.json()["message"]
    async with httpx.AsyncClient(base_url=watched.url, timeout=30) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"Authorization": "Bearer " + "x" * 38})).status_code == 401
        signed_in_is_not_enough = await http.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        assert signed_in_is_not_enough.status_code == 401


async def test_metrics_count_rooms_commands_logins_and_the_outbox(watched: ServerThread, db: Database) -> None:
    before = await _scrape(watched.url)
    for name in ("rcp_rooms", "rcp_room_participants", "rcp_media_forwarded_streams",
                 "rcp_media_forwarded_bytes_total", "rcp_frame_cache_hits_total", "rcp_frame_cache_misses_total",
                 "process_resident_memory_bytes"):
        assert re.search(rf"^{name}(\{{[^}}]*\}})? ", before, re.MULTILINE), name

    # A refused sign-in.
    async with httpx.AsyncClient(base_url=watched.url, timeout=30) as http:
        refused = await http.post("/api/session", json={"username": "nobody-" + secrets.token_hex(3),
                                                        "password": "wrong password"})
    assert refused.status_code in {400, 401}

    # A delivery stuck for a receiver whose URL carries credentials.
    async with db.session() as s:
        stuck = Delivery(receiver_key="mllp://eai:s3cret@eai.metrics.example:2575/x", receiver_kind="mllp",
                         document_set_id="1.2.3", document_unique_id="1.2.3.4", payload={},
                         status=DeliveryStatus.needs_attention, idempotency_key=secrets.token_hex(16))
        s.add(stuck)
        await s.commit()
        await s.refresh(stuck)

    # A room with two people in it, and one command.
    people = await make_room_people(db)
    cookies = await cookies_for(watched.url, {"chair": people.users["chair"], "surgeon": people.users["surgeon"]})
    chair = await RoomClient.open(watched.url, cookies["chair"], people.meeting.id)
    surgeon = await RoomClient.open(watched.url, cookies["surgeon"], people.meeting.id)
    try:
        await surgeon.send({"type": "floor.request"})
        await chair.wait_for(lambda c: bool(c.of("floor.requested")))
        during = await _scrape(watched.url)
    finally:
        await chair.close()
        await surgeon.close()
        async with db.session() as s:
            row = await s.get(Delivery, stuck.id)
            await s.delete(row)
            await s.commit()

    assert _value(during, "rcp_rooms") >= 1
    assert _value(during, "rcp_room_participants") >= 2
    assert _value(during, "rcp_room_event_seconds_count") > _value(before, "rcp_room_event_seconds_count")
    failures = 'reason="credentials"'
    assert _value(during, "rcp_login_failures_total", failures) > _value(before, "rcp_login_failures_total", failures)
    receiver = 'receiver="mllp://eai.metrics.example:2575"'
    assert _value(during, "rcp_outbox_backlog", receiver) == 1
    assert _value(during, "rcp_outbox_oldest_age_seconds", receiver) >= 0
    assert "s3cret" not in during and "/x" not in during


async def test_every_answer_carries_a_request_id_and_keeps_a_proxy_s(anonymous: httpx.AsyncClient) -> None:
    fresh = await anonymous.get("/health")
    assert re.fullmatch(r"[0-9a-f]{16}", fresh.headers["x-request-id"])
    kept = await anonymous.get("/health", headers={"X-Request-ID": "nginx-0123456789abcdef"})
    assert kept.headers["x-request-id"] == "nginx-0123456789abcdef"
    hostile = await anonymous.get("/health", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert "<" not in hostile.headers["x-request-id"]


def test_json_lines_carry_the_request_fields_and_nothing_else() -> None:
    record = logging.LogRecord("rcp.access", logging.INFO, __file__, 1, '%s "%s %s" %s', ("127.0.0.1", "GET",
                               "/api/cases/{case_id:int}", 200), None)
    record.http = {"method": "GET", "route": "/api/cases/{case_id:int}", "status": 200, "ms": 3.2}
    record.request_id = "abcdef0123456789"
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["level"] == "info" and entry["logger"] == "rcp.access"
    assert entry["request_id"] == "abcdef0123456789"
    assert entry["http"]["route"] == "/api/cases/{case_id:int}"
    assert "\n" not in line


def test_configure_logging_leaves_a_runner_s_handlers_alone() -> None:
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    try:
        configure_logging("INFO", json_lines=True, stream=io.StringIO())
        assert root.handlers == handlers or not handlers
    finally:
        root.setLevel(level)
