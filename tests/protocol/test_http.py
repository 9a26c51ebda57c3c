"""The HTTP side without I/O: SSE decoding, request bodies, text splitting, refusals, the URL."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipecat_waves.protocol import http as hp
from pipecat_waves.protocol.constants import MAX_HTTP_TEXT_CHARS
from pipecat_waves.service.http import sse_url


def _audio_event(pcm: bytes) -> bytes:
    data = {"audio": base64.b64encode(pcm).decode(), "done": False, "status": "206"}
    return f"event: audio\ndata: {json.dumps(data)}\n\n".encode()


DONE = b'data: {"status": "200", "done": true}\n\n'


def _decode_all(stream: bytes, cuts: list[int]) -> list[hp.SseMeaning]:
    decoder = hp.SseDecoder()
    out: list[hp.SseMeaning] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        for event in decoder.feed(stream[start:cut]):
            out += hp.read_sse_event(event)
        start = cut
    return out


@given(
    pieces=st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=6),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    data=st.data(),
)
def test_any_cut_of_the_stream_gives_the_same_audio_and_one_end(pieces, newline, data):
    stream = b"".join(_audio_event(p) for p in pieces) + b": a comment\n\n" + DONE
    stream = stream.replace(b"\n", newline.encode())
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    meanings = _decode_all(stream, cuts)
    assert [m.pcm for m in meanings if isinstance(m, hp.SseAudio)] == pieces
    assert [type(m) for m in meanings if not isinstance(m, hp.SseAudio)] == [hp.SseDone]
    assert isinstance(meanings[-1], hp.SseDone)


def test_data_lines_of_one_event_are_joined_and_unnamed_events_are_read():
    decoder = hp.SseDecoder()
    events = decoder.feed(b'data: {"status": "200",\ndata:"done": true}\n\n')
    assert events == [hp.SseEvent(None, '{"status": "200",\n"done": true}')]
    assert hp.read_sse_event(events[0]) == [hp.SseDone()]


def test_done_false_is_not_the_end_and_an_unknown_event_is_other():
    event = hp.SseEvent("audio", json.dumps({"audio": "", "done": False}))
    assert hp.read_sse_event(event) == [hp.SseOther(event.data)]
    assert hp.read_sse_event(hp.SseEvent(None, "not json")) == [hp.SseOther("not json")]


@pytest.mark.parametrize(
    "data",
    [
        {"status": "error", "message": "Invalid Voice ID"},
        {"status": "400", "error": {"code": "INVALID_VOICE", "message": "Invalid Voice ID"}},
        {"error": [{"code": "custom", "path": ["voice_id"], "message": "Invalid Voice ID"}]},
    ],
)
def test_an_error_event_mid_stream_is_a_failure(data):
    (meaning,) = hp.read_sse_event(hp.SseEvent(None, json.dumps(data)))
    assert isinstance(meaning, hp.SseFailure)
    assert "Invalid Voice ID" in meaning.error.message


def test_audio_that_is_not_base64_is_a_failure():
    (meaning,) = hp.read_sse_event(hp.SseEvent("audio", json.dumps({"audio": "@@@"})))
    assert isinstance(meaning, hp.SseFailure)


def test_a_line_without_end_is_bounded():
    decoder = hp.SseDecoder()
    with pytest.raises(hp.SseError):
        decoder.feed(b"data: " + b"A" * (hp.MAX_SSE_LINE_BYTES + 1))


def test_the_body_holds_every_given_documented_field_and_nothing_else():
    body = hp.build_http_body(
        "Hi.",
        "avery",
        model="lightning_v3.1",
        sample_rate=24000,
        speed=None,  # not given: the server's default
        pronunciation_dicts=("d1", "d2"),
        request_id="r1",
    )
    assert body == {
        "text": "Hi.",
        "voice_id": "avery",
        "model": "lightning_v3.1",
        "sample_rate": 24000,
        "pronunciation_dicts": ["d1", "d2"],
        "request_id": "r1",
    }
    assert json.loads(json.dumps(body)) == body
    with pytest.raises(ValueError, match="content_filter"):
        hp.build_http_body("Hi.", "avery", content_filter={"enabled": True})


def test_text_within_the_limit_is_one_request_unchanged():
    text = "  " + "a" * MAX_HTTP_TEXT_CHARS + "  "  # the server counts after trimming
    assert hp.split_http_text(text) == [text]


@given(
    st.lists(
        st.text(alphabet="abcdefghij", min_size=1, max_size=30).map(lambda w: w + "."),
        min_size=1,
        max_size=40,
    ),
    st.integers(32, 80),  # longer than any word: a word is never cut
)
def test_long_text_is_cut_after_sentences_within_the_limit_keeping_every_word(words, limit):
    text = " ".join(words)
    pieces = hp.split_http_text(text, limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert " ".join(pieces).split() == text.split()
    # Every sentence fits within the limit, so every cut falls after one.
    assert all(p.endswith(".") for p in pieces)


def test_an_overlong_sentence_is_cut_between_words():
    text = "word " * 30
    pieces = hp.split_http_text(text, 42)
    assert all(len(p) <= 42 for p in pieces) and len(pieces) > 1
    assert " ".join(pieces).split() == text.split()


@pytest.mark.parametrize(
    ("status", "body", "message", "code"),
    [
        (
            400,
            b'{"error":[{"code":"custom","path":["voice_id"],"message":"Invalid Voice ID"}]}',
            "voice_id: Invalid Voice ID",
            "400",
        ),
        (
            401,
            b'{"error":"Unauthorized","message":"Bearer token is missing or invalid."}',
            "Unauthorized: Bearer token is missing or invalid.",
            "401",
        ),
        (500, b"upstream exploded", "upstream exploded", "500"),
        (502, b"", "HTTP 502", "502"),
    ],
)
def test_refusals_in_every_documented_shape_are_read(status, body, message, code):
    error = hp.error_from_http(status, body)
    assert (error.message, error.code) == (message, code)


@pytest.mark.parametrize(
    ("value", "seconds"), [("1", 1.0), ("2.5", 2.5), (None, None), ("x", None), ("-1", None)]
)
def test_retry_after(value, seconds):
    assert hp.retry_after_s(value) == seconds


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://api.smallest.ai", "https://api.smallest.ai/waves/v1/tts/live"),
        ("wss://api.smallest.ai/", "https://api.smallest.ai/waves/v1/tts/live"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/waves/v1/tts/live"),
        ("ws://localhost:9", "http://localhost:9/waves/v1/tts/live"),
    ],
)
def test_sse_url_from_an_origin(base, url):
    assert sse_url(base) == url


@pytest.mark.parametrize(
    ("base", "problem"),
    [
        ("http://api.smallest.ai", "unencrypted"),
        ("https://user:pw@api.smallest.ai", "credentials"),
        ("https://api.smallest.ai/waves/v1/tts/live", "path"),
        ("ftp://api.smallest.ai", "origin"),
    ],
)
def test_sse_url_refuses_what_would_leak_or_double_the_path(base, problem):
    with pytest.raises(ValueError, match=problem):
        sse_url(base)
