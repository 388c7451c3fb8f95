"""The media plane: WebRTC peers (aiortc), forwarding of audio/video without re-encoding, data channels.

Entry point: :class:`MediaHub` (one per process) -> :meth:`MediaHub.room` -> :class:`RoomMedia`; with several
nodes, :class:`MediaNode` (Redis placement) -> :meth:`MediaNode.room` -> :class:`PlacedRoom` (same methods).
"""

from .forwarding import AIORTC_VERSION, contract_problems
from .hub import MediaHub, OnMedia, OnSpeaker, RoomMedia
from .peer import CHANNELS, Peer
from .placement import MediaNode, PlacedRoom
from .plane import MediaPlane, open_media_plane

__all__ = [
    "AIORTC_VERSION",
    "CHANNELS",
    "MediaHub",
    "MediaNode",
    "MediaPlane",
    "OnMedia",
    "OnSpeaker",
    "Peer",
    "PlacedRoom",
    "RoomMedia",
    "contract_problems",
    "open_media_plane",
]
