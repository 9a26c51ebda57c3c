"""The text side of the transcription helper (no model needed)."""

from __future__ import annotations

import io
import wave

import pytest

from tests.support.transcribe import (
    normalize,
    number_to_words,
    pcm_to_float,
    pcm_to_wav,
    word_recall,
)


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (42, "forty two"),
        (100, "one hundred"),
        (105, "one hundred five"),
        (999, "nine hundred ninety nine"),
        (1000, "one thousand"),
        (2024, "two thousand twenty four"),
        (9999, "nine thousand nine hundred ninety nine"),
    ],
)
def test_number_to_words(n: int, words: str) -> None:
    assert number_to_words(n) == words


@pytest.mark.parametrize("n", [-1, 10000])
def test_number_to_words_range(n: int) -> None:
    with pytest.raises(ValueError):
        number_to_words(n)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hello, World!", ["hello", "world"]),
        ("  spaced\tout \n text ", ["spaced", "out", "text"]),
        ("Don't stop", ["dont", "stop"]),
        ("It\u2019s fine", ["its", "fine"]),
        ("twenty-one", ["twenty", "one"]),
        ("I have 3 cats", ["i", "have", "three", "cats"]),
        ("1,250 people", ["one", "thousand", "two", "hundred", "fifty", "people"]),
        ("pi is 3.14", ["pi", "is", "three", "point", "fourteen"]),
        ("$5 please", ["five", "dollars", "please"]),
        ("50% off", ["fifty", "percent", "off"]),
        ("salt & pepper", ["salt", "and", "pepper"]),
        ("agent 007", ["agent", "zero", "zero", "seven"]),
        ("12345", ["one", "two", "three", "four", "five"]),
        ("The end.", ["the", "end"]),
        ("", []),
        ("...", []),
    ],
)
def test_normalize(text: str, words: list[str]) -> None:
    assert normalize(text) == words


def test_digits_and_words_normalize_alike() -> None:
    assert normalize("The meeting starts at 9.") == normalize("the meeting starts at nine")


def test_word_recall() -> None:
    assert word_recall("the quick brown fox", "The quick brown fox.") == 1.0
    assert word_recall("the quick brown fox", "the quick fox") == 0.75
    assert word_recall("the quick brown fox", "") == 0.0
    assert word_recall("", "anything") == 1.0
    # Extra heard words cost nothing; it is recall, not precision.
    assert word_recall("brown fox", "a big brown fox indeed") == 1.0


def test_word_recall_is_order_aware() -> None:
    assert word_recall("one two three four", "four three two one") == 0.25


def test_pcm_to_float_scales_and_resamples() -> None:
    pcm = (b"\x00\x40" * 8000) + b"\x01"  # 0.5 s of 16384 at 16 kHz, plus half a sample
    same = pcm_to_float(pcm, 16000)
    assert same.dtype.name == "float32"
    assert len(same) == 8000
    assert same[100] == pytest.approx(0.5)
    down = pcm_to_float(pcm, 32000)  # read as 32 kHz: 0.25 s, so 4000 samples at 16 kHz
    assert len(down) == 4000


def test_pcm_to_wav() -> None:
    pcm = b"\x01\x00\x02\x00\x03"
    with wave.open(io.BytesIO(pcm_to_wav(pcm, 24000))) as wav:
        assert wav.getframerate() == 24000
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.readframes(10) == pcm[:4]
