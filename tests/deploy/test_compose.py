"""deploy/compose.yaml and the Grafana dashboard, checked without a container engine (none runs here): Debian's
``docker-compose config`` resolves the file, and the dashboard asks only for metrics the service exposes."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import yaml

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database
from tests.servers import ServerThread

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = shutil.which("docker-compose")


def _resolved(tmp_path: Path) -> dict[str, object]:
    env = tmp_path / ".env"
    # The example as an operator fills it: its given values kept, each empty secret given one.
    lines = [line for line in (DEPLOY / "env.example").read_text().splitlines() if line and not line.startswith("#")]
    env.write_text("".join(line + (f"secret-{i}" if line.endswith("=") else "") + "\n"
                           for i, line in enumerate(lines)))
    assert COMPOSE, "docker-compose is installed by `make test` (Debian package docker-compose)"
    done = subprocess.run([COMPOSE, "-f", str(DEPLOY / "compose.yaml"), "--env-file", str(env), "config"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    parsed = yaml.safe_load(done.stdout)
    assert isinstance(parsed, dict)
    return parsed


def test_compose_resolves_with_two_nodes_behind_the_proxy(tmp_path: Path) -> None:
    config = _resolved(tmp_path)
    services = config["services"]
    assert isinstance(services, dict)
    assert {"postgres", "redis", "orthanc", "coturn", "migrate", "rcp1", "rcp2", "proxy"} <= set(services)
    nodes = [services["rcp1"], services["rcp2"]]
    for node in nodes:
        env = node["environment"]
        assert env["RCP_ENV"] == "production"
        assert env["RCP_PUBLIC_URL"].startswith("https://")
        assert env["RCP_REDIS_URL"].startswith("redis://redis:")  # rooms shared through Redis
        assert env["RCP_DATABASE_URL"].startswith("postgresql+psycopg://rcp_app:")  # the role that owns nothing
        assert node["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert node["healthcheck"]["test"][-1].endswith("/ready")
    assert {n["environment"]["RCP_NODE_ID"] for n in nodes} == {"rcp1", "rcp2"}
    # Only the proxy may name the client: its fixed address is the nodes' only trusted proxy.
    proxy_ip = services["proxy"]["networks"]["rcp"]["ipv4_address"]
    assert all(n["environment"]["RCP_TRUSTED_PROXIES"] == proxy_ip for n in nodes)
    mounted = {v.split(":")[1] if isinstance(v, str) else v["target"] for v in services["proxy"]["volumes"]}
    assert "/etc/nginx/conf.d/rcp.conf" in mounted


def test_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    assert COMPOSE
    empty = tmp_path / ".env"
    empty.write_text("")
    done = subprocess.run([COMPOSE, "-f", str(DEPLOY / "compose.yaml"), "--env-file", str(empty), "config"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "Missing mandatory value" in done.stderr and "set RCP_" in done.stderr  # names what to set


async def test_the_dashboard_reads_only_metrics_the_service_exposes(settings: Settings, db: Database) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "rcp-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["panels"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"  # importable: Grafana asks for the data source
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    wanted = {m for e in expressions for m in re.findall(r"\b((?:rcp|process)_[a-z_]+)", e)}
    token = "dashboard-" + "d" * 30
    with ServerThread(create_app(dataclasses.replace(settings, metrics_token=token))) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            exposed = (await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text
    # Declared families, as PromQL reads them: a counter as name_total, a histogram as name_bucket (a labelled
    # family with no sample yet, such as an empty outbox, is declared all the same).
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposed, re.MULTILINE):
        names |= {name, f"{name}_total"} if kind == "counter" else {name}
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    missing = {m for m in wanted if m not in names}
    assert not missing, f"the dashboard reads metrics /metrics does not expose: {sorted(missing)}"
    assert {"rcp_room_event_seconds_bucket", "rcp_outbox_backlog", "rcp_login_failures_total",
            "rcp_media_forwarded_bytes_total", "rcp_archive_request_seconds_bucket"} <= wanted
