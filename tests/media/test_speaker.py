"""Active speaker from RFC 6464 audio levels, with hysteresis."""

from __future__ import annotations

from media.speaker import SpeakerDetector

SILENCE = 127
SPEECH = 30


def feed(detector: SpeakerDetector, start: float, seconds: float, levels: dict[str, int]) -> list[str]:
    """Feed 20 ms samples for each participant; return the announcements."""
    announced = []
    for i in range(int(seconds * 50)):
        now = start + i * 0.02
        for name, level in levels.items():
            changed = detector.observe(name, level, now)
            if changed is not None:
                announced.append(changed)
    return announced


def test_the_one_who_speaks_is_announced_once() -> None:
    detector = SpeakerDetector()
    assert feed(detector, 0.0, 2.0, {"alice": SILENCE, "bob": SPEECH, "carol": SILENCE}) == ["bob"]


def test_silence_announces_nobody() -> None:
    detector = SpeakerDetector()
    assert feed(detector, 0.0, 2.0, {"alice": SILENCE, "bob": SILENCE}) == []


def test_a_cough_does_not_steal_the_floor_but_a_sentence_does() -> None:
    detector = SpeakerDetector()
    feed(detector, 0.0, 2.0, {"alice": SPEECH, "bob": SILENCE})
    assert detector.current == "alice"
    # bob coughs for 100 ms while alice pauses
    assert feed(detector, 2.0, 0.1, {"alice": SILENCE, "bob": 20}) == []
    # bob then talks while alice is silent: he takes over after the hold time
    assert feed(detector, 2.1, 2.0, {"alice": SILENCE, "bob": SPEECH}) == ["bob"]


def test_leaving_speaker_is_replaced() -> None:
    detector = SpeakerDetector()
    feed(detector, 0.0, 1.0, {"alice": 20, "bob": 45})
    assert detector.current == "alice"
    assert detector.remove("alice", 1.0) == "bob"
    assert detector.remove("nobody", 1.0) is None
