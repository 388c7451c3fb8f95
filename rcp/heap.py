"""The process heap and the cyclic garbage collector: why a node freezes what it built at start-up.

CPython's collector stops the whole process while it walks a generation. A node holds about 270,000 long-lived
objects once the service is imported and its app built (SQLAlchemy's metadata, pydicom's dictionaries, aiortc,
the templates); a full (generation 2) collection walks every one of them, which takes 60 ms on an idle core and
300-500 ms on the shared 2-core machine — long enough to hold one room event back for every participant at once.
That is what ``bench/sync.py`` saw as a rare p99 outlier (266 ms at 50 followers over two nodes, issue 18): all
followers late by the same amount on a single view change, a stall of the process, not of a socket.

``gc.freeze()`` (Python 3.7+, "Garbage Collector interface") moves every object alive at that moment to a permanent
generation that collections ignore. Done once the app has started, full collections walk only what was allocated
since — the live rooms' own objects — and stay in the low milliseconds. Nothing is leaked: frozen objects are the
ones the process keeps until it exits anyway, and cycles created later are still collected.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["settle_heap"]

logger = logging.getLogger(__name__)


_settled = False


def settle_heap() -> int:
    """Collect once, then freeze what survives (see the module docstring); returns how many objects were frozen.

    Call it when start-up is over (the app's lifespan, before it yields). Only the first call in a process does
    it: a process that builds several apps (the test suite) freezes once, so that the apps it later drops are
    still collected.
    """
    global _settled
    if _settled:
        return gc.get_freeze_count()
    _settled = True
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("start-up heap frozen: %d objects left out of later garbage collections", frozen)
    return frozen
