"""SDP rewriting for a forwarding server: one codec per kind, and a sensible start bitrate.

Why: the server forwards encoded frames without re-encoding them, so every publisher and every subscriber of a
room must agree on the *same* codec per kind. We narrow the client's offer to VP8 (video) and Opus (audio) before
aiortc sees it; aiortc then answers with that codec only, the browser sends it, and the server's senders pack it
as is. VP8 is chosen because every WebRTC browser must implement it (RFC 7742 section 5) and Debian's Chromium
ships it, while H.264 availability depends on the build.

Chrome starts sending video at about 300 kbit/s and ramps up slowly unless the remote description raises its
start bitrate with the non-standard fmtp parameters ``x-google-start-bitrate`` / ``x-google-min-bitrate`` (kbit/s),
which we add to the answer.

Pure functions over SDP text (RFC 8866); tested without any peer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["DEFAULT_AUDIO_CODECS", "DEFAULT_VIDEO_CODECS", "raise_start_bitrate", "restrict_codecs"]

DEFAULT_VIDEO_CODECS: tuple[str, ...] = ("VP8",)
DEFAULT_AUDIO_CODECS: tuple[str, ...] = ("opus",)

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/")
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$")
_PT_ATTR = re.compile(r"^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)[ \s]")


def _split(sdp: str) -> tuple[list[str], list[list[str]]]:
    """Split SDP text into the session part and one list of lines per media section (m= line first)."""
    session: list[str] = []
    sections: list[list[str]] = []
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def _join(session: list[str], sections: list[list[str]]) -> str:
    lines = session + [line for section in sections for line in section]
    return "\r\n".join(lines) + "\r\n"


def _kind(section: list[str]) -> str:
    return section[0][2:].split(" ", 1)[0]


def _codec_names(section: list[str]) -> dict[int, str]:
    names: dict[int, str] = {}
    for line in section:
        match = _RTPMAP.match(line)
        if match:
            names[int(match.group(1))] = match.group(2)
    return names


def _apt(section: list[str]) -> dict[int, int]:
    """Payload type of each RTX format -> the payload type it retransmits (RFC 4588 section 8.6, ``apt=``)."""
    result: dict[int, int] = {}
    for line in section:
        match = _FMTP.match(line)
        if match:
            for param in match.group(2).split(";"):
                key, _, value = param.strip().partition("=")
                if key == "apt" and value.isdigit():
                    result[int(match.group(1))] = int(value)
    return result


def _narrow(section: list[str], wanted: Iterable[str]) -> list[str]:
    names = _codec_names(section)
    wanted_lower = {name.lower() for name in wanted}
    keep = {pt for pt, name in names.items() if name.lower() in wanted_lower}
    if not keep:
        # Nothing in common: leave the section alone and let aiortc refuse it with its own message.
        return section
    keep |= {rtx for rtx, apt in _apt(section).items() if apt in keep and names.get(rtx, "").lower() == "rtx"}
    head = section[0].split(" ")
    formats = [fmt for fmt in head[3:] if fmt.isdigit() and int(fmt) in keep]
    out = [" ".join(head[:3] + formats)]
    for line in section[1:]:
        match = _PT_ATTR.match(line)
        if match and int(match.group(1)) not in keep:
            continue
        out.append(line)
    return out


def restrict_codecs(
    offer_sdp: str,
    *,
    video: Iterable[str] = DEFAULT_VIDEO_CODECS,
    audio: Iterable[str] = DEFAULT_AUDIO_CODECS,
) -> str:
    """Keep only the named codecs (and their RTX) in every audio and video section of ``offer_sdp``.

    >>> sdp = "v=0\\r\\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 98\\r\\na=rtpmap:96 VP8/90000\\r\\n" \\
    ...       "a=rtpmap:97 rtx/90000\\r\\na=fmtp:97 apt=96\\r\\na=rtpmap:98 H264/90000\\r\\n"
    >>> print(restrict_codecs(sdp).replace("\\r\\n", "|"))
    v=0|m=video 9 UDP/TLS/RTP/SAVPF 96 97|a=rtpmap:96 VP8/90000|a=rtpmap:97 rtx/90000|a=fmtp:97 apt=96|
    """
    video, audio = tuple(video), tuple(audio)
    session, sections = _split(offer_sdp)
    narrowed = []
    for section in sections:
        kind = _kind(section)
        if kind == "video":
            section = _narrow(section, video)
        elif kind == "audio":
            section = _narrow(section, audio)
        narrowed.append(section)
    return _join(session, narrowed)


def raise_start_bitrate(
    answer_sdp: str, *, start_kbps: int = 800, min_kbps: int = 150, max_kbps: int = 2500
) -> str:
    """Add ``x-google-{start,min,max}-bitrate`` (kbit/s) to every video codec's fmtp line of ``answer_sdp``.

    Only Chrome reads these parameters; other browsers ignore unknown fmtp parameters (RFC 8866 section 6.15).
    """
    if not 0 < min_kbps <= start_kbps <= max_kbps:
        raise ValueError(
            f"bitrates must satisfy 0 < min <= start <= max (got {min_kbps}, {start_kbps}, {max_kbps})"
        )
    params = (
        f"x-google-start-bitrate={start_kbps};x-google-min-bitrate={min_kbps};x-google-max-bitrate={max_kbps}"
    )
    session, sections = _split(answer_sdp)
    out = []
    for section in sections:
        if _kind(section) != "video":
            out.append(section)
            continue
        names = _codec_names(section)
        targets = {
            pt for pt, name in names.items() if name.lower() not in {"rtx", "red", "ulpfec", "flexfec-03"}
        }
        has_fmtp: set[int] = set()
        lines: list[str] = []
        for line in section:
            match = _FMTP.match(line)
            if match and int(match.group(1)) in targets and "x-google-start-bitrate" not in line:
                line = f"{line};{params}"
            if match:
                has_fmtp.add(int(match.group(1)))
            lines.append(line)
        # Codecs without any fmtp line get one right after their rtpmap line.
        final: list[str] = []
        for line in lines:
            final.append(line)
            match = _RTPMAP.match(line)
            if match and int(match.group(1)) in targets and int(match.group(1)) not in has_fmtp:
                final.append(f"a=fmtp:{match.group(1)} {params}")
        out.append(final)
    return _join(session, out)
