"""A server node for the room tests: the lead's app with the room mounted, in a thread or in its own process.

``python -m tests.room.node --fd N --database-url URL --secret S [--redis-url redis://...] [--prefix X]``
serves one node on the listening socket N it inherits (``tests.servers.ServerProcess``) until killed; the
two-node test starts two of them on the same PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlmodel import select
from starlette.applications import Starlette

from rcp.app import create_app
from rcp.config import Settings
from rcp.db import Database, migrate
from rcp.demo import load_demo
from rcp.room import routes as room_routes
from rcp.room.connection import RoomConfig
from rcp.room.live import open_rooms
from rcp.scheduling.models import Meeting
from tests.factories import CHEAP_ARGON2, SECRET_KEY, TOTP_STEP_S
from tests.servers import ServerProcess, serve_fd

ROOT = Path(__file__).resolve().parents[2]


async def scheduled_meeting_id(db: Database, title: str = "RCP thoracique") -> int:
    """The id of the demo's scheduled meeting of that board (``rcp demo`` also loads a closed one of each)."""
    async with db.session() as s:
        found = (
            await s.exec(select(Meeting).where(Meeting.title == title, Meeting.status == "scheduled"))
        ).first()
    assert found is not None and found.id is not None, f"no scheduled {title!r} in the demo data"
    return found.id


async def demo_service(data_dir: Path, *, imaging_slices: int = 0) -> tuple[Settings, int]:
    """Settings of a service of its own in ``data_dir`` (SQLite, local archive), migrated, with the demo meetings
    (and the demo CTs attached, ``imaging_slices`` slices each, when asked); and the scheduled thoracic meeting's id."""
    settings = Settings(
        env="test",
        data_dir=data_dir,
        secret_key=SECRET_KEY,  # the factories' (their users' second factors are encrypted with it)
        totp_step_s=TOTP_STEP_S,
        default_locale="en",
        embedded_worker=False,
        argon2=CHEAP_ARGON2,  # the demo's logins at the test cost
    )
    migrate(settings.database_url)
    db = Database(settings.database_url)
    try:
        await load_demo(db, argon2=settings.argon2, secret_key=settings.secret_key)
        if imaging_slices:
            from rcp.imaging.demo import load_demo_imaging

            await load_demo_imaging(settings, db, slices=imaging_slices)
        return settings, await scheduled_meeting_id(db)
    finally:
        await db.close()


def room_app(
    settings: Settings,
    *,
    config: RoomConfig | None = None,
    channel_prefix: str = "rcp:room:",
    media: bool = False,
) -> Starlette:
    """``create_app(settings)`` plus the room routes and a Rooms in ``app.state.rooms`` (with a MediaHub if asked)."""
    app = create_app(settings)
    names = {getattr(route, "name", None) for route in app.routes}
    if "meeting_room_socket" not in names:
        app.router.routes[0:0] = room_routes.routes
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Starlette) -> AsyncIterator[Any]:
        async with inner(a) as state:
            if getattr(a.state, "rooms", None) is not None:
                await a.state.rooms.close()  # the app's own rooms: replaced by ours with the test's limits
            hub = None
            if media:
                from media.hub import MediaHub

                hub = MediaHub()
            try:
                async with open_rooms(
                    settings, a.state.db, config=config, channel_prefix=channel_prefix, media=hub
                ) as rooms:
                    a.state.rooms = rooms
                    rooms.revocations.hooks.append(a.state.auth_backend.forget_revoked)
                    yield state
            finally:
                if hub is not None:
                    await hub.close()

    app.router.lifespan_context = lifespan
    return app


class NodeProcess(ServerProcess):
    """One server node in its own process (``python -m tests.room.node``) on a socket bound here, killed in
    ``close``."""

    def __init__(
        self, *, database_url: str, secret: str, redis_url: str = "", prefix: str = "", node: str = "",
        receivers: tuple[str, ...] = (),
    ) -> None:
        args = [
            sys.executable,
            "-m",
            "tests.room.node",
            "--database-url",
            database_url,
            f"--secret={secret}",
            f"--redis-url={redis_url}",
            f"--prefix={prefix}",
            f"--node={node}",
            *(f"--receiver={url}" for url in receivers),
        ]
        super().__init__(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="a listening socket inherited from the parent")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--node", default="")
    parser.add_argument("--config", default="{}", help="RoomConfig fields as JSON")
    parser.add_argument("--receiver", action="append", default=[], help="an EPR receiver URL (RCP_EPR_RECEIVERS)")
    args = parser.parse_args()
    settings = Settings(
        env="test",
        database_url=args.database_url,
        secret_key=args.secret,
        totp_step_s=TOTP_STEP_S,
        redis_url=args.redis_url,
        embedded_worker=False,
        default_locale="en",
        argon2=CHEAP_ARGON2,
        epr_receivers=tuple(args.receiver),
        **({"node_id": args.node} if args.node else {}),
    )
    config = RoomConfig(**json.loads(args.config))
    app = room_app(settings, config=config, channel_prefix=f"{args.prefix}rcp:room:")
    serve_fd(app, args.fd)


if __name__ == "__main__":
    main()
