"""Failed requests: one ErrorFrame each, naming the cause and the fix, in the right category."""

from __future__ import annotations

import socket

from pipecat.frames.frames import TTSAudioRawFrame, TTSSpeakFrame
from pipecat.utils.errors import ErrorCategory

from pipecat_waves import WavesHttpTTSService
from pipecat_waves.protocol.constants import MAX_HTTP_TEXT_CHARS
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from tests.http.helpers import make_http_service, sse_texts
from tests.service.helpers import API_KEY, audio_of, errors, heard, llm_turn, run

REPLY = "The table is booked. Parking is free after six. We open at noon."


def _server(**behaviour) -> LocalWavesServer:
    return LocalWavesServer(
        api_key=API_KEY,
        backend=ToneBackend(),
        behaviour=ServerBehaviour(**behaviour),
        record=True,
    )


async def test_a_rejected_key_is_one_error_and_leaves_the_service_unusable():
    async with _server() as server:
        service = make_http_service(server, api_key="sk-wrong-0000")
        down, up = await run(service, llm_turn(REPLY))
    (error,) = errors(up)
    assert error.category is ErrorCategory.AUTHENTICATION
    assert "rejected the API key (HTTP 401)" in error.error
    assert "unusable" in error.error
    assert not service.is_usable
    # The other sentences of the reply were never sent to fail the same way.
    assert [r.status for r in server.http_requests] == [401]
    assert audio_of(down) == b""


async def test_an_unknown_voice_is_one_error_naming_the_fix():
    async with _server() as server:
        service = make_http_service(server, settings=WavesHttpTTSService.Settings(voice="nobody"))
        _, up = await run(service, llm_turn(REPLY))
    (error,) = errors(up)
    assert error.category is ErrorCategory.INVALID_REQUEST
    assert "HTTP 400" in error.error and "Invalid Voice ID" in error.error
    assert "pipecat-waves voices" in error.error
    assert len(server.http_requests) == 1


async def test_the_server_gone_is_one_error_per_reply_and_the_service_stays_usable():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    service = WavesHttpTTSService(
        api_key=API_KEY, base_url=f"http://127.0.0.1:{port}", sample_rate=16000
    )
    _, up = await run(service, [*llm_turn(REPLY), *llm_turn("Dogs are welcome.")])
    found = errors(up)
    assert len(found) == 2, [e.error for e in found]  # one per reply, not per sentence
    for error in found:
        assert error.category is ErrorCategory.CONNECTIVITY
        assert f"Cannot reach Waves at 127.0.0.1:{port}" in error.error
        assert "Check base_url" in error.error
    assert service.is_usable


async def test_a_server_error_costs_one_reply_and_the_next_is_spoken():
    async with _server(error_on_request=1) as server:
        service = make_http_service(server)
        down, up = await run(service, [*llm_turn(REPLY), *llm_turn("Dogs are welcome.")])
    (error,) = errors(up)
    assert error.category is ErrorCategory.SERVER
    assert "HTTP 500" in error.error and "The next reply tries again" in error.error
    assert service.is_usable
    assert heard(down, "Dogs are welcome.") == ["Dogs", "are", "welcome."]
    assert sse_texts(server) == ["The table is booked.", "Dogs are welcome."]


async def test_the_concurrency_limit_names_the_wait():
    async with _server(max_connections=0) as server:
        service = make_http_service(server)
        _, up = await run(service, [TTSSpeakFrame("Dogs are welcome.")])
    (error,) = errors(up)
    assert error.category is ErrorCategory.RATE_LIMIT
    assert "HTTP 429" in error.error and "retry after 1 s" in error.error
    assert service.is_usable


async def test_text_over_the_limit_is_split_at_sentences_and_spoken_whole():
    rate = 8000
    sentence = "Our kitchen serves seven kinds of fresh pasta every single night. "
    text = sentence * (MAX_HTTP_TEXT_CHARS // len(sentence) + 20)
    backend = ToneBackend(seconds_per_char=0.002, gap_s=0.004)
    async with LocalWavesServer(api_key=API_KEY, backend=backend, record=True) as server:
        service = make_http_service(server, sample_rate=rate)
        down, up = await run(service, [TTSSpeakFrame(text)])
    assert errors(up) == []
    pieces = sse_texts(server)
    assert len(pieces) == 2
    assert all(len(p) <= MAX_HTTP_TEXT_CHARS for p in pieces)
    assert all(p.endswith("night.") for p in pieces), "cut after whole sentences"
    assert " ".join(pieces).split() == text.split()
    expected = b"".join(
        backend.synthesize(p, voice_id="avery", speed=1.0, sample_rate=rate).pcm for p in pieces
    )
    frames = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert len({f.context_id for f in frames}) == 1, "one reply"
    assert audio_of(down) == expected
