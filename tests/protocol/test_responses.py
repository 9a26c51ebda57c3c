"""Server-to-client messages: parsing every shape, and the builders."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pipecat_waves.protocol.responses import (
    AudioChunk,
    Envelope,
    Pong,
    ResponseError,
    SegmentComplete,
    ServerError,
    Unrecognized,
    WordTimestamp,
    chunk_message,
    complete_message,
    error_message,
    parse_event,
    parse_message,
    pong_message,
    word_timestamp_message,
)

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

FULL_ENVELOPE = Envelope(
    request_id="task_1",
    external_request_id="mine-1",
    session_id="ws_abc",
    external_session_id="my.session",
)


def status(name: str, **fields: Any) -> dict[str, Any]:
    """A server message with the usual routing fields."""
    return {"session_id": "ws_abc", "request_id": "task_1", "status": name, **fields}


# ------------------------------------------------------------------------ parsing


def test_chunk_is_decoded() -> None:
    audio = bytes(range(256)) + b"\x01"  # odd length: a chunk may split a sample
    event = parse_event(status("chunk", data={"audio": base64.b64encode(audio).decode()}))
    assert isinstance(event, AudioChunk)
    assert event.audio == audio
    assert event.envelope == Envelope(request_id="task_1", session_id="ws_abc")


def test_empty_chunk_is_empty_audio() -> None:
    event = parse_event(status("chunk", data={"audio": ""}))
    assert isinstance(event, AudioChunk)
    assert event.audio == b""


@pytest.mark.parametrize("bad", ["not base64!", "AAA", "QUJD\n", "QU=JD", "@@@@"])
def test_chunk_with_bad_base64_raises(bad: str) -> None:
    with pytest.raises(ResponseError, match="base64"):
        parse_event(status("chunk", data={"audio": bad}))


def test_response_error_is_a_value_error() -> None:
    assert issubclass(ResponseError, ValueError)


@pytest.mark.parametrize(
    "msg",
    [
        status("chunk"),
        status("chunk", data=None),
        status("chunk", data="QUJD"),
        status("chunk", data={}),
        status("chunk", data={"audio": None}),
        status("chunk", data={"audio": 123}),
    ],
)
def test_chunk_without_audio_string_is_unrecognized(msg: dict[str, Any]) -> None:
    event = parse_event(msg)
    assert isinstance(event, Unrecognized)
    assert event.raw is msg


def test_word_timestamp() -> None:
    msg = status("word_timestamp", data={"id": 5, "word": "$100", "start": 1.12, "end": 1.92})
    event = parse_event(msg)
    assert event == WordTimestamp(
        Envelope(request_id="task_1", session_id="ws_abc"), "$100", 1.12, 1.92
    )


def test_word_timestamp_integer_times_become_floats() -> None:
    event = parse_event(status("word_timestamp", data={"word": "hi", "start": 0, "end": 1}))
    assert isinstance(event, WordTimestamp)
    assert (event.start, event.end) == (0.0, 1.0)
    assert type(event.start) is float and type(event.end) is float


@pytest.mark.parametrize("end", [None, "1.5", True])
def test_word_timestamp_without_usable_end(end: Any) -> None:
    data: dict[str, Any] = {"word": "hi", "start": 0.5}
    if end is not None:
        data["end"] = end
    event = parse_event(status("word_timestamp", data=data))
    assert isinstance(event, WordTimestamp)
    assert event.start == 0.5
    assert event.end is None


@pytest.mark.parametrize(
    "data",
    [
        None,
        {},
        {"start": 0.1},
        {"word": "hi"},
        {"word": 3, "start": 0.1},
        {"word": "hi", "start": "0.1"},
        {"word": "hi", "start": True},
    ],
)
def test_incomplete_word_timestamp_is_unrecognized(data: Any) -> None:
    msg = status("word_timestamp", data=data)
    assert isinstance(parse_event(msg), Unrecognized)


def test_complete() -> None:
    event = parse_event(status("complete"))
    assert event == SegmentComplete(Envelope(request_id="task_1", session_id="ws_abc"))


def test_envelope_echoes_are_read() -> None:
    msg = {
        "session_id": "ws_abc",
        "request_id": "task_1",
        "external_session_id": "my.session",
        "external_request_id": "mine-1",
        "status": "complete",
    }
    event = parse_event(msg)
    assert isinstance(event, SegmentComplete)
    assert event.envelope == FULL_ENVELOPE


def test_non_string_envelope_fields_are_ignored() -> None:
    event = parse_event({"session_id": 5, "request_id": ["x"], "status": "complete"})
    assert isinstance(event, SegmentComplete)
    assert event.envelope == Envelope()


def test_flat_error_shape() -> None:
    msg = {
        "status": "error",
        "message": "Connection timed out after 60 seconds of inactivity",
    }
    event = parse_event(msg)
    assert event == ServerError(
        Envelope(), "Connection timed out after 60 seconds of inactivity", None
    )


def test_nested_error_shape() -> None:
    msg = status("error", error={"code": "CONTENT_FILTER_BLOCKED", "message": "Blocked."})
    event = parse_event(msg)
    assert isinstance(event, ServerError)
    assert event.code == "CONTENT_FILTER_BLOCKED"
    assert event.message == "Blocked."
    assert event.envelope.request_id == "task_1"


def test_error_as_plain_string() -> None:
    event = parse_event({"status": "error", "error": "Invalid voice"})
    assert isinstance(event, ServerError)
    assert event.message == "Invalid voice"
    assert event.code is None


def test_flat_error_with_top_level_code() -> None:
    event = parse_event({"status": "error", "message": "Too many", "code": "RATE_LIMIT"})
    assert isinstance(event, ServerError)
    assert (event.message, event.code) == ("Too many", "RATE_LIMIT")


def test_nested_error_without_message_falls_back_to_flat_message() -> None:
    event = parse_event({"status": "error", "error": {"code": "X"}, "message": "outer"})
    assert isinstance(event, ServerError)
    assert (event.message, event.code) == ("outer", "X")


def test_nested_values_win_over_flat_ones() -> None:
    event = parse_event(
        {
            "status": "error",
            "error": {"code": "INNER", "message": "inner"},
            "message": "outer",
            "code": "OUTER",
        }
    )
    assert isinstance(event, ServerError)
    assert (event.message, event.code) == ("inner", "INNER")


@pytest.mark.parametrize("msg", [{"status": "error"}, {"status": "error", "error": {}}])
def test_error_without_message_gets_a_placeholder(msg: dict[str, Any]) -> None:
    event = parse_event(msg)
    assert isinstance(event, ServerError)
    assert event.message == "unspecified server error"
    assert event.code is None


def test_pong() -> None:
    assert parse_event({"type": "pong"}) == Pong()


@pytest.mark.parametrize(
    "obj",
    [
        {"status": "done"},
        {"status": "CHUNK", "data": {"audio": ""}},
        {"status": None},
        {},
        {"type": "ping"},
        [],
        "complete",
        3,
        None,
    ],
)
def test_unknown_messages_are_unrecognized(obj: Any) -> None:
    event = parse_event(obj)
    assert isinstance(event, Unrecognized)
    assert event.raw == obj


def test_parse_message_accepts_text_and_bytes() -> None:
    text = json.dumps(status("complete"))
    assert isinstance(parse_message(text), SegmentComplete)
    assert isinstance(parse_message(text.encode()), SegmentComplete)


@pytest.mark.parametrize("frame", ["", "not json", "{", "{'status': 'complete'}", b"\xff\xfe\x00"])
def test_non_json_frame_raises(frame: str | bytes) -> None:
    with pytest.raises(ResponseError, match="not JSON"):
        parse_message(frame)


def test_parse_message_propagates_bad_base64() -> None:
    with pytest.raises(ResponseError):
        parse_message(json.dumps(status("chunk", data={"audio": "%%%%"})))


def test_json_that_is_not_an_object_is_unrecognized() -> None:
    assert isinstance(parse_message("[1, 2]"), Unrecognized)
    assert isinstance(parse_message("null"), Unrecognized)


# ----------------------------------------------------------------------- building


def round_trip(msg: dict[str, Any]) -> Any:
    """Send ``msg`` through JSON text, as the socket does, and parse it."""
    return parse_message(json.dumps(msg))


@pytest.mark.parametrize("envelope", [Envelope(), FULL_ENVELOPE, Envelope(request_id="t")])
@pytest.mark.parametrize("audio", [b"", b"\x00", b"\x01\x02", bytes(range(256)) * 3])
def test_chunk_round_trip(envelope: Envelope, audio: bytes) -> None:
    msg = chunk_message(envelope, audio)
    assert msg["status"] == "chunk"
    assert set(msg["data"]) == {"audio"}
    assert round_trip(msg) == AudioChunk(envelope, audio)


def test_builders_omit_absent_envelope_fields() -> None:
    assert complete_message(Envelope()) == {"status": "complete"}
    assert complete_message(Envelope(request_id="t")) == {"request_id": "t", "status": "complete"}


def test_builders_never_name_a_context() -> None:
    msgs = [
        chunk_message(FULL_ENVELOPE, b"ab"),
        word_timestamp_message(FULL_ENVELOPE, 0, "hi", 0.0, 0.1),
        complete_message(FULL_ENVELOPE),
        error_message("x", envelope=FULL_ENVELOPE),
    ]
    for msg in msgs:
        assert "context_id" not in json.dumps(msg)


def test_full_envelope_is_written_out() -> None:
    msg = complete_message(FULL_ENVELOPE)
    assert msg == {
        "session_id": "ws_abc",
        "request_id": "task_1",
        "external_session_id": "my.session",
        "external_request_id": "mine-1",
        "status": "complete",
    }


def test_word_timestamp_round_trip_rounds_to_milliseconds() -> None:
    msg = word_timestamp_message(FULL_ENVELOPE, 3, "world,", 0.123456, 0.98765)
    assert msg["data"] == {"id": 3, "word": "world,", "start": 0.123, "end": 0.988}
    assert round_trip(msg) == WordTimestamp(FULL_ENVELOPE, "world,", 0.123, 0.988)


def test_complete_round_trip() -> None:
    assert round_trip(complete_message(FULL_ENVELOPE)) == SegmentComplete(FULL_ENVELOPE)


def test_nested_error_round_trip() -> None:
    msg = error_message("Bad voice", code="INVALID_FIELD", envelope=FULL_ENVELOPE, shape="nested")
    assert msg["error"] == {"code": "INVALID_FIELD", "message": "Bad voice"}
    assert round_trip(msg) == ServerError(FULL_ENVELOPE, "Bad voice", "INVALID_FIELD")


def test_nested_error_without_code_gets_a_generic_one() -> None:
    msg = error_message("Oops", shape="nested")
    assert msg == {"status": "error", "error": {"code": "ERROR", "message": "Oops"}}
    assert round_trip(msg) == ServerError(Envelope(), "Oops", "ERROR")


def test_flat_error_round_trip_drops_the_code() -> None:
    msg = error_message("Timed out", code="TIMEOUT", shape="flat")
    assert msg == {"status": "error", "message": "Timed out"}
    assert round_trip(msg) == ServerError(Envelope(), "Timed out", None)


def test_flat_is_the_default_error_shape() -> None:
    assert error_message("Timed out", code="TIMEOUT") == {"status": "error", "message": "Timed out"}


def test_both_error_shapes_at_once() -> None:
    msg = error_message("Bad voice", code="INVALID_FIELD", shape="both")
    assert msg["message"] == "Bad voice"
    assert msg["error"] == {"code": "INVALID_FIELD", "message": "Bad voice"}
    assert round_trip(msg) == ServerError(Envelope(), "Bad voice", "INVALID_FIELD")


def test_pong_round_trip() -> None:
    assert pong_message() == {"type": "pong"}
    assert round_trip(pong_message()) == Pong()
