"""One cluster (two nodes, PostgreSQL and Redis behind fault proxies) for the fault tests, healed before each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.faults.cluster import Cluster, running_cluster


@pytest.fixture(scope="session")
async def cluster_once() -> AsyncIterator[Cluster]:
    async with running_cluster() as cluster:
        yield cluster


@pytest.fixture
async def cluster(cluster_once: Cluster) -> Cluster:
    """The cluster with both parts reachable and both nodes up, whatever the previous test broke."""
    cluster_once.heal()
    return cluster_once
