"""Reading a browser recording: when the user spoke, what of the bot was heard, and when.

The page records the fake microphone and the bot's remote track in one
AudioContext, so both share one clock. With the local server's tone backend
every word of a reply is a tone of its own pitch (see
:mod:`pipecat_waves.server.tones`); Opus keeps a pure tone's pitch, so each
tone heard is named with the nearest word of the script, and "which reply is
this audio from" is decidable from the recording alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipecat_waves.server.tones import word_pitch, words_of
from tests.support.ear.mic import envelope

#: Envelope window.
WINDOW_S = 0.01
#: RMS above which a window is audible (-40 dBFS; tones play at about -15 dBFS).
AUDIBLE = 0.01
#: Quiet that separates two tones (the tone backend leaves 40 ms between words).
TONE_GAP_S = 0.02
#: Quiet after the user's onset that counts as "the bot went silent".
SILENCE_S = 0.3
#: Farthest a heard tone's pitch may be from a word's to be named with it.
PITCH_TOLERANCE_HZ = 8.0
#: Name of a tone no word of the script fits.
UNKNOWN = "<?>"


@dataclass(frozen=True)
class HeardTone:
    """One tone of the bot's track: from, to (seconds on the recording's clock), pitch, word."""

    start_s: float
    end_s: float
    pitch_hz: float
    word: str

    @property
    def seconds(self) -> float:
        """How long it was heard."""
        return self.end_s - self.start_s


def check_vocabulary(replies: Sequence[str], min_separation_hz: float = 20.0) -> None:
    """Fail unless every distinct word of ``replies`` has a pitch of its own.

    Raises:
        ValueError: Two words' tones are too close to tell apart after Opus.
    """
    words = sorted({w for reply in replies for w in words_of(reply)}, key=word_pitch)
    for a, b in itertools.pairwise(words):
        if word_pitch(b) - word_pitch(a) < min_separation_hz:
            raise ValueError(
                f"{a!r} and {b!r} sound alike ({word_pitch(a):.0f} Hz, {word_pitch(b):.0f} Hz)"
            )


def pitch_of(samples: np.ndarray, sample_rate: int) -> float:
    """The strongest frequency of ``samples`` (Hann window, zero-padded to 0.5 Hz bins)."""
    n = max(len(samples), 2 * sample_rate)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)), n=n))
    k = int(np.argmax(spectrum[1:])) + 1
    if 1 <= k < len(spectrum) - 1:
        # Parabolic interpolation of the peak.
        a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
        denom = a - 2 * b + c
        k = k + (0.5 * (a - c) / denom if denom else 0.0)  # type: ignore[assignment]
    return float(k * sample_rate / n)


#: Render quanta the page's recorder missed: (first frame, frames), left as zeros.
Holes = Sequence[Sequence[int]]


def audible(samples: np.ndarray, sample_rate: int, holes: Holes = ()) -> np.ndarray:
    """Which :data:`WINDOW_S` windows are audible; a hole keeps the state before it."""
    loud = envelope(samples, sample_rate, WINDOW_S) > AUDIBLE
    per = WINDOW_S * sample_rate
    for first, length in holes:
        a, b = int(first // per), int(np.ceil((first + length) / per))
        if 0 < a < len(loud):
            loud[a : min(b, len(loud))] = loud[a - 1]
    return loud


def heard_tones(
    samples: np.ndarray, sample_rate: int, vocabulary: Sequence[str], holes: Holes = ()
) -> list[HeardTone]:
    """Cut the bot's track into tones at quiet gaps; name each with the nearest word."""
    loud = audible(samples, sample_rate, holes)
    tones: list[HeardTone] = []
    gap = round(TONE_GAP_S / WINDOW_S)
    i = 0
    n = len(loud)
    pitches = {w: word_pitch(w) for w in vocabulary}
    while i < n:
        if not loud[i]:
            i += 1
            continue
        j = i
        quiet = 0
        while j < n and quiet < gap:
            quiet = quiet + 1 if not loud[j] else 0
            j += 1
        end = j - quiet
        per = round(WINDOW_S * sample_rate)
        chunk = samples[i * per : end * per]
        pitch = pitch_of(chunk, sample_rate) if len(chunk) > per else 0.0
        word = UNKNOWN
        if pitches:
            best = min(pitches, key=lambda w: abs(pitches[w] - pitch))
            if abs(pitches[best] - pitch) <= PITCH_TOLERANCE_HZ:
                word = best
        tones.append(HeardTone(i * WINDOW_S, end * WINDOW_S, pitch, word))
        i = j
    return tones


def user_onset_s(mic: np.ndarray, sample_rate: int) -> float | None:
    """When the fake user starts speaking: the first audible window of the microphone."""
    env = envelope(mic, sample_rate, WINDOW_S)
    loud = np.flatnonzero(env > AUDIBLE)
    return None if loud.size == 0 else float(loud[0]) * WINDOW_S


def bot_quiet_at_s(
    bot: np.ndarray, sample_rate: int, after_s: float, holes: Holes = ()
) -> float | None:
    """End of the bot's last audible window before :data:`SILENCE_S` of quiet after ``after_s``."""
    loud = audible(bot, sample_rate, holes)
    start = round(after_s / WINDOW_S)
    need = round(SILENCE_S / WINDOW_S)
    last_loud = start - 1
    for i in range(start, len(loud)):
        if loud[i]:
            last_loud = i
        elif i - last_loud >= need:
            return (last_loud + 1) * WINDOW_S
    return None


@dataclass(frozen=True)
class EarReport:
    """What a listener heard around one barge-in.

    Attributes:
        onset_s: The user's speech onset (recording clock).
        quiet_s: When the bot went quiet after it (end of its last audible window).
        before: Tones heard before the onset.
        after: Tones heard after the bot went quiet.
        silence_to_ear_ms: ``quiet_s - onset_s``: onset to the bot's last audible sound.
    """

    onset_s: float
    quiet_s: float
    before: list[HeardTone]
    after: list[HeardTone]

    @property
    def silence_to_ear_ms(self) -> float:
        """From the user's speech onset to the bot's last audible sound, in ms."""
        return 1000 * (self.quiet_s - self.onset_s)


def read_barge_in(
    mic: np.ndarray, bot: np.ndarray, sample_rate: int, replies: Sequence[str], holes: Holes = ()
) -> EarReport:
    """Find the barge-in in a recording and what was heard around it.

    Raises:
        AssertionError: No speech on the microphone, or the bot never went quiet after it.
    """
    onset = user_onset_s(mic, sample_rate)
    assert onset is not None, "the fake microphone's speech is not in the recording"
    quiet = bot_quiet_at_s(bot, sample_rate, onset, holes)
    assert quiet is not None, "the bot never went quiet after the user started speaking"
    vocabulary = sorted({w for reply in replies for w in words_of(reply)})
    tones = heard_tones(bot, sample_rate, vocabulary, holes)
    before = [t for t in tones if t.end_s <= onset]
    after = [t for t in tones if t.start_s >= quiet]
    return EarReport(onset, quiet, before, after)
