"""Read back what the deterministic tone backend said.

:class:`~pipecat_waves.server.backends.ToneBackend` renders every word as a
tone whose length follows the word's length and whose pitch follows the word's
bytes, with short silences between words. Decoding the audio a pipeline
produced therefore tells, word by word, what the listener would have heard:
a transcript with no speech model, exact enough to prove that nothing was lost
or repeated.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from pipecat_waves.server.backends import ToneBackend

_DEFAULT = ToneBackend()
SECONDS_PER_CHAR = _DEFAULT._seconds_per_char
GAP_S = _DEFAULT._gap_s


@dataclass(frozen=True)
class Tone:
    """One run of sound between silences."""

    seconds: float
    pitch_hz: float


def word_pitch(word: str) -> float:
    """The pitch the tone backend gives ``word``."""
    return 200.0 + (zlib.crc32(word.encode()) % 600)


def decode_tones(pcm: bytes, sample_rate: int) -> list[Tone]:
    """Split audio into tones at silences and measure each one."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    if samples.size == 0:
        return []
    loud = np.abs(samples.astype(np.int32)) > 0
    # A silence counts as a gap once it lasts half the backend's gap.
    min_gap = max(1, int(GAP_S * sample_rate / 2))
    tones: list[Tone] = []
    start: int | None = None
    quiet = 0
    for i, is_loud in enumerate(loud):
        if is_loud:
            if start is None:
                start = i
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet >= min_gap:
                tones.append(_measure(samples[start : i - quiet + 1], sample_rate))
                start, quiet = None, 0
    if start is not None:
        tones.append(_measure(samples[start : len(samples) - quiet], sample_rate))
    return tones


def _measure(samples: np.ndarray, sample_rate: int) -> Tone:
    signs = np.signbit(samples[samples != 0])
    crossings = int(np.count_nonzero(signs[1:] != signs[:-1]))
    seconds = (len(samples) + 1) / sample_rate  # the tone's first sample is 0
    return Tone(seconds=seconds, pitch_hz=crossings / (2 * seconds))


def words_of(text: str) -> list[str]:
    """Words as the tone backend splits them."""
    return re.findall(r"\S+", text)


def transcribe_tones(pcm: bytes, sample_rate: int, vocabulary: list[str]) -> list[str]:
    """Name each tone with the vocabulary word it renders, or ``"<cut>"`` if none fits.

    A tone shorter than any word of its pitch is a word cut off mid-way (for
    example by a dropped connection) and reads as ``"<cut>"``.
    """
    by_len: dict[int, list[str]] = {}
    for word in set(vocabulary):
        by_len.setdefault(len(word), []).append(word)
    out: list[str] = []
    for tone in decode_tones(pcm, sample_rate):
        chars = tone.seconds / SECONDS_PER_CHAR
        n = round(chars)
        candidates = by_len.get(n, []) if abs(chars - n) < 0.2 else []
        best = min(candidates, key=lambda w: abs(word_pitch(w) - tone.pitch_hz), default=None)
        if best is not None and abs(word_pitch(best) - tone.pitch_hz) <= 25:
            out.append(best)
        else:
            out.append("<cut>")
    return out
