"""SDP narrowing to one codec per kind, and Chrome's start bitrate in the answer (pure, no peer)."""

from __future__ import annotations

import pytest

from media.negotiation import raise_start_bitrate, restrict_codecs

CHROME_OFFER = "\r\n".join(  # noqa: FLY002 - one SDP line per row reads better
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "a=mid:0",
        "a=sendonly",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:13 CN/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45 46",
        "a=mid:1",
        "a=sendonly",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rtpmap:102 H264/90000",
        "a=rtcp-fb:102 nack pli",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
        "a=rtpmap:103 rtx/90000",
        "a=fmtp:103 apt=102",
        "a=rtpmap:45 AV1/90000",
        "a=rtpmap:46 rtx/90000",
        "a=fmtp:46 apt=45",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=mid:2",
        "a=sctp-port:5000",
        "",
    ]
)


def test_offer_keeps_vp8_with_its_rtx_and_opus_only() -> None:
    narrowed = restrict_codecs(CHROME_OFFER)
    assert "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n" in narrowed
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" in narrowed
    for gone in (
        "H264",
        "AV1",
        "apt=102",
        "apt=45",
        "G722",
        "PCMU",
        "red/",
        "telephone-event",
        "rtcp-fb:102",
    ):
        assert gone not in narrowed, gone
    for kept in (
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 nack pli",
        "a=fmtp:97 apt=96",
        "a=fmtp:111 minptime=10",
    ):
        assert kept in narrowed, kept
    # Non-media sections and attributes are untouched.
    assert "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\na=sctp-port:5000\r\n" in narrowed
    assert narrowed.startswith("v=0\r\no=- 4611731400430051336")


def test_offer_without_the_codec_is_left_for_aiortc_to_refuse() -> None:
    only_h264 = CHROME_OFFER.replace("VP8", "VP9")
    assert "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45 46" in restrict_codecs(only_h264, video=("AV2",))


def test_answer_gets_start_bitrate_on_video_codecs_only() -> None:
    answer = (
        "v=0\r\nm=audio 9 X 111\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 X 96 97\r\n"
        "a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
    )
    raised = raise_start_bitrate(answer, start_kbps=900)
    assert "a=rtpmap:96 VP8/90000\r\na=fmtp:96 x-google-start-bitrate=900;" in raised
    assert "a=fmtp:97 apt=96\r\n" in raised  # RTX untouched
    assert "a=fmtp:111" not in raised
    assert raise_start_bitrate(raised, start_kbps=900) == raised  # idempotent


def test_existing_fmtp_is_extended() -> None:
    answer = "v=0\r\nm=video 9 X 102\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\n"
    assert "a=fmtp:102 packetization-mode=1;x-google-start-bitrate=800" in raise_start_bitrate(answer)


def test_bitrates_are_checked() -> None:
    with pytest.raises(ValueError, match="min <= start <= max"):
        raise_start_bitrate("v=0\r\n", start_kbps=100, min_kbps=200)
