"""The tone decoder reads back what the tone backend said (pure logic, no sockets)."""

from __future__ import annotations

import numpy as np
import pytest

from pipecat_waves.server import ToneBackend
from pipecat_waves.server.tones import (
    CUT,
    UNKNOWN,
    ToneVocabulary,
    decode_tones,
    fused_pairs,
    tone_spans,
    transcribe_exact,
    transcribe_tones,
    word_pitch,
    words_of,
)

TEXT = "Your table for four is booked at eight tonight."
RATE = 24000


def _render(text: str, rate: int = RATE) -> bytes:
    return ToneBackend().synthesize(text, voice_id="", speed=1.0, sample_rate=rate).pcm


def test_both_readers_hear_every_word_in_order():
    pcm = _render(TEXT)
    words = words_of(TEXT)

    assert len(tone_spans(pcm, RATE)) == len(words)
    assert transcribe_exact(pcm, RATE, words) == words
    assert transcribe_tones(pcm, RATE, words) == words


def test_tones_are_measured_at_the_backends_pitch():
    tones = decode_tones(_render("booked tonight"), RATE)

    assert [round(t.pitch_hz) for t in tones] == pytest.approx(
        [word_pitch("booked"), word_pitch("tonight")], abs=5
    )


def test_a_word_cut_off_reads_as_cut_or_unknown():
    pcm = _render(TEXT)
    words = words_of(TEXT)
    first, last = tone_spans(pcm, RATE)[-1]
    cut = pcm[: 2 * (first + (last - first) // 3)]  # 2.7 of its 8 characters

    assert transcribe_tones(cut, RATE, words) == [*words[:-1], CUT]
    assert transcribe_exact(cut, RATE, words) == [*words[:-1], UNKNOWN]


def test_two_sentences_fused_into_one_word_are_named_when_asked():
    written = words_of("Good evening. Welcome back.")
    pcm = _render("Good evening.Welcome back.")

    assert transcribe_exact(pcm, RATE, written) == ["Good", UNKNOWN, "back."]
    heard = ToneVocabulary(written, RATE, also=fused_pairs(written)).read(pcm)
    assert heard == ["Good", "evening.Welcome", "back."]


def test_silence_has_no_tones():
    assert tone_spans(np.zeros(4800, dtype="<i2").tobytes(), RATE) == []
