"""The HTTP endpoints: SSE streaming, sync synthesis and the voice list."""

from __future__ import annotations

import asyncio
import base64
import json
import struct

import pytest

from pipecat_waves.protocol.constants import LIVE_PATH, SYNC_PATH, VOICES_PATH
from tests.server.conftest import AUTH, KEY, RATE, tone

BODY = {"text": "Hello over HTTP.", "voice_id": "avery", "sample_rate": RATE}


def parse_sse(raw: str) -> list[tuple[str | None, dict]]:
    """Split an SSE body into (event name, data) pairs, checking the framing."""
    assert raw.endswith("\n\n")
    events = []
    for block in raw[:-2].split("\n\n"):
        event = None
        data = None
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            if name == "event":
                event = value
            elif name == "data":
                data = json.loads(value)
            else:
                raise AssertionError(f"unexpected SSE line {line!r}")
        assert data is not None
        events.append((event, data))
    return events


async def test_sse_framing_and_audio(server, http):
    async with http.post(server.base_url + LIVE_PATH, json=BODY, headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = await response.text()
    events = parse_sse(raw)
    *audio_events, (last_name, last) = events
    assert last_name is None
    assert last == {"status": "200", "done": True}
    assert audio_events
    for name, data in audio_events:
        assert name == "audio"
        assert data["done"] is False and data["status"] == "206"
    pieces = [base64.b64decode(d["audio"]) for _, d in audio_events]
    assert all(len(p) == RATE * 2 * 20 // 1000 for p in pieces[:-1])  # 20 ms each
    assert b"".join(pieces) == tone(BODY["text"])


async def test_sync_returns_raw_pcm_labelled_wav(server, http):
    body = {**BODY, "request_id": "r1", "session_id": "s1"}
    async with http.post(server.base_url + SYNC_PATH, json=body, headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "audio/wav"
        assert response.headers["X-External-Request-Id"] == "r1"
        assert response.headers["X-External-Session-Id"] == "s1"
        audio = await response.read()
    assert audio == tone(BODY["text"])


async def test_sync_sends_no_empty_echo_headers(server, http):
    async with http.post(server.base_url + SYNC_PATH, json=BODY, headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["X-Request-Id"].startswith("task_")
        assert "X-External-Request-Id" not in response.headers
        assert "X-External-Session-Id" not in response.headers


async def test_sync_wav_has_riff_header(server, http):
    body = {**BODY, "output_format": "wav"}
    async with http.post(server.base_url + SYNC_PATH, json=body, headers=AUTH) as response:
        assert response.status == 200
        audio = await response.read()
    pcm = tone(BODY["text"])
    assert audio[:4] == b"RIFF" and audio[8:16] == b"WAVEfmt "
    channels, rate = struct.unpack("<HI", audio[22:28])
    assert (channels, rate) == (1, RATE)
    assert struct.unpack("<I", audio[40:44])[0] == len(pcm)
    assert audio[44:] == pcm


@pytest.mark.parametrize(
    ("override", "path", "message"),
    [
        ({"voice_id": "nobody"}, "voice_id", "Invalid Voice ID"),
        ({"text": "   \n "}, "text", "Text is required"),
        ({"text": "x" * 8001}, "text", "at most 8000"),
        ({"sample_rate": 12345}, "sample_rate", "sample rate"),
        ({"speed": 3}, "speed", "Speed"),
        ({"model": "nope"}, "model", "model"),
        ({"output_format": "mp3"}, "output_format", "mp3"),
        ({"output_format": "flac"}, "output_format", "output_format"),
    ],
)
@pytest.mark.parametrize("endpoint", [SYNC_PATH, LIVE_PATH])
async def test_bad_bodies_get_400(server, http, endpoint, override, path, message):
    body = {**BODY, **override}
    async with http.post(server.base_url + endpoint, json=body, headers=AUTH) as response:
        assert response.status == 400
        payload = await response.json()
    [error] = payload["error"]
    assert error["code"] == "custom"
    assert error["path"] == [path]
    assert message in error["message"]


async def test_text_of_8000_chars_after_trim_is_accepted(server, http):
    body = {**BODY, "text": "  " + "a " * 3999 + "a  "}
    async with http.post(server.base_url + SYNC_PATH, json=body, headers=AUTH) as response:
        assert response.status == 200


async def test_invalid_json_body_gets_400(server, http):
    async with http.post(server.base_url + SYNC_PATH, data=b"{oops", headers=AUTH) as response:
        assert response.status == 400


@pytest.mark.parametrize("endpoint", [SYNC_PATH, LIVE_PATH])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
async def test_http_auth(server, http, endpoint, headers):
    async with http.post(server.base_url + endpoint, json=BODY, headers=headers) as response:
        assert response.status == 401
        assert KEY not in await response.text()


async def test_voices_shape(server, http):
    async with http.get(server.base_url + VOICES_PATH, headers=AUTH) as response:
        assert response.status == 200
        payload = await response.json()
    voices = {v["voiceId"]: v for v in payload["voices"]}
    for name in ["sophia", "meher", "magnus", "avery", "liam", "devansh", "kartik", "maithili"]:
        assert name in voices
    assert {"emily", "george"} <= set(voices)
    for voice in voices.values():
        assert set(voice) == {"voiceId", "displayName", "tags"}
        tags = voice["tags"]
        assert set(tags) == {"language", "accent", "gender", "age", "emotions", "usecases"}
        assert isinstance(tags["language"], list) and tags["language"]
        assert isinstance(tags["usecases"], list)
        assert tags["emotions"] == []
        assert tags["gender"] in {"male", "female"}
    assert voices["avery"]["displayName"] == "Avery"


async def test_voices_need_auth(server, http):
    async with http.get(server.base_url + VOICES_PATH) as response:
        assert response.status == 401


async def test_sse_names_the_request_in_headers_as_documented(server, http):
    body = {**BODY, "request_id": "r7", "session_id": "s7"}
    async with http.post(server.base_url + LIVE_PATH, json=body, headers=AUTH) as response:
        assert response.status == 200
        assert response.headers["X-Request-Id"].startswith("task_")
        assert response.headers["X-Session-Id"]
        assert response.headers["X-External-Request-Id"] == "r7"
        assert response.headers["X-External-Session-Id"] == "s7"
        await response.read()


async def test_sse_odd_chunks_still_join_to_the_audio(make_server, http):
    server = await make_server(split_odd_bytes=True)
    async with http.post(server.base_url + LIVE_PATH, json=BODY, headers=AUTH) as response:
        events = parse_sse(await response.text())
    pieces = [base64.b64decode(d["audio"]) for name, d in events if name == "audio"]
    assert len(pieces) > 2 and len(pieces[0]) % 2 == 1
    assert b"".join(pieces) == tone(BODY["text"])


async def test_sse_paces_its_events_when_asked(make_server, http):
    # 0.1 s between events: the first arrives while the rest are still to come.
    server = await make_server(chunk_interval_ms=100)
    async with http.post(server.base_url + LIVE_PATH, json=BODY, headers=AUTH) as response:
        first = await response.content.readuntil(b"\n\n")
        assert first.startswith(b"event: audio")
        record = server.http_requests[-1]
        assert record.chunks_sent < record.chunks_total
        await response.read()
    assert server.http_requests[-1].finished


async def test_sse_request_chosen_by_error_on_request_gets_500(make_server, http):
    server = await make_server(error_on_request=2)
    statuses = []
    for _ in range(3):
        async with http.post(server.base_url + LIVE_PATH, json=BODY, headers=AUTH) as response:
            statuses.append(response.status)
            body = await response.json() if response.status != 200 else None
            if body is not None:
                assert body == {
                    "error": "InternalServerError",
                    "message": "An unexpected error occurred.",
                }
            else:
                await response.read()
    assert statuses == [200, 500, 200]


async def test_http_requests_are_recorded_without_the_key(server, http):
    for _ in range(2):
        async with http.post(server.base_url + LIVE_PATH, json=BODY, headers=AUTH) as response:
            await response.read()
    async with http.post(server.base_url + LIVE_PATH, json=BODY) as response:
        assert response.status == 401
    first, second, refused = server.http_requests
    assert first.body == BODY and first.endpoint == "sse" and first.finished
    assert "Authorization" not in first.headers
    # One client session, one kept-alive TCP connection.
    assert first.peer is not None and first.peer == second.peer
    assert refused.status == 401 and refused.body is None


async def test_a_client_closing_mid_stream_is_recorded_as_abandoned(make_server, http):
    server = await make_server(chunk_interval_ms=50)
    async with http.post(server.base_url + LIVE_PATH, json=BODY, headers=AUTH) as response:
        await response.content.readuntil(b"\n\n")
        response.close()
    record = server.http_requests[-1]
    async with asyncio.timeout(5):
        while not record.abandoned:  # noqa: ASYNC110 - the server notices on its next write
            await asyncio.sleep(0.01)
    assert not record.finished and record.chunks_sent < record.chunks_total
