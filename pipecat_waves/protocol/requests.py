"""Client-to-server messages: building them (client) and validating them (server).

The live socket carries one JSON object per text frame. Apart from the
keep-alive (``{"type": "ping"}``) no message has a type field: what a message
*is* follows from which fields it sets. :func:`parse_request` turns a decoded
object into a :class:`LiveRequest` or raises :class:`RequestError` naming the
field at fault; the builders produce only documented fields, so a strict server
never sees anything it could reject.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any

from pipecat_waves.protocol import constants as c


class RequestKind(enum.Enum):
    """What a client message asks for."""

    PING = "ping"
    ONE_SHOT = "one_shot"  # no context_id: synthesize this text now
    LEGACY = "legacy"  # no context_id, with continue/flush: legacy server-side buffering
    FRAGMENT = "fragment"  # context_id: part of a continuation
    CANCEL = "cancel"  # context_id + cancel_request: drop buffered text
    CLOSE = "close"  # context_id + context_close: end the context now


class RequestError(ValueError):
    """A client message the server must refuse.

    Attributes:
        code: Stable machine-readable code, e.g. ``INVALID_FIELD``.
        message: Sentence naming the field and what would be accepted.
        field_name: The offending field, when there is one.
    """

    def __init__(self, code: str, message: str, field_name: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_name = field_name


@dataclass(frozen=True)
class VoiceParams:
    """Synthesis parameters that apply to a whole fragment or request."""

    voice_id: str
    model: str = c.DEFAULT_MODEL
    language: str | None = None
    sample_rate: int = c.DEFAULT_SAMPLE_RATE
    speed: float | None = None
    word_timestamps: bool = False
    math_notation: bool | None = None
    number_pronunciation_language: str | None = None
    content_filter: str | None = None  # "reject" | "flag"
    #: Ids of pronunciation dictionaries. Documented for HTTP only; on the live
    #: socket a server may take, ignore or refuse the field.
    pronunciation_dicts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LiveRequest:
    """A validated client message (server side)."""

    kind: RequestKind
    text: str = ""
    params: VoiceParams | None = None
    context_id: str | None = None
    continue_: bool = False
    max_buffer_delay_ms: int | None = None
    session_id: str | None = None
    request_id: str | None = None
    # Legacy (context-less) buffering.
    flush: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# --------------------------------------------------------------------- building


def _voice_fields(params: VoiceParams) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "voice_id": params.voice_id,
        "model": params.model,
        "sample_rate": params.sample_rate,
    }
    if params.language is not None:
        msg["language"] = params.language
    if params.speed is not None:
        msg["speed"] = params.speed
    if params.word_timestamps:
        msg["word_timestamps"] = True
    if params.math_notation is not None:
        msg["math_notation"] = params.math_notation
    if params.number_pronunciation_language is not None:
        msg["number_pronunciation_language"] = params.number_pronunciation_language
    if params.content_filter is not None:
        msg["content_filter"] = {"enabled": True, "action": params.content_filter}
    if params.pronunciation_dicts:
        msg["pronunciation_dicts"] = list(params.pronunciation_dicts)
    return msg


def build_fragment(
    text: str,
    params: VoiceParams,
    *,
    context_id: str,
    more: bool,
    max_buffer_delay_ms: int | None = None,
    request_id: str | None = None,
    session_id: str | None = None,
    complete_backoff_ms: int | None = None,
) -> dict[str, Any]:
    """Build one continuation fragment.

    Args:
        text: The fragment, spaces included: the server joins fragments as sent.
        params: Voice and audio parameters.
        context_id: The continuation this fragment belongs to.
        more: ``True`` while more fragments follow (``continue: true``).
        max_buffer_delay_ms: Longest the server may hold the fragment waiting
            for a sentence boundary.
        request_id: Our own id, echoed back as ``external_request_id`` by servers
            that echo it.
        session_id: Our own session id, echoed as ``external_session_id``.
        complete_backoff_ms: How long the server may hold back each
            segment's ``complete`` (documented default: 4000 ms).
    """
    msg = {"text": text, **_voice_fields(params), "context_id": context_id, "continue": more}
    if max_buffer_delay_ms is not None:
        msg["max_buffer_delay_ms"] = max_buffer_delay_ms
    if complete_backoff_ms is not None:
        msg["complete_backoff_ms"] = complete_backoff_ms
    if request_id is not None:
        msg["request_id"] = request_id
    if session_id is not None:
        msg["session_id"] = session_id
    return msg


def build_one_shot(
    text: str,
    params: VoiceParams,
    *,
    request_id: str | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    """Build a context-less request that is synthesized at once."""
    msg = {"text": text, **_voice_fields(params)}
    if request_id is not None:
        msg["request_id"] = request_id
    if session_id is not None:
        msg["session_id"] = session_id
    return msg


def build_cancel(context_id: str, voice_id: str | None = None) -> dict[str, Any]:
    """Build the barge-in message: drop whatever the context still has buffered.

    ``voice_id`` and an empty ``text`` are included when known because the
    oldest documents call both required on every message.
    """
    msg: dict[str, Any] = {"text": "", "context_id": context_id, "cancel_request": True}
    if voice_id:
        msg["voice_id"] = voice_id
    return msg


def build_close(context_id: str, voice_id: str | None = None) -> dict[str, Any]:
    """Build the message that ends a context immediately (``context_close``)."""
    msg: dict[str, Any] = {"text": "", "context_id": context_id, "context_close": True}
    if voice_id:
        msg["voice_id"] = voice_id
    return msg


def build_ping() -> dict[str, Any]:
    """Build the keep-alive; the server answers ``{"type": "pong"}``, never audio."""
    return {"type": "ping"}


# ------------------------------------------------------------------- validation

#: Largest text frame the server reads, in UTF-8 bytes.
MAX_FRAME_BYTES = 64 * 1024


def load_frame(data: str) -> Any:
    """Decode one text frame, refusing what is too big or not JSON.

    Raises:
        RequestError: ``MESSAGE_TOO_LARGE`` or ``INVALID_JSON`` (this includes
            nesting too deep to decode and numbers too long to read).
    """
    if len(data) > MAX_FRAME_BYTES or len(data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise RequestError("MESSAGE_TOO_LARGE", f"message larger than {MAX_FRAME_BYTES} bytes")
    try:
        return json.loads(data)
    except RecursionError:
        raise RequestError("INVALID_JSON", "message is nested too deeply") from None
    except ValueError:  # JSONDecodeError, and integers longer than Python reads
        raise RequestError("INVALID_JSON", "message is not valid JSON") from None


def parse_frame(data: str) -> LiveRequest:
    """Decode and validate one text frame: :func:`load_frame`, then :func:`parse_request`.

    Raises:
        RequestError: Whatever is wrong with it; nothing else.
    """
    return parse_request(load_frame(data))


def _shown(value: Any) -> str:
    """A client value quoted in an error, short whatever it holds."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40] + "…")
    return f"a JSON {_json_type(value)}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _in_range(value: int | float, low: float, high: float) -> bool:
    """``low <= value <= high`` for any JSON number: NaN fails, huge ints do not overflow."""
    if isinstance(value, float) and math.isnan(value):
        return False
    return low <= value <= high


