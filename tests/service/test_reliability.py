"""Failures a user can hit: each gives a clear error, and no word is lost or repeated."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from loguru import logger
from pipecat.frames.frames import TTSStoppedFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.utils.errors import ErrorCategory

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from tests.server.conftest import wait_until
from tests.service.conversation import Conversation, Result, run_conversation
from tests.service.helpers import (
    API_KEY,
    contexts_in_order,
    errors,
    heard,
    llm_turn,
    make_service,
    run,
)

REPLY = (
    "First we check the date. Then we look for a table near the window. "
    "After that we confirm the booking by email. Finally we send you a reminder."
)


def server_with(**switches) -> LocalWavesServer:
    return LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=ServerBehaviour(**switches), record=True
    )


def assert_each_word_once(words: list[str], text: str) -> None:
    """Every word of ``text``, in order, none lost.

    At a dropped connection the word being spoken may be heard again: its audio
    had arrived (in full, or cut off, read as ``<cut>``) but its timestamp had
    not, so the client cannot know it was spoken. Nothing else may repeat.
    """
    assert words.count("<cut>") <= 1, words
    heard_words = [w for w in words if w != "<cut>"]
    expected = text.split()
    if heard_words == expected:
        return
    repeats = [i for i in range(1, len(heard_words)) if heard_words[i] == heard_words[i - 1]]
    assert any(heard_words[:i] + heard_words[i + 1 :] == expected for i in repeats), words


def with_one_sentence_restarted(text: str) -> list[list[str]]:
    """Every way of hearing ``text`` with one sentence restarted after a partial start."""
    sentences = [s.split() for s in text.replace(". ", ".|").split("|")]
    options = []
    for k, sentence in enumerate(sentences):
        head = [w for s in sentences[:k] for w in s]
        tail = [w for s in sentences[k:] for w in s]
        options += [head + sentence[:j] + tail for j in range(len(sentence))]
    return options


@pytest.mark.parametrize("word_timestamps", [True, False], ids=["timestamps", "no-timestamps"])
@pytest.mark.parametrize("drop_after", [3, 9])
async def test_dropped_connection_mid_reply_loses_and_repeats_nothing(drop_after, word_timestamps):
    async with server_with(
        chunk_ms=100, chunk_interval_ms=20, drop_after_chunks=drop_after
    ) as server:
        service = make_service(server, word_timestamps=word_timestamps)
        down, _up = await run(service, llm_turn(REPLY))
    assert len(server.connections) >= 2, "the drop happened and the service reconnected"
    words = heard(down, REPLY)
    if word_timestamps:
        assert_each_word_once(words, REPLY)
    else:
        # Without word timings the sentence being spoken when the connection
        # dropped is sent again whole: no word is lost, and only the part of
        # that one sentence already heard can repeat.
        assert [w for w in words if w != "<cut>"] in with_one_sentence_restarted(REPLY)
    # Server side: what was synthesized to the end, in order, never overlaps.
    completed = " ".join(s.text for s in server.segments if s.completed).split()
    assert completed == REPLY.split()[-len(completed) :], completed
    assert len(completed) >= len(REPLY.split()) - 6, "most of the reply was finished"


async def test_server_error_mid_turn_gives_one_error_and_the_pipeline_goes_on():
    async with server_with(error_on_request=2) as server:
        service = make_service(server)
        frames = [*llm_turn(REPLY), SleepFrame(0.3), *llm_turn("Are you still there?")]
        down, up = await run(service, frames)
    errs = errors(up)
    assert len(errs) == 1, errs
    assert "Waves" in errs[0].error
    assert errs[0].category is not None
    ctx = contexts_in_order(down)
    stops = [f for f in down if isinstance(f, TTSStoppedFrame) and f.context_id == ctx[0]]
    assert len(stops) == 1
    assert heard(down, "Are you still there?", ctx[-1]) == ["Are", "you", "still", "there?"]


async def test_stalled_server_is_detected_and_the_reply_completes_elsewhere():
    async with server_with(chunk_ms=100, stall_after_chunks=2) as server:
        service = make_service(server, stall_timeout_s=0.6)
        down, _ = await run(service, llm_turn(REPLY))
    assert len(server.connections) >= 2
    assert_each_word_once(heard(down, REPLY), REPLY)


async def test_wrong_api_key_is_a_clear_fatal_error_without_the_key():
    async with server_with() as server:
        service = WavesTTSService(
            api_key="sk-wrong-key-123456", base_url=server.ws_base_url, sample_rate=16000
        )
        lines: list[str] = []
        sink = logger.add(lines.append, level="TRACE")
        try:
            _, up = await run(service, [SleepFrame(0.5)])
        finally:
            logger.remove(sink)
    errs = errors(up)
    assert len(errs) == 1
    assert "API key" in errs[0].error
    assert "401" in errs[0].error
    assert errs[0].category is ErrorCategory.AUTHENTICATION
    text = "\n".join(lines) + repr(service) + str(errs[0])
    assert "sk-wrong-key-123456" not in text
    assert server.connections == []


@pytest.mark.parametrize("rate", [4000, 0, -16000, 400000])
def test_a_rate_that_makes_no_sense_fails_at_construction(rate):
    with pytest.raises(ValueError, match=rf"{rate} Hz makes no sense.*8000 to 192000"):
        WavesTTSService(api_key="k", base_url="ws://127.0.0.1:9", sample_rate=rate)


async def test_a_pipeline_rate_that_makes_no_sense_is_reported_before_any_text():
    async with server_with() as server:
        service = WavesTTSService(api_key=API_KEY, base_url=server.ws_base_url)
        _, up = await run_test(
            service,
            frames_to_send=[SleepFrame(0.2)],
            pipeline_params=PipelineParams(audio_out_sample_rate=4000),
        )
    errs = errors(up)
    assert len(errs) == 1
    assert "4000 Hz makes no sense" in errs[0].error
    assert server.connections == []


def test_api_key_is_never_sent_in_clear_to_a_remote_host():
    with pytest.raises(ValueError, match="unencrypted"):
        WavesTTSService(api_key="k", base_url="ws://api.example.com")
    service = WavesTTSService(api_key="sk-secret-abc", base_url="ws://127.0.0.1:1234")
    assert "sk-secret-abc" not in repr(service)


async def _blocked_server_run(reject_with: str) -> tuple[Result, LocalWavesServer]:
    """Run one reply while another client holds the server's only socket.

    The other client lets go once the server has refused the service.
    """
    async with server_with(max_connections=1, reject_with=reject_with) as server:
        blocker = await websockets.connect(
            server.ws_base_url + "/waves/v1/tts/live",
            additional_headers={"Authorization": f"Bearer {API_KEY}"},
        )

        async def release_once_refused() -> None:
            await wait_until(lambda: server.rejected_connections >= 1, 10.0)
            await blocker.close()

        release = asyncio.create_task(release_once_refused())
        service = make_service(server, reconnect_backoff_s=(0.1, 0.4))
        talk = Conversation(token_gap_s=0)
        talk.say("booked", "Booked for eight.")
        talk.wait_heard(1, then_quiet_s=0.1, timeout_s=10.0, label="reply heard")
        result = await run_conversation(service, talk)
        await release
    assert talk.timed_out == []
    return result, server


@pytest.mark.parametrize("reject_with", ["http_429", "close_1008"])
async def test_a_refusal_that_clears_is_retried_quietly(reject_with):
    result, server = await _blocked_server_run(reject_with)
    assert server.rejected_connections >= 1, "the service was refused first"
    down = [e.frame for e in result.down]
    assert heard(down, "Booked for eight.") == ["Booked", "for", "eight."]
    assert result.errors == [], "a refusal that a retry clears is routine, not an error"


@pytest.mark.parametrize("reject_with", ["http_429", "close_1008"])
async def test_a_refusal_that_lasts_is_reported_once_and_the_service_fails_over(reject_with):
    async with server_with(max_connections=1, reject_with=reject_with) as server:
        blocker = await websockets.connect(
            server.ws_base_url + "/waves/v1/tts/live",
            additional_headers={"Authorization": f"Bearer {API_KEY}"},
        )
        service = make_service(server, reconnect_backoff_s=(0.1, 0.4), failover_after_s=0.6)
        usable: list[bool] = []
        reported = asyncio.Event()

        @service.event_handler("on_usable_changed")
        async def on_usable_changed(_service, is_usable):
            usable.append(is_usable)
            if not is_usable:
                reported.set()

        talk = Conversation(token_gap_s=0)
        talk.wait(lambda: False in usable, 10.0, "reported unusable")
        talk.wait(lambda: usable == [False, True], 10.0, "usable again")
        talk.say("booked", "Booked for eight.")
        talk.wait_heard(1, then_quiet_s=0.1, timeout_s=10.0, label="reply heard")

        async def release() -> None:
            # The other client lets go once the service has reported the refusal.
            await asyncio.wait_for(reported.wait(), 10.0)
            await blocker.close()

        releasing = asyncio.create_task(release())
        result = await run_conversation(service, talk)
        await releasing
    assert talk.timed_out == []
    errs = result.errors
    assert len(errs) == 1, [e.error for e in errs]
    assert errs[0].category is ErrorCategory.RATE_LIMIT
    assert "concurrency" in errs[0].error
    assert heard([e.frame for e in result.down], "Booked for eight.") == ["Booked", "for", "eight."]


async def test_keepalive_is_a_ping_never_a_synthesis_request():
    async with server_with() as server:
        service = make_service(server, idle_timeout_s=3)
        down, _ = await run(service, [SleepFrame(2.4), *llm_turn("Still here.")])
    received = server.connections[0].received
    assert {"type": "ping"} in received
    assert not any(m.get("text") == " " for m in received), "no synthesis as keep-alive"
    assert heard(down, "Still here.") == ["Still", "here."]
    assert server.connections[0].query.get("timeout") == "3"


async def test_key_refused_after_the_upgrade_is_still_a_clear_fatal_error():
    async with server_with(auth_failure="close_after_upgrade") as server:
        service = WavesTTSService(
            api_key="sk-wrong-key-654321", base_url=server.ws_base_url, sample_rate=16000
        )
        _, up = await run(service, [SleepFrame(1.0), *llm_turn("Hello?")])
    errs = errors(up)
    auth = [e for e in errs if e.category is ErrorCategory.AUTHENTICATION]
    assert len(auth) == 1, errs
    assert "api_key" in auth[0].error or "API key" in auth[0].error
    assert "sk-wrong-key-654321" not in str(errs)


async def test_reply_refused_for_concurrency_is_retried_until_a_slot_frees():
    async with server_with(max_active_contexts=1) as server:
        blocker = await websockets.connect(
            server.ws_base_url + "/waves/v1/tts/live",
            additional_headers={"Authorization": f"Bearer {API_KEY}"},
        )
        hold = {"text": "Holding the only slot. ", "voice_id": "avery", "context_id": "other"}
        await blocker.send(json.dumps({**hold, "continue": True}))

        def sent() -> list[dict]:
            """The service's reply as the server received it, each time it was sent."""
            return [
                m
                for c in server.connections
                for m in c.received
                if m.get("text") == "Booked for eight. "
            ]

        async def release_once_refused():
            # The server refuses a message as it records it: once the reply is
            # recorded, it has been refused, and the other client lets go.
            await wait_until(lambda: len(sent()) >= 1, 10.0)
            await blocker.send(json.dumps({"text": "", "context_id": "other", "continue": False}))

        release = asyncio.create_task(release_once_refused())
        service = make_service(server)
        down, up = await run(service, [SleepFrame(0.1), *llm_turn("Booked for eight.")])
        await release
        await blocker.close()
    assert heard(down, "Booked for eight.") == ["Booked", "for", "eight."]
    assert errors(up) == [], "a refusal that a retry fixes is not an error"
    assert len(sent()) >= 2, "the reply was refused at least once, then resent"


async def test_server_without_ping_support_gets_no_more_pings_and_no_errors():
    async with server_with(ping_supported=False) as server:
        service = make_service(server, idle_timeout_s=3)
        down, up = await run(service, [SleepFrame(2.5), *llm_turn("Still here."), SleepFrame(1.5)])
    pings = [m for m in server.connections[0].received if m.get("type") == "ping"]
    assert len(pings) == 1, "one refused ping, then no more"
    assert errors(up) == []
    assert heard(down, "Still here.") == ["Still", "here."]


async def test_unknown_voice_names_the_voice_and_the_fix():
    async with server_with() as server:
        service = make_service(server, settings=WavesTTSService.Settings(voice="nobody"))
        _, up = await run(service, llm_turn("Hello there."))
    errs = errors(up)
    assert len(errs) == 1, errs
    assert "nobody" in errs[0].error
    assert "pipecat-waves voices" in errs[0].error
    assert errs[0].category is ErrorCategory.INVALID_REQUEST
