"""The fake user: a spoken phrase in a WAV file for Chromium's fake microphone.

Chromium plays ``--use-file-for-fake-audio-capture`` from the moment the page
opens the microphone (once, with the ``%noloop`` suffix). The file is
silence, the phrase (the offline Piper voice), then silence.
:func:`vad_firing_s` runs Silero over the phrase offline, the way the bot's
VAD hears it, to choose a phrase the VAD picks up consistently.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Rate of the fake microphone's file (Chromium captures at 48 kHz).
MIC_RATE = 48000
#: The fake user's phrase (chosen by measuring Silero on candidates; see the report).
PHRASE = "Hey there, wait a moment."
#: Voice id of the fake user (the local server's Piper voice speaks every id).
USER_VOICE = "liam"
#: Peak level of the phrase in the file.
PEAK = 0.7


@dataclass(frozen=True)
class FakeMic:
    """A fake microphone file and where the speech is in it.

    Attributes:
        path: The WAV file.
        lead_s: Silence before the phrase.
        speech_s: The phrase's length (Piper's own leading and trailing quiet included).
        total_s: The file's length.
    """

    path: Path
    lead_s: float
    speech_s: float
    total_s: float


def speak(text: str, sample_rate: int = MIC_RATE, voice: str = USER_VOICE) -> np.ndarray:
    """``text`` in the offline Piper voice, as float samples in [-1, 1] peaking at :data:`PEAK`."""
    from pipecat_waves.server.piper_backend import PiperBackend

    synthesis = PiperBackend().synthesize(text, voice_id=voice, speed=1.0, sample_rate=sample_rate)
    samples = np.frombuffer(synthesis.pcm, dtype="<i2").astype(np.float64) / 32768.0
    peak = float(np.max(np.abs(samples))) or 1.0
    return samples * (PEAK / peak)


def write_fake_mic(
    path: Path, phrase: str = PHRASE, *, lead_s: float = 5.0, tail_s: float = 25.0
) -> FakeMic:
    """Write silence, ``phrase``, silence to ``path`` (PCM16 mono, :data:`MIC_RATE`)."""
    speech = speak(phrase)
    lead = np.zeros(round(lead_s * MIC_RATE))
    tail = np.zeros(round(tail_s * MIC_RATE))
    samples = np.concatenate([lead, speech, tail])
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(MIC_RATE)
        f.writeframes(pcm.tobytes())
    return FakeMic(path, lead_s, len(speech) / MIC_RATE, len(samples) / MIC_RATE)


def speech_onset_s(samples: np.ndarray, sample_rate: int, threshold: float = 0.01) -> float | None:
    """Start of the first 10 ms window whose RMS exceeds ``threshold``, in seconds."""
    env = envelope(samples, sample_rate)
    loud = np.flatnonzero(env > threshold)
    return None if loud.size == 0 else float(loud[0]) * 0.01


def envelope(samples: np.ndarray, sample_rate: int, window_s: float = 0.01) -> np.ndarray:
    """RMS of consecutive ``window_s`` windows of float ``samples``."""
    n = max(1, round(window_s * sample_rate))
    usable = len(samples) // n * n
    blocks = np.asarray(samples[:usable], dtype=np.float64).reshape(-1, n)
    return np.asarray(np.sqrt(np.mean(blocks**2, axis=1)))


async def vad_firing_s(phrase: str, *, lead_s: float = 1.0) -> tuple[float, float]:
    """When Silero (the bot's settings) says the user started speaking ``phrase``.

    The phrase is fed at 16 kHz after ``lead_s`` of silence, in 10 ms chunks,
    as the bot's input transport feeds it.

    Returns:
        (speech onset, VAD firing) in seconds from the start of the audio.
    """
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADState

    from pipecat_waves.web.bot import VAD_PARAMS

    rate = 16000
    audio = np.concatenate([np.zeros(round(lead_s * rate)), speak(phrase, rate), np.zeros(rate)])
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    vad = SileroVADAnalyzer(sample_rate=rate, params=VAD_PARAMS)
    vad.set_sample_rate(rate)
    chunk = 2 * rate // 100
    onset = speech_onset_s(audio, rate)
    for i in range(0, len(pcm) - chunk + 1, chunk):
        state = await vad.analyze_audio(pcm[i : i + chunk])
        if state == VADState.SPEAKING:
            return onset or 0.0, (i + chunk) / 2 / rate
    raise AssertionError(f"Silero never heard {phrase!r}")
