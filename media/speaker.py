"""Active speaker detection from audio levels, with hysteresis so the enlarged tile does not flicker.

The level is the one each browser puts in the RTP header extension ``urn:ietf:params:rtp-hdrext:ssrc-audio-level``
(RFC 6464 section 3): 0..127, in -dBov, 0 the loudest, 127 silence. Chrome, Firefox and aiortc all send it for
Opus. We keep an exponentially smoothed loudness per participant and elect the loudest one that is above the
speech threshold; a new speaker must stay the loudest for ``hold`` seconds before being announced, and the current
speaker keeps the floor while silent for up to ``linger`` seconds (pauses between sentences).

Pure logic with an injected clock; the hub feeds it from received packets (no timer task needed: packets arrive
every 20 ms per publisher while anybody speaks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SpeakerDetector"]


@dataclass
class _Level:
    loudness: float = 0.0  # smoothed, in dB above the floor (0 = silence)
    last_loud: float = float("-inf")


@dataclass
class SpeakerDetector:
    """Feed ``observe(participant, level, now)``; it returns the new active speaker when it changes.

    >>> detector = SpeakerDetector()
    >>> [name for t in range(50) if (name := detector.observe("alice", 30, t / 50))]
    ['alice']
    >>> detector.current
    'alice'
    """

    #: -dBov above which (numerically below which) a participant counts as speaking.
    threshold_dbov: int = 60
    #: Seconds a challenger must stay the loudest before taking over.
    hold: float = 0.4
    #: Seconds the current speaker keeps the title while silent.
    linger: float = 1.5
    #: Smoothing factor per packet (20 ms Opus frames: 0.1 is a time constant of about 200 ms).
    alpha: float = 0.1
    current: str | None = None
    _levels: dict[str, _Level] = field(default_factory=dict)
    _challenger: str | None = None
    _challenger_since: float = 0.0

    def observe(self, participant: str, level_dbov: int, now: float) -> str | None:
        """Record one audio-level sample; return the participant who becomes the active speaker, if any."""
        level = self._levels.setdefault(participant, _Level())
        loudness = max(0.0, float(127 - min(127, max(0, level_dbov))) - (127 - self.threshold_dbov))
        level.loudness += self.alpha * (loudness - level.loudness)
        if level_dbov <= self.threshold_dbov:
            level.last_loud = now
        return self._elect(now)

    def remove(self, participant: str, now: float) -> str | None:
        """Forget a participant who left; return the new speaker if this changes who it is."""
        self._levels.pop(participant, None)
        if self._challenger == participant:
            self._challenger = None
        if self.current == participant:
            self.current = None
            elected = self._elect(now)
            return elected
        return None

    def _elect(self, now: float) -> str | None:
        speaking = {
            name: level.loudness
            for name, level in self._levels.items()
            if now - level.last_loud <= 0.3 and level.loudness > 0.5
        }
        loudest = max(speaking, key=lambda name: speaking[name]) if speaking else None
        if loudest is None or loudest == self.current:
            self._challenger = None
            return None
        # The current speaker speaks a little more softly than a challenger: keep them (no flicker).
        if (
            self.current is not None
            and now - self._levels[self.current].last_loud <= self.linger
            and self.current in speaking
            and speaking[self.current] >= speaking[loudest] * 0.7
        ):
            self._challenger = None
            return None
        if self._challenger != loudest:
            self._challenger = loudest
            self._challenger_since = now
            if self.current is not None:
                return None
        if self.current is None or now - self._challenger_since >= self.hold:
            self.current = loudest
            self._challenger = None
            return loudest
        return None
