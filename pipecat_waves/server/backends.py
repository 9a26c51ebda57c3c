"""Speech backends of the local server.

A backend turns one released segment of text into PCM16 audio at the
requested rate, with the time span of every word. It is synchronous and
CPU-bound; the server runs it in a worker thread and streams the result in
chunks, so the backend itself knows nothing of sockets or pacing.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: Words as the API reports them: verbatim runs of non-space input.
_WORD_RE = re.compile(r"\S+")


@dataclass(frozen=True)
class WordSpan:
    """A word of the input and where it sits in the audio, in seconds."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Synthesis:
    """Audio of one segment."""

    pcm: bytes  # signed 16-bit little-endian mono
    sample_rate: int
    words: tuple[WordSpan, ...]

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return len(self.pcm) / (2 * self.sample_rate)


class SpeechBackend(Protocol):
    """What the server needs from a synthesizer."""

    name: str

    def synthesize(self, text: str, *, voice_id: str, speed: float, sample_rate: int) -> Synthesis:
        """Synthesize ``text`` at ``sample_rate``; ``speed`` 1.0 is normal pace."""
        ...


def split_words(text: str) -> list[tuple[str, int]]:
    """Words of ``text`` with their character offsets."""
    return [(m.group(0), m.start()) for m in _WORD_RE.finditer(text)]


def spread_words(text: str, duration_s: float) -> tuple[WordSpan, ...]:
    """Spread ``text``'s words over ``duration_s`` in proportion to their length.

    Used where the synthesizer reports no alignment of its own.
    """
    words = split_words(text)
    total = sum(len(w) + 1 for w, _ in words)
    if not words or duration_s <= 0:
        return ()
    spans = []
    t = 0.0
    for w, _ in words:
        share = duration_s * (len(w) + 1) / total
        spans.append(WordSpan(w, t, t + share * len(w) / (len(w) + 1)))
        t += share
    return tuple(spans)


class ToneBackend:
    """Fast, deterministic stand-in for speech, for unit tests.

    Every word becomes a tone whose length follows the word's length and whose
    pitch follows its letters, separated by short silences, so a test can tell
    which words were synthesized by looking at the audio alone. The same text
    always gives the same bytes.
    """

    name = "tone"

    def __init__(self, seconds_per_char: float = 0.05, gap_s: float = 0.04) -> None:
        self._seconds_per_char = seconds_per_char
        self._gap_s = gap_s

    def synthesize(self, text: str, *, voice_id: str, speed: float, sample_rate: int) -> Synthesis:
        """Render ``text`` as one tone per word."""
        pieces: list[np.ndarray] = []
        spans: list[WordSpan] = []
        t = 0.0
        gap = np.zeros(int(self._gap_s / speed * sample_rate), dtype=np.int16)
        # Like speech, a segment starts with a short silence; it also keeps two
        # segments' first and last words apart when read back.
        pieces.append(gap)
        t += len(gap) / sample_rate
        for word, _ in split_words(text):
            n = max(1, int(len(word) * self._seconds_per_char / speed * sample_rate))
            pitch = 200.0 + (zlib.crc32(word.encode()) % 600)
            phase = np.arange(n, dtype=np.float64) * (2 * np.pi * pitch / sample_rate)
            tone = (np.sin(phase) * 8000.0).astype(np.int16)
            pieces.append(tone)
            spans.append(WordSpan(word, t, t + n / sample_rate))
            t += n / sample_rate
            pieces.append(gap)
            t += len(gap) / sample_rate
        pcm = np.concatenate(pieces).tobytes() if pieces else b""
        return Synthesis(pcm=pcm, sample_rate=sample_rate, words=tuple(spans))
