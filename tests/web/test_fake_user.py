"""The browser test's fake user: Silero hears the phrase, early in it, every time.

Offline and on the audio's own clock (no wall-clock timing): the phrase in the
Piper voice at 16 kHz, fed to Silero with the web demo's settings in 10 ms
chunks. The browser test's bound assumes the VAD decides within the phrase's
first half second; a phrase Silero hears late ("Wait, stop." takes 680 ms)
would make that test slow to react and its bound meaningless.
"""

from __future__ import annotations

import pytest

from tests.support.ear.mic import PHRASE, vad_firing_s

pytestmark = pytest.mark.speech


async def test_silero_hears_the_fake_user_early_and_alike_every_time() -> None:
    first = await vad_firing_s(PHRASE)
    again = await vad_firing_s(PHRASE)
    onset_s, fired_s = first
    assert again == first
    assert 0.0 < fired_s - onset_s <= 0.5, f"Silero fired {fired_s - onset_s:.2f} s into {PHRASE!r}"
