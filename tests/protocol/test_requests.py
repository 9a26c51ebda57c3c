"""Client-to-server messages: every validation rule, and the builders."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipecat_waves.protocol import constants as c
from pipecat_waves.protocol.requests import (
    LiveRequest,
    RequestError,
    RequestKind,
    VoiceParams,
    build_cancel,
    build_close,
    build_fragment,
    build_one_shot,
    build_ping,
    parse_request,
)

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

#: Every field the documents name for a live-socket client message.
DOCUMENTED_FIELDS = frozenset(
    {
        "type",
        "voice_id",
        "text",
        "model",
        "language",
        "sample_rate",
        "speed",
        "word_timestamps",
        "math_notation",
        "number_pronunciation_language",
        "session_id",
        "request_id",
        "context_id",
        "continue",
        "max_buffer_delay_ms",
        "context_close",
        "cancel_request",
        "flush",
        "max_buffer_flush_ms",
        "complete_backoff_ms",
        "output_format",
        "content_filter",
    }
)


def one_shot(**fields: Any) -> dict[str, Any]:
    """A valid one-shot message with ``fields`` changed (``None`` removes a field)."""
    msg: dict[str, Any] = {"text": "Hello there.", "voice_id": "sophia"}
    msg.update(fields)
    return {k: v for k, v in msg.items() if v is not None}


def fragment(**fields: Any) -> dict[str, Any]:
    """A valid continuation fragment with ``fields`` changed (``None`` removes a field)."""
    msg: dict[str, Any] = {
        "text": "Hello ",
        "voice_id": "sophia",
        "context_id": "turn-1",
        "continue": True,
    }
    msg.update(fields)
    return {k: v for k, v in msg.items() if v is not None}


def rejected(obj: Any) -> RequestError:
    """Parse ``obj``, expecting a refusal, and return the error."""
    with pytest.raises(RequestError) as info:
        parse_request(obj)
    return info.value


# ------------------------------------------------------------------ message shape


@pytest.mark.parametrize("obj", [[], "text", 3, None, True, [{"text": "hi"}]])
def test_non_object_messages_are_refused(obj: Any) -> None:
    err = rejected(obj)
    assert err.code == "INVALID_MESSAGE"
    assert err.field_name is None


def test_request_error_is_a_value_error_carrying_its_parts() -> None:
    err = RequestError("SOME_CODE", "what went wrong", "field")
    assert isinstance(err, ValueError)
    assert (err.code, err.message, err.field_name, str(err)) == (
        "SOME_CODE",
        "what went wrong",
        "field",
        "what went wrong",
    )


# ---------------------------------------------------------------------- keep-alive


@pytest.mark.parametrize("spelling", sorted(c.PING_TYPES))
def test_every_ping_spelling_is_a_ping(spelling: str) -> None:
    req = parse_request({"type": spelling})
    assert req.kind is RequestKind.PING
    assert req.params is None
    assert req.text == ""


def test_ping_aliases_are_exactly_the_documented_four() -> None:
    assert {"ping", "keepalive", "keep_alive", "keep-alive"} == c.PING_TYPES


def test_ping_ignores_other_fields() -> None:
    req = parse_request({"type": "ping", "text": "not spoken", "voice_id": "x"})
    assert req.kind is RequestKind.PING
    assert req.text == ""


@pytest.mark.parametrize("kind", ["Ping", "PING", "pong", "speak", "", None, 1])
def test_unknown_message_type_is_refused(kind: Any) -> None:
    err = rejected({"type": kind, "text": "hi", "voice_id": "v"})
    assert err.code == "INVALID_FIELD"
    assert err.field_name == "type"


# ------------------------------------------------------------------------ one-shot


def test_minimal_one_shot_gets_documented_defaults() -> None:
    req = parse_request(one_shot())
    assert req.kind is RequestKind.ONE_SHOT
    assert req.text == "Hello there."
    assert req.context_id is None
    assert req.continue_ is False
    assert req.flush is False
    assert req.max_buffer_delay_ms is None
    assert req.session_id is None and req.request_id is None
    assert req.params == VoiceParams(voice_id="sophia")
    assert req.params is not None
    assert req.params.model == "lightning_v3.1"
    assert req.params.sample_rate == 44100
    assert req.params.speed is None
    assert req.params.word_timestamps is False


def test_one_shot_keeps_the_raw_message() -> None:
    msg = one_shot(speed=1.5)
    assert parse_request(msg).raw == msg


def test_raw_message_does_not_affect_equality() -> None:
    assert parse_request(one_shot(extra_field=1)) == parse_request(one_shot())


def test_one_shot_with_every_field_set() -> None:
    req = parse_request(
        one_shot(
            model="lightning_v3.1_pro",
            language="hi",
            sample_rate=8000,
            speed=0.75,
            word_timestamps=True,
            math_notation=False,
            number_pronunciation_language="en",
            output_format="pcm",
            content_filter={"enabled": True, "action": "flag"},
            session_id="sess.1",
            request_id="req_1",
        )
    )
    assert req.kind is RequestKind.ONE_SHOT
    assert req.session_id == "sess.1"
    assert req.request_id == "req_1"
    assert req.params == VoiceParams(
        voice_id="sophia",
        model="lightning_v3.1_pro",
        language="hi",
        sample_rate=8000,
        speed=0.75,
        word_timestamps=True,
        math_notation=False,
        number_pronunciation_language="en",
        content_filter="flag",
    )


@pytest.mark.parametrize("text", ["", " ", "   \n\t "])
def test_empty_one_shot_text_is_refused(text: str) -> None:
    err = rejected(one_shot(text=text))
    assert err.field_name == "text"
    assert err.code == "INVALID_FIELD"


def test_one_shot_without_text_is_refused() -> None:
    err = rejected({"voice_id": "sophia"})
    assert (err.code, err.field_name) == ("MISSING_FIELD", "text")


@pytest.mark.parametrize("text", [5, 1.5, True, ["hi"], {"t": "hi"}])
def test_text_must_be_a_string(text: Any) -> None:
    err = rejected(one_shot(text=text))
    assert (err.code, err.field_name) == ("INVALID_FIELD", "text")


def test_text_length_limit() -> None:
    at_limit = "a" * c.MAX_HTTP_TEXT_CHARS
    assert parse_request(one_shot(text=at_limit)).text == at_limit
    err = rejected(one_shot(text=at_limit + "a"))
    assert (err.code, err.field_name) == ("TEXT_TOO_LONG", "text")


def test_text_is_kept_verbatim() -> None:
    text = "  Spaces matter.  Keep them "
    assert parse_request(one_shot(text=text)).text == text


def test_one_shot_needs_a_voice() -> None:
    err = rejected(one_shot(voice_id=None))
    assert (err.code, err.field_name) == ("MISSING_FIELD", "voice_id")
    err = rejected(one_shot(voice_id=""))
    assert (err.code, err.field_name) == ("MISSING_FIELD", "voice_id")


@pytest.mark.parametrize("voice_id", [7, True, ["sophia"], {"id": "sophia"}])
def test_voice_id_must_be_a_string(voice_id: Any) -> None:
    err = rejected(one_shot(voice_id=voice_id))
    assert (err.code, err.field_name) == ("INVALID_FIELD", "voice_id")


# --------------------------------------------------------------- enums and ranges


@pytest.mark.parametrize("model", sorted(c.MODELS))
def test_documented_models_are_accepted(model: str) -> None:
    params = parse_request(one_shot(model=model)).params
    assert params is not None and params.model == model


@pytest.mark.parametrize("model", ["lightning", "lightning-v3.1", "LIGHTNING_V3.1", "", 3])
def test_other_models_are_refused(model: Any) -> None:
    err = rejected(one_shot(model=model))
    assert err.field_name == "model"


@pytest.mark.parametrize("language", sorted(c.LANGUAGES))
def test_every_documented_language_is_accepted(language: str) -> None:
    params = parse_request(
        one_shot(language=language, number_pronunciation_language=language)
    ).params
    assert params is not None
    assert params.language == language
    assert params.number_pronunciation_language == language


def test_language_list_is_the_documented_one() -> None:
    assert len(c.LANGUAGES) == 32
    assert {"auto", "en", "hi", "zh", "vi"} <= c.LANGUAGES


@pytest.mark.parametrize("language", ["EN", "en-US", "english", "xx", "", 1])
def test_unknown_language_is_refused(language: Any) -> None:
    assert rejected(one_shot(language=language)).field_name == "language"


@pytest.mark.parametrize("language", ["EN", "xx", 1])
def test_unknown_number_pronunciation_language_is_refused(language: Any) -> None:
    err = rejected(one_shot(number_pronunciation_language=language))
    assert err.field_name == "number_pronunciation_language"


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 44100])
def test_documented_sample_rates_are_accepted(rate: int) -> None:
    params = parse_request(one_shot(sample_rate=rate)).params
    assert params is not None and params.sample_rate == rate


@pytest.mark.parametrize("rate", [0, -16000, 22050, 48000, 11025, 32000, 16000.0, "16000", True])
def test_other_sample_rates_are_refused(rate: Any) -> None:
    assert rejected(one_shot(sample_rate=rate)).field_name == "sample_rate"


@pytest.mark.parametrize("speed", [0.5, 1, 1.0, 1.25, 2, 2.0])
def test_speed_in_range_is_accepted_as_float(speed: float) -> None:
    params = parse_request(one_shot(speed=speed)).params
    assert params is not None
    assert params.speed == float(speed)
    assert type(params.speed) is float


@pytest.mark.parametrize(
    "speed", [0.49, 0.0, -1.0, 2.01, 3, float("nan"), float("inf"), float("-inf"), "1.0", True]
)
def test_speed_out_of_range_or_wrong_type_is_refused(speed: Any) -> None:
    assert rejected(one_shot(speed=speed)).field_name == "speed"


@pytest.mark.parametrize("name", ["word_timestamps", "math_notation"])
@pytest.mark.parametrize("value", [1, 0, "true", "false", 1.0])
def test_boolean_voice_fields_refuse_non_booleans(name: str, value: Any) -> None:
    err = rejected(one_shot(**{name: value}))
    assert (err.code, err.field_name) == ("INVALID_FIELD", name)


def test_word_timestamps_false_and_math_notation_true() -> None:
    params = parse_request(one_shot(word_timestamps=False, math_notation=True)).params
    assert params is not None
    assert params.word_timestamps is False
    assert params.math_notation is True


def test_output_format_must_be_pcm_on_the_socket() -> None:
    assert parse_request(one_shot(output_format="pcm")).kind is RequestKind.ONE_SHOT
    for fmt in ("mp3", "wav", "ulaw", "alaw", "PCM"):
        assert rejected(one_shot(output_format=fmt)).field_name == "output_format"
    assert rejected(one_shot(output_format=1)).field_name == "output_format"


@pytest.mark.parametrize(
    ("content_filter", "expected"),
    [
        ({"enabled": True, "action": "reject"}, "reject"),
        ({"enabled": True, "action": "flag"}, "flag"),
        ({"enabled": True}, "reject"),  # reject is the default action
        ({"enabled": False, "action": "flag"}, None),
        ({}, None),
    ],
)
def test_content_filter(content_filter: dict[str, Any], expected: str | None) -> None:
    params = parse_request(one_shot(content_filter=content_filter)).params
    assert params is not None and params.content_filter == expected


@pytest.mark.parametrize(
    "content_filter", [True, "reject", ["reject"], {"enabled": True, "action": "x"}]
)
def test_bad_content_filter_is_refused(content_filter: Any) -> None:
    assert rejected(one_shot(content_filter=content_filter)).field_name == "content_filter"


# --------------------------------------------------------------------------- ids


@pytest.mark.parametrize("name", ["context_id", "session_id", "request_id"])
@pytest.mark.parametrize(
    "value", ["a", "A-z_0.9", "turn-12.part_3", "x" * c.ID_MAX_LENGTH, "...", "-_-"]
)
def test_valid_ids_are_accepted(name: str, value: str) -> None:
    base = fragment() if name == "context_id" else one_shot()
    req = parse_request({**base, name: value})
    assert getattr(req, name) == value


@pytest.mark.parametrize("name", ["context_id", "session_id", "request_id"])
@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * (c.ID_MAX_LENGTH + 1),
        "has space",
        "slash/no",
        "colon:no",
        "üñí",
        "tab\tno",
        "trailing-newline\n",
        "\nleading-newline",
        5,
        True,
        ["a"],
    ],
)
def test_invalid_ids_are_refused(name: str, value: Any) -> None:
    base = fragment() if name == "context_id" else one_shot()
    err = rejected({**base, name: value})
    assert (err.code, err.field_name) == ("INVALID_FIELD", name)


def test_is_valid_id_agrees_with_the_pattern_and_limit() -> None:
    assert c.is_valid_id("abc")
    assert c.is_valid_id("a" * 128)
    assert not c.is_valid_id("a" * 129)
    assert not c.is_valid_id("")
    assert not c.is_valid_id("abc\n")
    assert not c.is_valid_id(None)
    assert not c.is_valid_id(12)


# ------------------------------------------------------------------ continuations


def test_fragment_with_more_to_come() -> None:
    req = parse_request(fragment(max_buffer_delay_ms=250))
    assert req.kind is RequestKind.FRAGMENT
    assert req.context_id == "turn-1"
    assert req.continue_ is True
    assert req.max_buffer_delay_ms == 250
    assert req.text == "Hello "
    assert req.params is not None and req.params.voice_id == "sophia"


def test_last_fragment_may_carry_text() -> None:
    req = parse_request(fragment(text="world.", **{"continue": False}))
    assert req.kind is RequestKind.FRAGMENT
    assert req.continue_ is False
    assert req.text == "world."


def test_continue_defaults_to_false() -> None:
    req = parse_request(fragment(**{"continue": None}))
    assert req.kind is RequestKind.FRAGMENT
    assert req.continue_ is False


@pytest.mark.parametrize("value", [1, 0, 1.0, "true"])
def test_continue_must_be_boolean(value: Any) -> None:
    err = rejected(fragment(**{"continue": value}))
    assert (err.code, err.field_name) == ("INVALID_FIELD", "continue")


def test_empty_closing_fragment_needs_no_voice() -> None:
    req = parse_request({"text": "", "context_id": "turn-1", "continue": False})
    assert req.kind is RequestKind.FRAGMENT
    assert req.params is None
    assert req.text == ""


def test_closing_fragment_without_text_field_is_accepted() -> None:
    req = parse_request({"context_id": "turn-1", "continue": False})
    assert req.kind is RequestKind.FRAGMENT
    assert req.text == ""
    assert req.params is None


def test_empty_closing_fragment_keeps_its_voice_when_given() -> None:
    req = parse_request(fragment(text="", **{"continue": False}))
    assert req.params is not None and req.params.voice_id == "sophia"


def test_fragment_with_text_needs_a_voice() -> None:
    err = rejected(fragment(voice_id=None))
    assert (err.code, err.field_name) == ("MISSING_FIELD", "voice_id")
    err = rejected(fragment(voice_id=None, text="end.", **{"continue": False}))
    assert (err.code, err.field_name) == ("MISSING_FIELD", "voice_id")


def test_empty_fragment_that_continues_needs_a_voice() -> None:
    # Only the *closing* empty frame is exempt.
    err = rejected({"text": "", "context_id": "turn-1", "continue": True})
    assert err.field_name == "voice_id"


def test_whitespace_fragment_is_allowed() -> None:
    # Fragments are joined as sent, so a lone space is meaningful.
    req = parse_request(fragment(text=" "))
    assert req.kind is RequestKind.FRAGMENT
    assert req.text == " "


@pytest.mark.parametrize("delay", [0, 1, 3000, 5000])
def test_max_buffer_delay_in_range(delay: int) -> None:
    assert parse_request(fragment(max_buffer_delay_ms=delay)).max_buffer_delay_ms == delay


@pytest.mark.parametrize("delay", [-1, 5001, 10_000, 100.0, "100", True, False])
def test_max_buffer_delay_out_of_range_or_wrong_type(delay: Any) -> None:
    assert rejected(fragment(max_buffer_delay_ms=delay)).field_name == "max_buffer_delay_ms"


@pytest.mark.parametrize(
    ("extra", "field_name"),
    [
        ({"flush": True}, "flush"),
        ({"flush": False}, "flush"),  # the field's presence is the error
        ({"max_buffer_flush_ms": 100}, "max_buffer_flush_ms"),
        ({"flush": True, "max_buffer_flush_ms": 100}, "flush"),
    ],
)
def test_legacy_buffering_with_context_id_is_an_error(
    extra: dict[str, Any], field_name: str
) -> None:
    err = rejected(fragment(**extra))
    assert (err.code, err.field_name) == ("INVALID_FIELD", field_name)


def test_fragment_voice_fields_are_validated_too() -> None:
    assert rejected(fragment(sample_rate=22050)).field_name == "sample_rate"
    assert rejected(fragment(speed=5)).field_name == "speed"


# ----------------------------------------------------------------- cancel / close


def test_cancel_without_voice() -> None:
    req = parse_request({"context_id": "turn-1", "cancel_request": True})
    assert req.kind is RequestKind.CANCEL
    assert req.context_id == "turn-1"
    assert req.params is None
    assert req.text == ""


def test_close_without_voice() -> None:
    req = parse_request({"text": "", "context_id": "turn-1", "context_close": True})
    assert req.kind is RequestKind.CLOSE
    assert req.params is None


def test_cancel_and_close_keep_a_voice_when_given() -> None:
    for flag, kind in (
        ("cancel_request", RequestKind.CANCEL),
        ("context_close", RequestKind.CLOSE),
    ):
        req = parse_request({"text": "", "voice_id": "v", "context_id": "c", flag: True})
        assert req.kind is kind
        assert req.params is not None and req.params.voice_id == "v"


def test_cancel_wins_over_close() -> None:
    req = parse_request({"context_id": "c", "cancel_request": True, "context_close": True})
    assert req.kind is RequestKind.CANCEL


def test_false_flags_make_a_plain_fragment() -> None:
    req = parse_request(fragment(cancel_request=False, context_close=False))
    assert req.kind is RequestKind.FRAGMENT


@pytest.mark.parametrize("flag", ["cancel_request", "context_close"])
def test_cancel_and_close_need_a_context(flag: str) -> None:
    err = rejected({"text": "", "voice_id": "v", flag: True})
    assert (err.code, err.field_name) == ("MISSING_FIELD", "context_id")


@pytest.mark.parametrize("flag", ["cancel_request", "context_close"])
@pytest.mark.parametrize("value", [1, "true"])
def test_cancel_and_close_flags_must_be_boolean(flag: str, value: Any) -> None:
    err = rejected({"context_id": "c", flag: value})
    assert (err.code, err.field_name) == ("INVALID_FIELD", flag)


def test_cancel_with_invalid_context_id_is_refused() -> None:
    err = rejected({"context_id": "bad id", "cancel_request": True})
    assert err.field_name == "context_id"


# ------------------------------------------------------------------------- legacy


@pytest.mark.parametrize(
    "extra",
    [
        {"flush": True},
        {"continue": True},
        {"max_buffer_flush_ms": 200},
        {"flush": False, "continue": True},
    ],
)
def test_legacy_buffering_without_context(extra: dict[str, Any]) -> None:
    req = parse_request(one_shot(**extra))
    assert req.kind is RequestKind.LEGACY
    assert req.flush is bool(extra.get("flush"))
    assert req.continue_ is bool(extra.get("continue"))


def test_legacy_flush_may_be_empty() -> None:
    req = parse_request(one_shot(text="", flush=True))
    assert req.kind is RequestKind.LEGACY
    assert req.text == ""


def test_legacy_still_needs_a_voice() -> None:
    assert rejected(one_shot(voice_id=None, flush=True)).field_name == "voice_id"


def test_flush_false_alone_is_still_one_shot() -> None:
    assert parse_request(one_shot(flush=False)).kind is RequestKind.ONE_SHOT


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("flush", 1),
        ("flush", "yes"),
        ("max_buffer_flush_ms", 1.5),
        ("max_buffer_flush_ms", "100"),
        ("max_buffer_flush_ms", True),
        ("max_buffer_flush_ms", -1),
        ("max_buffer_flush_ms", 1001),
        ("complete_backoff_ms", "4000"),
        ("complete_backoff_ms", False),
        ("complete_backoff_ms", -0.5),
        ("complete_backoff_ms", 10000.5),
        ("complete_backoff_ms", float("nan")),
    ],
)
def test_legacy_fields_are_type_and_range_checked(name: str, value: Any) -> None:
    err = rejected(one_shot(**{name: value}))
    assert (err.code, err.field_name) == ("INVALID_FIELD", name)


@pytest.mark.parametrize("value", [0, 4000, 4000.0, 2.5, 10000])
def test_complete_backoff_is_a_number_as_documented(value: Any) -> None:
    # The official SDK types it as a float and sends 4000.0.
    assert parse_request(one_shot(complete_backoff_ms=value)).kind is RequestKind.ONE_SHOT


# ----------------------------------------------------------------------- builders


PARAM_VARIANTS = [
    VoiceParams(voice_id="sophia"),
    VoiceParams(voice_id="meher", model="lightning_v3.1_pro", sample_rate=8000),
    VoiceParams(
        voice_id="avery",
        model="lightning_v3.1",
        language="en",
        sample_rate=24000,
        speed=1.5,
        word_timestamps=True,
        math_notation=True,
        number_pronunciation_language="hi",
        content_filter="reject",
    ),
    VoiceParams(voice_id="liam", sample_rate=16000, speed=0.5, math_notation=False),
    VoiceParams(voice_id="kartik", content_filter="flag", language="auto"),
]


def assert_documented(msg: dict[str, Any]) -> None:
    """Every key is documented, and the message survives a JSON round trip."""
    assert set(msg) <= DOCUMENTED_FIELDS, set(msg) - DOCUMENTED_FIELDS
    assert json.loads(json.dumps(msg)) == msg


@pytest.mark.parametrize("params", PARAM_VARIANTS)
def test_one_shot_builder_round_trips(params: VoiceParams) -> None:
    msg = build_one_shot("Good morning.", params, request_id="r-1", session_id="s.1")
    assert_documented(msg)
    req = parse_request(json.loads(json.dumps(msg)))
    assert req == LiveRequest(
        kind=RequestKind.ONE_SHOT,
        text="Good morning.",
        params=params,
        request_id="r-1",
        session_id="s.1",
    )


def test_one_shot_builder_omits_unset_optionals() -> None:
    msg = build_one_shot("Hi.", VoiceParams(voice_id="sophia"))
    assert msg == {
        "text": "Hi.",
        "voice_id": "sophia",
        "model": "lightning_v3.1",
        "sample_rate": 44100,
    }


def test_word_timestamps_only_sent_when_wanted() -> None:
    on = build_one_shot("Hi.", VoiceParams(voice_id="v", word_timestamps=True))
    off = build_one_shot("Hi.", VoiceParams(voice_id="v", word_timestamps=False))
    assert on["word_timestamps"] is True
    assert "word_timestamps" not in off


def test_content_filter_builder_shape() -> None:
    msg = build_one_shot("Hi.", VoiceParams(voice_id="v", content_filter="flag"))
    assert msg["content_filter"] == {"enabled": True, "action": "flag"}


@pytest.mark.parametrize("params", PARAM_VARIANTS)
@pytest.mark.parametrize("more", [True, False])
def test_fragment_builder_round_trips(params: VoiceParams, more: bool) -> None:
    msg = build_fragment(
        "Part one, ",
        params,
        context_id="ctx-9",
        more=more,
        max_buffer_delay_ms=500,
        request_id="frag.1",
        session_id="sess",
    )
    assert_documented(msg)
    assert msg["continue"] is more
    req = parse_request(json.loads(json.dumps(msg)))
    assert req == LiveRequest(
        kind=RequestKind.FRAGMENT,
        text="Part one, ",
        params=params,
        context_id="ctx-9",
        continue_=more,
        max_buffer_delay_ms=500,
        request_id="frag.1",
        session_id="sess",
    )


def test_fragment_builder_minimal() -> None:
    msg = build_fragment("x", VoiceParams(voice_id="v"), context_id="c", more=True)
    assert msg == {
        "text": "x",
        "voice_id": "v",
        "model": "lightning_v3.1",
        "sample_rate": 44100,
        "context_id": "c",
        "continue": True,
    }
    # Never legacy buffering fields: the server would refuse them beside context_id.
    assert "flush" not in msg and "max_buffer_flush_ms" not in msg


def test_empty_closing_fragment_round_trips() -> None:
    msg = build_fragment("", VoiceParams(voice_id="v"), context_id="c", more=False)
    req = parse_request(msg)
    assert req.kind is RequestKind.FRAGMENT
    assert req.continue_ is False
    assert req.text == ""


@pytest.mark.parametrize("voice_id", [None, "", "sophia"])
def test_cancel_builder_round_trips(voice_id: str | None) -> None:
    msg = build_cancel("turn-3", voice_id)
    assert_documented(msg)
    assert msg["cancel_request"] is True
    assert msg["text"] == ""
    assert ("voice_id" in msg) is bool(voice_id)
    req = parse_request(msg)
    assert req.kind is RequestKind.CANCEL
    assert req.context_id == "turn-3"
    assert (req.params.voice_id if req.params else None) == (voice_id or None)


@pytest.mark.parametrize("voice_id", [None, "", "sophia"])
def test_close_builder_round_trips(voice_id: str | None) -> None:
    msg = build_close("turn-3", voice_id)
    assert_documented(msg)
    assert msg["context_close"] is True
    assert ("voice_id" in msg) is bool(voice_id)
    req = parse_request(msg)
    assert req.kind is RequestKind.CLOSE
    assert req.context_id == "turn-3"


def test_ping_builder_round_trips() -> None:
    msg = build_ping()
    assert msg == {"type": "ping"}
    assert parse_request(msg).kind is RequestKind.PING


def test_builders_return_fresh_dicts() -> None:
    a = build_one_shot("a", VoiceParams(voice_id="v"))
    a["text"] = "changed"
    assert build_one_shot("a", VoiceParams(voice_id="v"))["text"] == "a"
