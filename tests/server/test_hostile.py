"""Hostile input to the local server: an error for each, and the server stays healthy.

Every frame below once closed the connection with a traceback, or would be
buffered whole before any check. Each now gets a documented error frame (or
HTTP error), and the same connection goes on serving.
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from pipecat_waves.protocol.constants import LIVE_PATH, SYNC_PATH
from pipecat_waves.protocol.requests import MAX_FRAME_BYTES
from pipecat_waves.server.app import TRANSPORT_MAX_FRAME_BYTES
from pipecat_waves.server.http import MAX_BODY_BYTES
from tests.server.conftest import AUTH, RATE, is_complete, of_status, request

#: Codes the local server documents for a refused message (docs/local-server.md).
DOCUMENTED_CODES = {
    "INVALID_JSON",
    "INVALID_MESSAGE",
    "INVALID_FIELD",
    "MISSING_FIELD",
    "MESSAGE_TOO_LARGE",
    "TEXT_TOO_LONG",
    "INVALID_VOICE",
}

_SYNTH = '"text": "hi", "voice_id": "avery", "sample_rate": 16000'

#: (name, raw text frame, expected code). Every entry is sent on one socket.
HOSTILE_FRAMES = [
    ("deeply nested array", "[" * 30_000 + "]" * 30_000, "INVALID_JSON"),
    ("deeply nested object", '{"a":' * 10_000 + "1" + "}" * 10_000, "INVALID_JSON"),
    (
        "deep nesting inside a field",
        "{" + _SYNTH + ', "content_filter": ' + "[" * 5_000 + "]" * 5_000 + "}",
        "INVALID_JSON",
    ),
    ("huge integer speed", "{" + _SYNTH + ', "speed": 1' + "0" * 400 + "}", "INVALID_FIELD"),
    ("integer beyond the digit limit", '{"speed": ' + "9" * 5_000 + "}", "INVALID_JSON"),
    (
        "huge integer backoff",
        '{"text": "hi", "voice_id": "avery", "flush": true, "complete_backoff_ms": 1'
        + "0" * 400
        + "}",
        "INVALID_FIELD",
    ),
    ("float overflow rate", "{" + _SYNTH[:-5] + "1e400}", "INVALID_FIELD"),
    ("NaN speed", "{" + _SYNTH + ', "speed": NaN}', "INVALID_FIELD"),
    ("Infinity speed", "{" + _SYNTH + ', "speed": Infinity}', "INVALID_FIELD"),
    (
        "-Infinity delay",
        '{"text": "hi", "voice_id": "avery", "context_id": "c", "max_buffer_delay_ms": -Infinity}',
        "INVALID_FIELD",
    ),
    ("type is a list", '{"type": [1, 2]}', "INVALID_FIELD"),
    ("type is an object", '{"type": {"ping": 1}}', "INVALID_FIELD"),
    ("type is null", '{"type": null}', "INVALID_FIELD"),
    ("type is a long string", json.dumps({"type": "p" * 60_000}), "INVALID_FIELD"),
    ("voice id is a list", '{"text": "hi", "voice_id": ["avery"]}', "INVALID_FIELD"),
    ("model is a list", "{" + _SYNTH + ', "model": []}', "INVALID_FIELD"),
    (
        "language is 50 KB",
        json.dumps({"text": "hi", "voice_id": "avery", "language": "x" * 50_000}),
        "INVALID_FIELD",
    ),
    (
        "filter action is a list",
        "{" + _SYNTH + ', "content_filter": {"enabled": true, "action": []}}',
        "INVALID_FIELD",
    ),
    ("context id is an object", "{" + _SYNTH + ', "context_id": {"x": 1}}', "INVALID_FIELD"),
    ("context id with a newline", "{" + _SYNTH + ', "context_id": "a\\n"}', "INVALID_FIELD"),
    (
        "duplicate keys, last wrong",
        '{"text": "hi", "text": 5, "voice_id": "avery"}',
        "INVALID_FIELD",
    ),
    ("empty frame", "", "INVALID_JSON"),
    ("JSON null", "null", "INVALID_MESSAGE"),
    ("JSON number", "1e999", "INVALID_MESSAGE"),
    ("JSON string", '"ping"', "INVALID_MESSAGE"),
    ("truncated JSON", '{"text": "hi', "INVALID_JSON"),
    (
        "text of 9000 characters",
        json.dumps({"text": "a " * 4_500, "voice_id": "avery"}),
        "TEXT_TOO_LONG",
    ),
    ("just over the frame limit", "x" * (MAX_FRAME_BYTES + 1), "MESSAGE_TOO_LARGE"),
    (
        "multi-byte text over the limit",
        json.dumps({"text": "\u00e9" * 40_000}, ensure_ascii=False),
        "MESSAGE_TOO_LARGE",
    ),
    ("just under the transport limit", "y" * (TRANSPORT_MAX_FRAME_BYTES - 1), "MESSAGE_TOO_LARGE"),
]


def _code(frame: dict) -> str | None:
    error = frame.get("error")
    return error.get("code") if isinstance(error, dict) else None


@pytest.fixture
async def nested_server(make_server):
    # The nested error shape carries a code, so each refusal can be told apart.
    return await make_server(error_shape="nested")


async def test_every_hostile_frame_gets_a_documented_error_on_one_healthy_socket(
    nested_server, connect
):
    client = await connect(nested_server)
    for name, payload, code in HOSTILE_FRAMES:
        await client.ws.send_str(payload)
        frame = await client.recv()
        assert frame["status"] == "error", name
        assert _code(frame) == code, (name, frame)
        assert _code(frame) in DOCUMENTED_CODES
        # An error never echoes a huge value back.
        assert len(json.dumps(frame)) < 1_000, name
    # The same socket still answers, and speaks.
    assert await client.ping_roundtrip() == [{"type": "pong"}]
    await client.send(request("Still alive."))
    assert of_status(await client.recv_until(is_complete), "chunk")


async def test_hostile_frames_leave_no_state_behind(nested_server, connect):
    client = await connect(nested_server)
    for i in range(50):
        for _, payload, _ in HOSTILE_FRAMES[:10]:
            await client.ws.send_str(payload)
            await client.recv()
        # Valid contexts opened and closed again, each under a new id ...
        await client.send(request(f"Turn {i}.", context_id=f"c{i}", **{"continue": False}))
        await client.recv_until(is_complete)
        # ... and others only cancelled, as a barge-in does.
        await client.send(request("Half a", context_id=f"x{i}", **{"continue": True}))
        await client.send({"text": "", "context_id": f"x{i}", "cancel_request": True})
    await client.ping_roundtrip()
    [connection] = nested_server._live.open
    assert connection._contexts == {}
    assert connection._context_params == {}
    assert connection._jobs == []
    assert nested_server._state.context_slots == set()


async def test_a_frame_over_the_transport_limit_is_refused_unread_and_others_go_on(
    nested_server, connect
):
    client = await connect(nested_server)
    other = await connect(nested_server)
    await client.ws.send_str("z" * (TRANSPORT_MAX_FRAME_BYTES + 1))
    msg = await client.ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    # The server and its other sockets are unaffected.
    assert await other.ping_roundtrip() == [{"type": "pong"}]
    fresh = await connect(nested_server)
    await fresh.send(request("Fresh."))
    assert of_status(await fresh.recv_until(is_complete), "chunk")


HOSTILE_BODIES = [
    ("deeply nested", b"[" * 30_000 + b"]" * 30_000, 400),
    (
        "huge integer speed",
        b'{"text": "hi", "voice_id": "avery", "speed": 1' + b"0" * 400 + b"}",
        400,
    ),
    ("integer beyond the digit limit", b'{"speed": ' + b"9" * 5_000 + b"}", 400),
    ("model is a list", b'{"text": "hi", "voice_id": "avery", "model": []}', 400),
    ("language is an object", b'{"text": "hi", "voice_id": "avery", "language": {}}', 400),
    ("sample rate overflows", b'{"text": "hi", "voice_id": "avery", "sample_rate": 1e400}', 400),
    ("not UTF-8", b'{"text": "\xff\xfe"}', 400),
    ("not JSON", b"text=hi", 400),
    ("JSON null", b"null", 400),
    ("empty", b"", 400),
    ("over the body limit", b" " * (MAX_BODY_BYTES + 1), 413),
    ("a megabyte", b"{" + b" " * (1024 * 1024) + b"}", 413),
]


@pytest.mark.parametrize(
    ("name", "body", "status"), HOSTILE_BODIES, ids=[b[0] for b in HOSTILE_BODIES]
)
async def test_hostile_http_bodies_get_an_http_error_and_the_server_goes_on(
    nested_server, http, name, body, status
):
    url = nested_server.base_url + SYNC_PATH
    async with http.post(url, data=body, headers=AUTH) as response:
        assert response.status == status, name
        await response.read()
    ok = {"text": "Fine.", "voice_id": "avery", "sample_rate": RATE}
    async with http.post(url, json=ok, headers=AUTH) as response:
        assert response.status == 200
        assert await response.read()


async def test_hostile_sse_body_gets_400(nested_server, http):
    url = nested_server.base_url + LIVE_PATH
    async with http.post(url, data=b"[" * 30_000 + b"]" * 30_000, headers=AUTH) as response:
        assert response.status == 400


async def test_interleaved_contexts_leave_no_queue_behind(make_server, connect):
    server = await make_server(interleave_contexts=True)
    client = await connect(server)
    for i in range(30):
        await client.send(request(f"Turn {i}.", context_id=f"c{i}", **{"continue": False}))
        await client.recv_until(is_complete)
    await client.ping_roundtrip()
    [connection] = server._live.open
    # One synthesis queue per context while it speaks; none kept once it is over.
    assert len(connection._synthesis_queues) <= 1
