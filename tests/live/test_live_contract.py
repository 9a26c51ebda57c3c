"""The real Waves API keeps the contract the local tests hold the client to.

Run with ``pytest -m live -rs`` and ``WAVES_API_KEY`` set. The probe's checks
run once (about 650 characters) and their traits start a service; the pipeline
tests speak a few short replies with ``WavesTTSService`` and assert the same
invariants as the local tests:
audio streams, words come back in order, back-to-back replies never mix, and
nothing of an interrupted reply is heard after the interruption.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.tests.utils import SleepFrame

from pipecat_waves import ServerTraits, WavesTTSService
from pipecat_waves.probe import ProbeConfig, probe_characters, run_probe
from pipecat_waves.protocol.constants import DEFAULT_BASE_URL, SAMPLE_RATES
from tests.service.helpers import contexts_in_order, llm_turn, run, split_at_interruption

pytestmark = pytest.mark.live

RATE = 24000
#: A voice with word timestamps, so the words spoken can be compared with the text.
VOICE = "avery"


def make_service(api_key: str) -> WavesTTSService:
    return WavesTTSService(
        api_key=api_key, sample_rate=RATE, settings=WavesTTSService.Settings(voice=VOICE)
    )


def words(frames: Sequence[Frame], context_id: str | None = None) -> list[str]:
    return [
        w
        for f in frames
        if isinstance(f, TTSTextFrame) and (context_id is None or f.context_id == context_id)
        for w in f.text.split()
    ]


def no_errors(down: Sequence[Frame], up: Sequence[Frame]) -> None:
    problems = [f for f in [*down, *up] if isinstance(f, ErrorFrame)]
    assert problems == []


async def test_probe_answers_every_point(api_key: str) -> None:
    report = await run_probe(ProbeConfig(DEFAULT_BASE_URL, api_key, idle_wait_s=0))

    rows = dict(report.observed())
    assert report.characters == probe_characters() < 2000
    assert rows["handshake and TTFB (lightning_v3.1)"] == "audio"
    assert rows["wrong key refused"] in ("before the upgrade (HTTP 401)", "after the upgrade")
    assert rows["error shape (bad voice)"] in ("flat", "nested", "both")
    for rate in SAMPLE_RATES:
        assert f"{rate}: -" not in rows["audio per chunk"]
    for point in ("one long sentence", "several sentences at once", "one sentence per fragment"):
        assert rows[point] != "0 segment(s)"
    assert api_key not in report.table()

    # What the probe saw starts a service, which must agree with what it meets.
    traits = ServerTraits.from_probe(report)
    reply = "Good, the probe and the service agree."
    service = WavesTTSService(
        api_key=api_key,
        sample_rate=RATE,
        settings=WavesTTSService.Settings(voice=VOICE),
        server_traits=traits,
    )
    down, up = await run(service, llm_turn(reply))
    no_errors(down, up)
    assert words(down) == reply.split()
    met = service.server_traits
    assert met.complete_backoff_with_context == traits.complete_backoff_with_context
    if traits.answers_pings is not None and met.answers_pings is not None:
        assert met.answers_pings == traits.answers_pings


async def test_streaming_reply_is_heard_word_for_word(api_key: str) -> None:
    reply = "Hello there. This reply streams as it is spoken."
    down, up = await run(make_service(api_key), llm_turn(reply))

    no_errors(down, up)
    assert any(isinstance(f, TTSAudioRawFrame) for f in down)
    assert words(down) == reply.split()
    kinds = [type(f) for f in down if isinstance(f, TTSStartedFrame | TTSStoppedFrame)]
    assert kinds == [TTSStartedFrame, TTSStoppedFrame]


async def test_back_to_back_replies_play_in_order_without_mixing(api_key: str) -> None:
    first, second = "Short one.", "And here is the second reply, right after."
    down, up = await run(make_service(api_key), llm_turn(first) + llm_turn(second))

    no_errors(down, up)
    ctx = contexts_in_order(down)
    assert len(ctx) == 2
    assert words(down, ctx[0]) == first.split()
    assert words(down, ctx[1]) == second.split()
    audio = [f.context_id for f in down if isinstance(f, TTSAudioRawFrame)]
    # Every chunk of the first reply comes before any of the second.
    assert audio == sorted(audio, key=ctx.index)


async def test_barge_in_leaves_nothing_of_the_interrupted_reply(api_key: str) -> None:
    long_reply = (
        "Let me tell you about our menu. We have seven kinds of pasta tonight. "
        "There is also a fish special with lemon and herbs."
    )
    next_reply = "Sure, go ahead."
    frames = [
        *llm_turn(long_reply),
        SleepFrame(sleep=1.5),
        InterruptionFrame(),
        SleepFrame(sleep=0.3),
        *llm_turn(next_reply),
    ]
    down, up = await run(make_service(api_key), frames)

    no_errors(down, up)
    before, after = split_at_interruption(down)
    interrupted = contexts_in_order(before)
    assert interrupted, "the first reply started before the interruption"
    late = [f for f in after if isinstance(f, TTSAudioRawFrame) and f.context_id in interrupted]
    assert late == []
    resumed = [c for c in contexts_in_order(after) if c not in interrupted]
    assert len(resumed) == 1
    assert words(after, resumed[0]) == next_reply.split()
