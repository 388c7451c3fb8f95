"""The ``rcp`` command as an operator runs it: migrate, demo (twice), user add, token create, audit export."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rcp.auth.passwords import Argon2Cost
from rcp.config import Settings, SettingsError


def rcp(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCP_")}
    env["RCP_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "rcp.cli", *args], input=stdin, env=env, check=False, capture_output=True,
                          text=True, timeout=300)


# Nine ``rcp`` processes, each importing the whole service: more than the default per-test timeout when the
# machine's two cores are shared.
@pytest.mark.timeout(300)
def test_migrate_demo_user_token_audit(tmp_path: Path) -> None:
    assert rcp(tmp_path, "migrate").returncode == 0
    first = rcp(tmp_path, "demo")
    assert first.returncode == 0, first.stderr
    assert "secretariat" in first.stdout and "rcp-demo-2026" in first.stdout
    second = rcp(tmp_path, "demo")
    assert second.returncode == 0 and "already present" in second.stdout
    # A name is given in parts, or whole with the family name in capitals; never guessed from "Claire Nouveau".
    unsplittable = rcp(tmp_path, "user", "add", "dr.nouveau", "--role", "clinician", "--display-name",
                       "Dr Claire Nouveau", "--password-stdin", stdin="a-long-password-1\n")
    assert unsplittable.returncode != 0 and "--display-name" in unsplittable.stderr
    added = rcp(tmp_path, "user", "add", "dr.nouveau", "--role", "clinician", "--specialty", "pathologist",
                "--hospital", "CH Test", "--display-name", "Dr Claire NOUVEAU", "--password-stdin",
                stdin="a-long-password-1\n")
    assert added.returncode == 0, added.stderr
    bad_rpps = rcp(tmp_path, "user", "name", "dr.nouveau", "--family-name", "Nouveau", "--rpps", "10003334828")
    assert bad_rpps.returncode != 0 and "--rpps" in bad_rpps.stderr and "check digit" in bad_rpps.stderr
    named = rcp(tmp_path, "user", "name", "dr.nouveau", "--family-name", "Nouveau", "--given-name", "Claire",
                "--prefix", "Pr", "--rpps", "10003334827")
    assert named.returncode == 0, named.stderr
    dup = rcp(tmp_path, "user", "add", "dr.nouveau", "--role", "clinician", "--password-stdin",
              stdin="a-long-password-1\n")
    assert dup.returncode != 0 and "already exists" in dup.stderr
    short = rcp(tmp_path, "user", "add", "dr.court", "--role", "clinician", "--password-stdin", stdin="short\n")
    assert short.returncode != 0 and "at least" in short.stderr
    wrong = rcp(tmp_path, "user", "add", "x", "--role", "wizard", "--password-stdin", stdin="a-long-password-1\n")
    assert wrong.returncode != 0 and "--role" in wrong.stderr
    # Only an administrator (on the server) sets an account's e-mail address; a guest has no password.
    assert rcp(tmp_path, "user", "email", "dr.nouveau", "c.nouveau@ch-test.fr").returncode == 0
    bad = rcp(tmp_path, "user", "email", "dr.nouveau", "not an address")
    assert bad.returncode != 0 and "e-mail" in bad.stderr
    guest = rcp(tmp_path, "user", "add", "guest-x", "--role", "guest", "--password-stdin", stdin="a-long-password-1\n")
    assert guest.returncode != 0 and "no password" in guest.stderr
    token = rcp(tmp_path, "token", "create", "interface-dpi")
    assert token.returncode == 0 and token.stdout.startswith("rcp_")
    assert rcp(tmp_path, "audit", "export").returncode == 0


def test_production_refuses_to_start_without_a_secret() -> None:
    https = {"RCP_PUBLIC_URL": "https://rcp.example.org"}
    with pytest.raises(SettingsError, match="RCP_SECRET_KEY"):
        Settings.from_env({"RCP_ENV": "production"} | https)
    with pytest.raises(SettingsError, match="RCP_SECRET_KEY"):
        Settings(env="production", secret_key="short", public_url="https://rcp.example.org")
    ok = Settings.from_env({"RCP_ENV": "production", "RCP_SECRET_KEY": "k" * 40} | https)
    assert ok.production and ok.tls


def test_settings_name_the_bad_variable() -> None:
    with pytest.raises(SettingsError, match="RCP_SESSION_IDLE_S"):
        Settings.from_env({"RCP_SESSION_IDLE_S": "soon"})
    with pytest.raises(SettingsError, match="RCP_EMBEDDED_WORKER"):
        Settings.from_env({"RCP_EMBEDDED_WORKER": "maybe"})
    settings = Settings.from_env({"RCP_EPR_RECEIVERS": "file:///tmp/a, mllp://h:2575", "RCP_DATA_DIR": "/tmp/x"})
    assert settings.epr_receivers == ("file:///tmp/a", "mllp://h:2575")
    assert settings.database_url == "sqlite:////tmp/x/rcp.sqlite3"


def test_argon2_cost_is_a_setting_with_the_production_default() -> None:
    assert Settings.from_env({}).argon2 == Argon2Cost(time_cost=3, memory_kib=65536, parallelism=4)
    raised = Settings.from_env({"RCP_ARGON2_TIME_COST": "4", "RCP_ARGON2_MEMORY_KIB": "131072"}).argon2
    assert (raised.time_cost, raised.memory_kib, raised.parallelism) == (4, 131072, 4)
    with pytest.raises(SettingsError, match="RCP_ARGON2_MEMORY_KIB"):
        Settings.from_env({"RCP_ARGON2_MEMORY_KIB": "lots"})
    with pytest.raises(SettingsError, match="8 KiB per lane"):
        Settings.from_env({"RCP_ARGON2_MEMORY_KIB": "16", "RCP_ARGON2_PARALLELISM": "4"})
    # The test suite's cost never reaches production.
    with pytest.raises(SettingsError, match="RCP_ARGON2_MEMORY_KIB"):
        Settings.from_env({"RCP_ENV": "production", "RCP_SECRET_KEY": "k" * 40, "RCP_ARGON2_MEMORY_KIB": "8",
                           "RCP_PUBLIC_URL": "https://rcp.example.org",
                           "RCP_ARGON2_PARALLELISM": "1"})
