"""Two real server nodes whose PostgreSQL and Redis can fail on cue: the fault tests' meeting room.

Each node is its own process (tests.room.node.NodeProcess) on a database of its own on the machine's PostgreSQL and
on the machine's Redis, both reached through a :class:`tests.fixtures.faults.FaultProxy`, so that a test can make
either "restart" without touching the shared servers. The test's own rows go straight to the database.

    async with running_cluster() as cluster:
        meeting = await make_meeting(cluster.db)
        cluster.pg.cut(); ...; cluster.pg.restore()
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from rcp.db import Database, migrate
from tests.factories import SECRET_KEY, MadeUser, credentials
from tests.fixtures.faults import FaultProxy
from tests.fixtures.postgres import create_database, drop_database
from tests.room.client import RoomClient
from tests.room.node import NodeProcess

__all__ = ["Cluster", "cookie_of", "history", "log_seqs", "running_cluster", "signed_in"]

PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
#: Two nodes importing the whole service at once take 15 s alone and over a minute when the machine is shared.
STARTUP_S = 150.0


@dataclass
class Cluster:
    name: str
    #: The database as the test sees it, not through the proxy (for rows and workers of its own).
    direct_url: str
    pg: FaultProxy
    redis: FaultProxy
    prefix: str
    db: Database
    nodes: list[NodeProcess] = field(default_factory=list)
    #: EPR receivers the nodes write signed decisions' deliveries for (RCP_EPR_RECEIVERS); none: the file drop.
    receivers: tuple[str, ...] = ()

    @property
    def node_database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg.port}/{self.name}"

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start_node(self, index: int) -> NodeProcess:
        """Start (or start again, after a kill) node ``index`` (0: "node-a", 1: "node-b"), until it answers."""
        return self.spawn_node(index).start(timeout=STARTUP_S)

    def spawn_node(self, index: int) -> NodeProcess:
        """Launch node ``index`` without waiting for it to answer (``.start()`` waits)."""
        node = NodeProcess(
            database_url=self.node_database_url,
            secret=SECRET_KEY,  # the factories' (their users' second factors are encrypted with it)
            redis_url=f"redis://127.0.0.1:{self.redis.port}/0",
            prefix=self.prefix,
            node=f"node-{'ab'[index]}",
            receivers=self.receivers,
        )
        if index < len(self.nodes):
            self.nodes[index].close()
            self.nodes[index] = node
        else:
            self.nodes.append(node)
        return node

    def heal(self) -> None:
        """Both parts reachable and both nodes running: what each test starts from, whatever the last one did."""
        self.pg.restore()
        self.redis.restore()
        for index, node in enumerate(self.nodes):
            if node.process.poll() is not None:
                self.start_node(index)


@asynccontextmanager
async def running_cluster(*, receivers: tuple[str, ...] = ()) -> AsyncIterator[Cluster]:
    name = await asyncio.to_thread(create_database)
    direct = f"postgresql://postgres@{PG[0]}:{PG[1]}/{name}"
    pg, redis = FaultProxy(*PG).start(), FaultProxy(*REDIS).start()
    cluster = Cluster(name=name, direct_url=direct, pg=pg, redis=redis, prefix=f"faults-{secrets.token_hex(4)}:", db=Database(direct),
                      receivers=receivers)
    try:
        await asyncio.to_thread(migrate, direct)
        spawned = [cluster.spawn_node(0), cluster.spawn_node(1)]
        await asyncio.gather(*(asyncio.to_thread(node.start, timeout=STARTUP_S) for node in spawned))
        yield cluster
    finally:
        for node in cluster.nodes:
            node.close()
        await cluster.db.close()
        pg.close()
        redis.close()
        await asyncio.to_thread(drop_database, name)


async def log_seqs(db: Database, meeting_id: int) -> list[int]:
    """The room's event log as stored: every sequence number of the meeting, in order."""
    import sqlalchemy as sa

    async with db.session() as s:
        rows = await s.exec(  # type: ignore[call-overload]
            sa.text("SELECT seq FROM room_events WHERE meeting_id = :m ORDER BY seq"), params={"m": meeting_id}
        )
        return [int(r[0]) for r in rows]


def history(*clients: RoomClient) -> list[int]:
    """The sequence numbers one participant applied over several connections, in order of arrival."""
    return [e["seq"] for c in clients for e in c.events]


async def signed_in(url: str, user: MadeUser) -> httpx.AsyncClient:
    """An API client signed in as ``user`` on the node at ``url`` (the CSRF header set; the cookie works on every
    node: sessions are in the shared database)."""
    client = httpx.AsyncClient(base_url=url, timeout=30)
    response = await client.post("/api/session", json=credentials(user.username, user.password))
    assert response.status_code == 201, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


def cookie_of(client: httpx.AsyncClient) -> str:
    return f"rcp_session={client.cookies['rcp_session']}"
