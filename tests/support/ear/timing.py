"""Where the time goes between the user's first word and the bot's silence at the ear.

Splits :attr:`~tests.support.ear.analysis.EarReport.silence_to_ear_ms` with the
bot's own timestamps (wall clock; the page's clock pairs map the recording onto
it):

* **VAD**: the user's speech onset at the microphone to Silero's decision
  (``VADUserStartedSpeakingFrame``), including the trip to the bot.
* **service**: the VAD's decision to the last audio of the cut reply that the
  output transport handed to WebRTC (what the TTS service still let through).
* **transport**: that last audio to the bot's last audible sound in the
  browser (Opus, the network, the jitter buffer, playout).
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.ear import EarRecording
from tests.support.ear.analysis import EarReport


@dataclass(frozen=True)
class EarTiming:
    """One barge-in's time from onset to silence at the ear, split (milliseconds)."""

    ear_ms: float
    vad_ms: float
    service_ms: float
    transport_ms: float


def split_timing(recording: EarRecording, heard: EarReport) -> EarTiming:
    """Split ``heard``'s onset-to-silence time with the bot's timestamps.

    Raises:
        AssertionError: The bot's log lacks the VAD's decision or the answer.
    """
    onset = recording.wall_s(heard.onset_s)
    events = recording.bot_events
    vad = next(
        (t for t, kind, _ in events if kind == "VADUserStartedSpeakingFrame" and t > onset - 0.2),
        None,
    )
    assert vad is not None, f"the bot's VAD never fired after the onset ({recording.out})"
    answer = next((t for t, kind, _ in events if kind == "reply_started" and t > vad), None)
    assert answer is not None, f"the bot never answered ({recording.out})"
    last_out = max(
        (t for t, kind, _ in events if kind == "transport_audio" and t < answer), default=vad
    )
    ear_ms = heard.silence_to_ear_ms
    vad_ms = 1000 * (vad - onset)
    service_ms = 1000 * max(0.0, last_out - vad)
    return EarTiming(ear_ms, vad_ms, service_ms, ear_ms - vad_ms - service_ms)
