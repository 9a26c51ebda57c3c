"""Property-based fuzzing of every parser that reads bytes from the other side.

The local server's socket parser (:func:`parse_frame`) and HTTP body parser
(:func:`decode_body`) raise only their own refusal errors, whatever arrives;
the client's response parser (:func:`parse_message`) raises only
:class:`ResponseError`. None of them keeps anything between calls.
"""

from __future__ import annotations

import contextlib
import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipecat_waves.protocol.requests import (
    MAX_FRAME_BYTES,
    LiveRequest,
    RequestError,
    parse_frame,
)
from pipecat_waves.protocol.responses import ResponseError, ServerEvent, parse_message
from pipecat_waves.server.http import BodyError, decode_body

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

#: Field names the parsers look at, so generated objects hit real code paths.
_FIELDS = [
    "text", "voice_id", "model", "language", "sample_rate", "speed", "word_timestamps",
    "math_notation", "number_pronunciation_language", "output_format", "content_filter",
    "enabled", "action", "context_id", "session_id", "request_id", "continue", "flush",
    "cancel_request", "context_close", "max_buffer_flush_ms", "complete_backoff_ms",
    "max_buffer_delay_ms", "type", "status", "data", "audio", "word", "start", "end",
    "error", "code", "message", "external_request_id",
]  # fmt: skip

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["ping", "pong", "chunk", "complete", "error", "word_timestamp", "avery",
                      "lightning_v3.1", "en", "reject", "pcm", "AAAA", "!!!"])
)  # fmt: skip

_json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=5), children, max_size=6)
    ),
    max_leaves=30,
)

_objects = st.dictionaries(st.sampled_from(_FIELDS), _json_values, max_size=10)


def _dump(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def _nested(depth: int, opener: str, closer: str) -> str:
    return opener * depth + closer * depth


_raw_text = (
    st.text(max_size=200)
    | st.builds(_nested, st.integers(0, 20_000), st.sampled_from(["[", '{"a":']),
                st.sampled_from(["]", "}"]))
    | st.builds(lambda n: "1" + "0" * n, st.integers(0, 6_000))
    | st.builds(lambda s: s[: len(s) // 2], _objects.map(_dump))
)  # fmt: skip

_frames = _objects.map(_dump) | _json_values.map(_dump) | _raw_text

_fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_fuzz
@given(_frames)
def test_socket_parser_only_ever_refuses(frame: str):
    try:
        result = parse_frame(frame)
    except RequestError as e:
        assert e.code and e.message
        assert len(e.message) < 400, "an error never quotes a huge value back"
    else:
        assert isinstance(result, LiveRequest)


@_fuzz
@given(_frames.map(lambda s: s.encode("utf-8", "surrogatepass")) | st.binary(max_size=200))
def test_http_body_parser_only_ever_refuses(body: bytes):
    try:
        decode_body(body)
    except BodyError as e:
        assert e.message


def _server_messages() -> st.SearchStrategy[str]:
    audio = st.sampled_from(["AAAA", "AAE=", "not base64!", "", "====", "A" * 5])
    chunk = st.fixed_dictionaries(
        {"status": st.just("chunk"), "data": st.fixed_dictionaries({"audio": audio})}
    )
    return (chunk | _objects | _json_values).map(_dump) | _raw_text


@_fuzz
@given(_server_messages() | st.binary(max_size=100))
def test_client_response_parser_only_ever_refuses(message: str | bytes):
    try:
        event = parse_message(message)
    except ResponseError:
        return
    assert isinstance(event, ServerEvent.__args__)  # type: ignore[attr-defined]


def test_parsers_keep_nothing_between_calls():
    frames = [
        _nested(30_000, "[", "]"),
        '{"speed": 1' + "0" * 400 + "}",
        '{"type": [1]}',
        json.dumps({"text": "hi", "voice_id": "avery", "context_id": "c", "continue": True}),
        "x" * (MAX_FRAME_BYTES + 1),
    ]

    def run_all() -> None:
        for frame in frames:
            with contextlib.suppress(RequestError):
                parse_frame(frame)
            with contextlib.suppress(BodyError):
                decode_body(frame.encode())
            with contextlib.suppress(ResponseError):
                parse_message(frame)

    run_all()  # warm caches (regexes, imports)
    tracemalloc.start()
    try:
        run_all()
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(300):
            run_all()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 1,500 hostile inputs later, memory held is what it was (to within noise).
    assert after - before < 64 * 1024, after - before
