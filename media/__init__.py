"""The media plane: WebRTC peers (aiortc), forwarding of audio/video without re-encoding, data channels.

Entry point: :class:`MediaHub` (one per process) -> :meth:`MediaHub.room` -> :class:`RoomMedia`.
"""

from .forwarding import AIORTC_VERSION, contract_problems
from .hub import MediaHub, OnMedia, OnSpeaker, RoomMedia
from .peer import CHANNELS, Peer

__all__ = [
    "AIORTC_VERSION",
    "CHANNELS",
    "MediaHub",
    "OnMedia",
    "OnSpeaker",
    "Peer",
    "RoomMedia",
    "contract_problems",
]
