"""The aiortc internals media/forwarding.py relies on: fails loudly, naming what changed, after an upgrade."""

from __future__ import annotations

from importlib.metadata import version

from media.forwarding import AIORTC_VERSION, contract_problems

from .helpers import publisher_and_viewer, until


def test_aiortc_is_the_pinned_version() -> None:
    assert version("aiortc") == AIORTC_VERSION, (
        f"aiortc {version('aiortc')} is installed but media/forwarding.py was written for {AIORTC_VERSION}: "
        "run tests/media, fix media/forwarding.py, then update AIORTC_VERSION and the pin in pyproject.toml"
    )


def test_hooks_still_match_aiortc_internals() -> None:
    problems = contract_problems()
    assert not problems, "aiortc changed under media/forwarding.py:\n- " + "\n- ".join(problems)


async def test_a_real_forward_decodes_without_any_encoder_on_the_server() -> None:
    async with publisher_and_viewer("contract", decode=True) as (room, viewer):
        await until(
            lambda: (r := viewer.showing("publisher")) is not None and r.decoded >= 5, "decoded frames"
        )
        publication = room.publication("publisher", "video")
        assert publication is not None and publication.frames > 0, (
            "the receiver tap delivered no encoded frame"
        )
        peer = room.peer("viewer")
        assert peer is not None and peer.pc is not None
        for transceiver in peer.pc.getTransceivers():
            encoder = getattr(transceiver.sender, "_RTCRtpSender__encoder", None)
            # aiortc creates its Vp8Encoder lazily, but only opens a libvpx context when asked to *encode*.
            assert encoder is None or getattr(encoder, "codec", None) is None, (
                "the server opened a video encoder: forwarded packets were re-encoded"
            )
        server_publisher = room.peer("publisher")
        assert server_publisher is not None and server_publisher.pc is not None
        for transceiver in server_publisher.pc.getTransceivers():
            track = transceiver.receiver.track
            if track is not None:
                queue = getattr(track, "_queue")  # noqa: B009 - aiortc's RemoteStreamTrack internals
                assert queue.empty(), "the server decoded received frames instead of forwarding them"
