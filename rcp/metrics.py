"""What an operator watches during a meeting, in the Prometheus text format (``GET /metrics``).

Why these figures: a tumour board fails in front of twenty clinicians when a room stalls, a video path degrades,
the PACS slows down or results stop reaching the hospital. Each of those has a figure here:

========================================  ==========================================================================
``rcp_rooms`` / ``rcp_room_participants``  live rooms of this node and the sockets in them
``rcp_room_event_seconds``                 a room command, from arrival to its events persisted and fanned out
``rcp_media_forwarded_streams``            audio/video slots forwarding a publication now (paused ones excluded)
``rcp_media_forwarded_bytes_total``        RTP payload bytes sent to subscribers (``rate()`` gives the bitrate)
``rcp_frame_cache_hits_total`` / misses    the viewer's frame cache (hit rate = hits / (hits + misses))
``rcp_archive_request_seconds``            each request to the PACS (DICOMweb), by outcome
``rcp_outbox_backlog`` / ``..._age_seconds``  EPR deliveries not yet done and the oldest one's age, per receiver
``rcp_login_failures_total``               refused sign-ins (wrong credentials, throttled)
``process_*``                              the process's resident memory, CPU and open files
========================================  ==========================================================================

None of them carries patient data: labels are receiver names, outcomes and reasons, never identifiers.

The route (rcp.monitoring) is closed unless ``RCP_METRICS_TOKEN`` is set, and then answers only ``Authorization:
Bearer <token>`` (Prometheus ``authorization`` in its scrape config): the figures describe the hospital's activity.

Counters and histograms are process-wide, as Prometheus client libraries intend (one service per process); the
gauges are read from the app's own objects at each scrape, so a test running several apps in one process reads
its own rooms.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

__all__ = [
    "ARCHIVE_SECONDS",
    "CONTENT_TYPE",
    "LOGIN_FAILURES",
    "ROOM_EVENT_SECONDS",
    "Snapshot",
    "exposition",
    "observe_archive",
]

#: The exposition's media type (text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: A room command is felt as instant under 50 ms; the buckets resolve the range a meeting lives in.
ROOM_EVENT_SECONDS = Histogram(
    "rcp_room_event_seconds", "Room command to its events persisted, applied and fanned out (this node).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0), registry=None,
)
ARCHIVE_SECONDS = Histogram(
    "rcp_archive_request_seconds", "Requests to the PACS (DICOMweb), until the answer's headers arrived.",
    ["outcome"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=None,
)
LOGIN_FAILURES = Counter(
    "rcp_login_failures", "Refused sign-ins, by reason (credentials, throttled, second_factor).",
    ["reason"], registry=None,
)
_PROCESS = ProcessCollector(registry=None)
_INSTRUMENTS: tuple[Collector, ...] = (ROOM_EVENT_SECONDS, ARCHIVE_SECONDS, LOGIN_FAILURES, _PROCESS)


def observe_archive(started: float, status: int | None) -> None:
    """Record one PACS request begun at ``started`` (``time.perf_counter()``); ``status`` None: no answer."""
    outcome = "error" if status is None else f"{status // 100}xx"
    ARCHIVE_SECONDS.labels(outcome=outcome).observe(time.perf_counter() - started)


@dataclass
class Snapshot:
    """The gauges of one scrape, read from the app's objects (rooms, media, cache) and the outbox table."""

    rooms: int = 0
    participants: int = 0
    forwarded_streams: int = 0
    forwarded_bytes: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    #: receiver key -> (deliveries not done, age in seconds of the oldest one).
    outbox: dict[str, tuple[int, float]] = field(default_factory=dict)


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        yield GaugeMetricFamily("rcp_rooms", "Live rooms on this node.", value=s.rooms)
        yield GaugeMetricFamily("rcp_room_participants", "Room sockets open on this node.", value=s.participants)
        yield GaugeMetricFamily("rcp_media_forwarded_streams", "Media slots forwarding a publication now.",
                                value=s.forwarded_streams)
        yield CounterMetricFamily("rcp_media_forwarded_bytes", "RTP payload bytes forwarded to subscribers.",
                                  value=s.forwarded_bytes)
        yield CounterMetricFamily("rcp_frame_cache_hits", "Viewer frames served from the cache.", value=s.cache_hits)
        yield CounterMetricFamily("rcp_frame_cache_misses", "Viewer frames fetched from the PACS.",
                                  value=s.cache_misses)
        backlog = GaugeMetricFamily("rcp_outbox_backlog", "EPR deliveries not yet done, per receiver.",
                                    labels=["receiver"])
        age = GaugeMetricFamily("rcp_outbox_oldest_age_seconds", "Age of the oldest delivery not yet done.",
                                labels=["receiver"])
        for receiver, (count, oldest_s) in sorted(s.outbox.items()):
            backlog.add_metric([receiver], count)
            age.add_metric([receiver], oldest_s)
        yield backlog
        yield age


def exposition(snapshot: Snapshot, instruments: Iterable[Collector] = _INSTRUMENTS) -> bytes:
    """The Prometheus text exposition of the process-wide instruments and one scrape's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    for instrument in (*instruments, _SnapshotCollector(snapshot)):
        registry.register(instrument)
    return generate_latest(registry)