def _require_type(obj: dict[str, Any], name: str, types: tuple[type, ...], what: str) -> Any:
    value = obj.get(name)
    # bool is an int subclass; never accept it where a number is meant.
    if value is None:
        return None
    if isinstance(value, bool) and bool not in types:
        raise RequestError("INVALID_FIELD", f"'{name}' must be {what}", name)
    if not isinstance(value, types):
        raise RequestError("INVALID_FIELD", f"'{name}' must be {what}", name)
    return value


def _require_range(
    obj: dict[str, Any],
    name: str,
    types: tuple[type, ...],
    what: str,
    low: float,
    high: float,
) -> Any:
    value = _require_type(obj, name, types, what)
    if value is not None and not _in_range(value, low, high):
        raise RequestError("INVALID_FIELD", f"'{name}' must be between {low} and {high}", name)
    return value


def _check_id(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not c.is_valid_id(value):
        raise RequestError(
            "INVALID_FIELD",
            f"'{name}' must match {c.ID_PATTERN.pattern} and be at most "
            f"{c.ID_MAX_LENGTH} characters",
            name,
        )
    return str(value)


def _parse_voice_params(obj: dict[str, Any], voice_required: bool) -> VoiceParams | None:
    voice_id = _require_type(obj, "voice_id", (str,), "a string")
    if not voice_id:
        if voice_required:
            raise RequestError("MISSING_FIELD", "'voice_id' is required", "voice_id")
        return None

    model = _require_type(obj, "model", (str,), "a string")
    if model is None:
        model = c.DEFAULT_MODEL
    if model not in c.MODELS:
        raise RequestError(
            "INVALID_FIELD", f"'model' must be one of {', '.join(sorted(c.MODELS))}", "model"
        )
    language = _require_type(obj, "language", (str,), "a string")
    if language is not None and language not in c.LANGUAGES:
        raise RequestError(
            "INVALID_FIELD", f"'language' {_shown(language)} is not supported", "language"
        )
    sample_rate = _require_type(obj, "sample_rate", (int,), "an integer")
    if sample_rate is None:
        sample_rate = c.DEFAULT_SAMPLE_RATE
    if sample_rate not in c.SAMPLE_RATES:
        raise RequestError(
            "INVALID_FIELD",
            f"'sample_rate' must be one of {', '.join(map(str, c.SAMPLE_RATES))}",
            "sample_rate",
        )
    speed = _require_type(obj, "speed", (int, float), "a number")
    if speed is not None and not _in_range(speed, c.SPEED_MIN, c.SPEED_MAX):
        raise RequestError(
            "INVALID_FIELD", f"'speed' must be between {c.SPEED_MIN} and {c.SPEED_MAX}", "speed"
        )
    word_timestamps = _require_type(obj, "word_timestamps", (bool,), "a boolean") or False
    math_notation = _require_type(obj, "math_notation", (bool,), "a boolean")
    npl = _require_type(obj, "number_pronunciation_language", (str,), "a string")
    if npl is not None and npl not in c.LANGUAGES:
        raise RequestError(
            "INVALID_FIELD",
            f"'number_pronunciation_language' {_shown(npl)} is not supported",
            "number_pronunciation_language",
        )
    output_format = _require_type(obj, "output_format", (str,), "a string")
    if output_format is not None and output_format != "pcm":
        raise RequestError(
            "INVALID_FIELD", "'output_format' on the live socket must be 'pcm'", "output_format"
        )
    content_filter = None
    cf = _require_type(obj, "content_filter", (dict,), "an object")
    if cf is not None and cf.get("enabled"):
        action = cf.get("action", "reject")
        if action not in ("reject", "flag"):
            raise RequestError(
                "INVALID_FIELD",
                "'content_filter.action' must be 'reject' or 'flag'",
                "content_filter",
            )
        content_filter = action
    dicts = _require_type(obj, "pronunciation_dicts", (list,), "an array of dictionary ids")
    if dicts is not None and not all(isinstance(d, str) and d for d in dicts):
        raise RequestError(
            "INVALID_FIELD",
            "'pronunciation_dicts' must be an array of dictionary ids",
            "pronunciation_dicts",
        )
    return VoiceParams(
        voice_id=voice_id,
        model=model,
        language=language,
        sample_rate=sample_rate,
        speed=float(speed) if speed is not None else None,
        word_timestamps=word_timestamps,
        math_notation=math_notation,
        number_pronunciation_language=npl,
        content_filter=content_filter,
        pronunciation_dicts=tuple(dicts) if dicts else None,
    )


def parse_request(obj: Any) -> LiveRequest:
    """Validate one decoded client message.

    Args:
        obj: The result of ``json.loads`` on a text frame.

    Returns:
        The request, classified by :class:`RequestKind`.

    Raises:
        RequestError: The message breaks a documented rule; the error names it.
    """
    if not isinstance(obj, dict):
        raise RequestError("INVALID_MESSAGE", "each message must be a JSON object")

    if "type" in obj:
        kind = obj["type"]
        if isinstance(kind, str) and kind in c.PING_TYPES:
            return LiveRequest(kind=RequestKind.PING, raw=obj)
        raise RequestError("INVALID_FIELD", f"unknown message type {_shown(kind)}", "type")

    text = obj.get("text")
    if text is None:
        text = ""
        if not (obj.get("context_id") is not None):
            raise RequestError("MISSING_FIELD", "'text' is required", "text")
    if not isinstance(text, str):
        raise RequestError("INVALID_FIELD", "'text' must be a string", "text")
    if len(text) > c.MAX_HTTP_TEXT_CHARS:
        raise RequestError(
            "TEXT_TOO_LONG", f"'text' must be at most {c.MAX_HTTP_TEXT_CHARS} characters", "text"
        )

    context_id = _check_id(obj, "context_id")
    session_id = _check_id(obj, "session_id")
    request_id = _check_id(obj, "request_id")
    more = _require_type(obj, "continue", (bool,), "a boolean") or False
    cancel = _require_type(obj, "cancel_request", (bool,), "a boolean") or False
    close = _require_type(obj, "context_close", (bool,), "a boolean") or False
    flush = _require_type(obj, "flush", (bool,), "a boolean") or False
    _require_range(obj, "max_buffer_flush_ms", (int,), "an integer", 0, c.MAX_BUFFER_FLUSH_MS)
    # A number, as documented: the official SDK sends it as a float (4000.0).
    _require_range(
        obj, "complete_backoff_ms", (int, float), "a number", 0, c.MAX_COMPLETE_BACKOFF_MS
    )
    delay = _require_type(obj, "max_buffer_delay_ms", (int,), "an integer")
    if delay is not None and not (c.MAX_BUFFER_DELAY_MS_MIN <= delay <= c.MAX_BUFFER_DELAY_MS_MAX):
        raise RequestError(
            "INVALID_FIELD",
            f"'max_buffer_delay_ms' must be between {c.MAX_BUFFER_DELAY_MS_MIN} and "
            f"{c.MAX_BUFFER_DELAY_MS_MAX}",
            "max_buffer_delay_ms",
        )

    if context_id is not None:
        if "flush" in obj or "max_buffer_flush_ms" in obj:
            raise RequestError(
                "INVALID_FIELD",
                "'flush' and 'max_buffer_flush_ms' cannot be combined with 'context_id'",
                "flush" if "flush" in obj else "max_buffer_flush_ms",
            )
        if cancel or close:
            kind = RequestKind.CANCEL if cancel else RequestKind.CLOSE
            params = _parse_voice_params(obj, voice_required=False)
        else:
            kind = RequestKind.FRAGMENT
            closing_empty = not more and text == ""
            params = _parse_voice_params(obj, voice_required=not closing_empty)
    else:
        if cancel or close:
            name = "cancel_request" if cancel else "context_close"
            raise RequestError("MISSING_FIELD", f"'{name}' needs a 'context_id'", "context_id")
        legacy = flush or more or "max_buffer_flush_ms" in obj
        kind = RequestKind.LEGACY if legacy else RequestKind.ONE_SHOT
        params = _parse_voice_params(obj, voice_required=True)
        if not text.strip() and not legacy:
            raise RequestError("INVALID_FIELD", "'text' must not be empty", "text")

    return LiveRequest(
        kind=kind,
        text=text,
        params=params,
        context_id=context_id,
        continue_=more,
        max_buffer_delay_ms=delay,
        session_id=session_id,
        request_id=request_id,
        flush=flush,
        raw=obj,
    )
