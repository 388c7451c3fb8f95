"""Rules of the test suite itself, read from its source.

A test module never imports another test module: what two modules share (a room builder, a fake archive, a
fixture) lives in a helper module next to them (``node.py``, ``seeding.py``, ``helpers.py``) or in a conftest.
Importing a test module runs its tests' module code twice, re-registers its fixtures under a second name, and ties
one module's tests to another's private details.

Every server a test starts goes through tests/servers.py, which binds its socket before the server starts: no
other file under tests/ builds a uvicorn server or binds a socket itself (the old ``free_port``: bind, close, and
hope nobody takes the port before the server binds it again).
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imported_modules(source: str, module: str) -> set[str]:
    """Every module that ``module`` (its ``source``) imports: relative imports resolved, and for
    ``from package import name`` both ``package`` and ``package.name`` (``name`` may be a module)."""
    package = module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def is_test_module(name: str) -> bool:
    return name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")


def test_no_test_module_imports_another_test_module() -> None:
    offenders = sorted(
        f"{module_name(path)} imports {name}"
        for path in TESTS.rglob("test_*.py")
        for name in imported_modules(path.read_text(), module_name(path))
        if is_test_module(name) and name != module_name(path)
    )
    assert not offenders, "move what they share into a helper module next to them:\n" + "\n".join(offenders)


#: Calls that start a server or take a port, allowed only in tests/servers.py (and its own test, which binds to
#: check that a port is taken); asyncio's servers are fine when handed ``sock=listening_socket()``.
SERVER_CALLS = {"uvicorn.Server", "uvicorn.Config", "uvicorn.run", ".bind", ".start_server", ".create_server"}
SERVERS_ALLOWED = {"tests.servers", "tests.test_servers"}


def server_calls(source: str) -> set[str]:
    """The SERVER_CALLS in ``source``, by their dotted name (``.bind`` for any object's ``bind``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if any(keyword.arg == "sock" for keyword in node.keywords):
                continue  # a server on a socket bound before it starts
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            for name in (f"{owner}.{node.func.attr}", f".{node.func.attr}"):
                if name in SERVER_CALLS:
                    found.add(name)
    return found


def test_servers_are_started_through_tests_servers() -> None:
    offenders = sorted(
        f"{module_name(path)} calls {call}"
        for path in TESTS.rglob("*.py")
        if module_name(path) not in SERVERS_ALLOWED
        for call in server_calls(path.read_text())
    )
    assert not offenders, "start servers with tests/servers.py (see tests/README.md):\n" + "\n".join(offenders)


def test_the_server_rule_sees_uvicorn_and_bind() -> None:
    source = "uvicorn.Server(config)\nsock.bind(('127.0.0.1', 0))\nawait asyncio.start_server(h, '127.0.0.1', 0)\n"
    assert server_calls(source) == {"uvicorn.Server", ".bind", ".start_server"}
    assert server_calls("await loop.create_server(factory, sock=listening_socket())\n") == set()
    assert server_calls("ServerThread(app).start()\nuntil(lambda: True, 'x')\n") == set()


def test_the_rule_sees_absolute_relative_and_from_package_imports() -> None:
    """The checker itself finds each way of importing a test module (else the rule above proves nothing)."""
    source = (
        "import tests.minutes.test_routes\n"
        "from tests.room.test_state import full_room\n"
        "from .test_socket import room_server\n"
        "from ..e2e import test_room\n"
        "from tests.room import node\n"
    )
    found = {name for name in imported_modules(source, "tests.room.test_sample") if is_test_module(name)}
    assert found == {"tests.minutes.test_routes", "tests.room.test_state", "tests.room.test_socket",
                     "tests.e2e.test_room"}
