"""The Dockerfile's build steps, run as written in a clean virtual environment (no container engine runs here).

The test reads the Dockerfile, so that it follows the file when it changes: it copies exactly what the ``COPY``
lines copy into an empty folder, creates a fresh virtual environment (the image's ``python:3.11-slim`` has nothing
installed either), runs the ``pip install`` of the ``RUN`` lines, then the ``CMD``'s ``rcp migrate`` and ``rcp
serve`` with production settings, and asks the server /health and /ready. A runtime file the ``COPY`` lines forget
(a template, a font, a migration) fails here instead of in the hospital.

Only difference: pip may use its cache here (the image's ``--no-cache-dir`` only keeps the image small).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined), as (INSTRUCTION, arguments)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_the_image_steps_build_a_service_that_serves(tmp_path: Path) -> None:
    steps = _instructions()
    app = tmp_path / "app"
    app.mkdir()
    for kind, args in steps:
        if kind == "COPY":
            *sources, destination = shlex.split(args)
            for source in sources:
                origin = ROOT / source
                # Docker's rule: a destination ending in "/" is a folder the source goes into.
                target = app / destination / origin.name if destination.endswith("/") else app / destination
                if origin.is_dir():
                    shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.so", "_wire.*"))
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(origin, target)
    installs = [m.group(0) for _, args in steps if (m := re.search(r"pip install [^&]*", args))]
    assert installs, "the Dockerfile installs the service with pip"
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    pip = tmp_path / "venv" / "bin" / "pip"
    for install in installs:
        options = [a for a in shlex.split(install)[2:] if a != "--no-cache-dir"]
        done = subprocess.run([str(pip), "install", "--quiet", *options], cwd=app, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]

    command = next(args for kind, args in steps if kind == "CMD")
    assert "rcp migrate" in command and "rcp serve" in command
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCP_")}
    env |= {"RCP_ENV": "production", "RCP_SECRET_KEY": secrets.token_urlsafe(48), "RCP_DATA_DIR": str(tmp_path / "data"),
            "RCP_PUBLIC_URL": "https://rcp.example-hospital.fr", "PATH": f"{tmp_path / 'venv' / 'bin'}:{env['PATH']}"}
    rcp = str(tmp_path / "venv" / "bin" / "rcp")
    migrated = subprocess.run([rcp, "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    with ServerProcess([rcp, "serve"], cwd=tmp_path, env=env) as server:
        assert httpx.get(server.url + "/health", timeout=30).json()["status"] == "ok"
        ready = httpx.get(server.url + "/ready", timeout=30)
        assert ready.status_code == 200, ready.text
        # The pages render from the copied templates and static files.
        assert httpx.get(server.url + "/login", timeout=30).status_code == 200
        assert httpx.get(server.url + "/static/css/app.css", timeout=30).status_code == 200
