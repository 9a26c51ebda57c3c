"""Read back what :class:`~pipecat_waves.server.backends.ToneBackend` said.

The tone backend renders every word as a tone whose length follows the word's
length and whose pitch follows the word's bytes, with silences between words
(and at the start of every segment). This module is its inverse: it cuts audio
into tones at those silences and names each tone with the word it renders, so
a test or benchmark can tell, word by word, what a listener would have heard
without a speech model.

Two ways to name a tone:

* :class:`ToneVocabulary` matches a tone to a word byte for byte. It is exact,
  but only for audio at the rate the server rendered (no resampling).
* :func:`transcribe_tones` measures a tone's length and pitch and takes the
  nearest word, so it also reads audio the client resampled, and tells a word
  cut off mid-way (``"<cut>"``).
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipecat_waves.server.backends import ToneBackend

_DEFAULT = ToneBackend()
#: Seconds of tone per character of a word (the default backend's).
SECONDS_PER_CHAR = _DEFAULT._seconds_per_char
#: Seconds of silence between two words (the default backend's).
GAP_S = _DEFAULT._gap_s

#: What :class:`ToneVocabulary` reads for a tone that is no known word.
UNKNOWN = "<?>"
#: What :func:`transcribe_tones` reads for a tone no word fits (a cut word).
CUT = "<cut>"


@dataclass(frozen=True)
class Tone:
    """One run of sound between silences, measured."""

    seconds: float
    pitch_hz: float


def words_of(text: str) -> list[str]:
    """Words as the tone backend splits them: runs of non-space characters."""
    return re.findall(r"\S+", text)


def word_pitch(word: str) -> float:
    """The pitch the tone backend gives ``word``."""
    return 200.0 + (zlib.crc32(word.encode()) % 600)


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")


def tone_spans(pcm: bytes, sample_rate: int) -> list[tuple[int, int]]:
    """Where each tone of PCM16 ``pcm`` lies: ``(first, last + 1)`` sample indices.

    A word's own samples are never silent for long, so any run of zeros at
    least half the backend's gap separates two words. Each span runs from the
    tone's first to its last non-zero sample.
    """
    loud = np.flatnonzero(_samples(pcm))
    if loud.size == 0:
        return []
    min_gap = max(1, int(GAP_S * sample_rate) // 2)
    breaks = np.flatnonzero(np.diff(loud) > min_gap)
    firsts = [int(loud[0]), *(int(loud[b + 1]) for b in breaks)]
    lasts = [*(int(loud[b]) for b in breaks), int(loud[-1])]
    return [(a, b + 1) for a, b in zip(firsts, lasts, strict=True)]


def split_tones(pcm: bytes, sample_rate: int) -> list[bytes]:
    """The tones of ``pcm``, each from its first to its last non-zero sample."""
    samples = _samples(pcm)
    return [samples[a:b].tobytes() for a, b in tone_spans(pcm, sample_rate)]


def decode_tones(pcm: bytes, sample_rate: int) -> list[Tone]:
    """Split audio into tones at silences and measure each one."""
    samples = _samples(pcm)
    return [_measure(samples[a:b], sample_rate) for a, b in tone_spans(pcm, sample_rate)]


def _measure(samples: np.ndarray, sample_rate: int) -> Tone:
    signs = np.signbit(samples[samples != 0])
    crossings = int(np.count_nonzero(signs[1:] != signs[:-1]))
    seconds = (len(samples) + 1) / sample_rate  # the tone's first sample is 0
    return Tone(seconds=seconds, pitch_hz=crossings / (2 * seconds))


def transcribe_tones(pcm: bytes, sample_rate: int, vocabulary: Iterable[str]) -> list[str]:
    """Name each tone with the vocabulary word it renders, or :data:`CUT` if none fits.

    A tone is matched by its length and pitch, so audio resampled by the
    client reads too. A tone shorter than any word of its pitch is a word cut
    off mid-way (for example by a dropped connection) and reads as ``"<cut>"``.
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
            out.append(CUT)
    return out


def tone_of(word: str, sample_rate: int) -> bytes:
    """The exact samples the tone backend renders for ``word``, trimmed of silence."""
    synthesis = ToneBackend().synthesize(word, voice_id="", speed=1.0, sample_rate=sample_rate)
    (tone,) = split_tones(synthesis.pcm, sample_rate)
    return tone


class ToneVocabulary:
    """Names tones byte for byte with the words that render them.

    The tone backend renders a word to the same samples wherever it stands, so
    a tone at the rendering rate is matched to a word exactly. A tone that
    matches no word (a word cut off, or not in the vocabulary) reads
    :data:`UNKNOWN`.
    """

    def __init__(
        self, vocabulary: Iterable[str], sample_rate: int, also: Iterable[str] = ()
    ) -> None:
        """Render every word once.

        Args:
            vocabulary: The words to tell apart.
            sample_rate: The rate the audio to read was rendered at.
            also: Further words to recognise, unless they sound like a
                vocabulary word (for example two words fused into one).

        Raises:
            ValueError: Two words of ``vocabulary`` render alike, so the audio
                could not tell them apart.
        """
        self.sample_rate = sample_rate
        self._words: dict[bytes, str] = {}
        for word in set(vocabulary):
            tone = tone_of(word, sample_rate)
            if self._words.setdefault(tone, word) != word:
                raise ValueError(f"{word!r} and {self._words[tone]!r} sound alike")
        for word in set(also):
            self._words.setdefault(tone_of(word, sample_rate), word)

    def name(self, tone: bytes) -> str:
        """The word ``tone`` renders, or :data:`UNKNOWN`."""
        return self._words.get(tone, UNKNOWN)

    def read(self, pcm: bytes) -> list[str]:
        """Name every tone of ``pcm``, in order."""
        return [self.name(tone) for tone in split_tones(pcm, self.sample_rate)]


def transcribe_exact(
    pcm: bytes, sample_rate: int, vocabulary: Sequence[str], also: Sequence[str] = ()
) -> list[str]:
    """Name every tone of ``pcm`` byte for byte (see :class:`ToneVocabulary`)."""
    return ToneVocabulary(vocabulary, sample_rate, also).read(pcm)


def fused_pairs(words: Sequence[str]) -> list[str]:
    """Every two neighbouring words written without the space between them.

    That is what the server speaks when a client sends sentences without the
    space between them and the server joins them into one segment.
    """
    return [a + b for a, b in itertools.pairwise(words)]
