"""Server-to-client messages: parsing them (client) and building them (server).

Every server message is a JSON envelope with ``status`` (``chunk``,
``word_timestamp``, ``complete``, ``error``) or, for the keep-alive answer,
``{"type": "pong"}``. The envelope names the server's ``request_id`` (new for
every released segment) and echoes ``external_request_id`` only when the
client sent a ``request_id`` and the server chose to echo it. No message ever
names the ``context_id`` it belongs to.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, TypeGuard


@dataclass(frozen=True)
class Envelope:
    """Routing fields common to every status message."""

    request_id: str | None = None
    external_request_id: str | None = None
    session_id: str | None = None
    external_session_id: str | None = None


@dataclass(frozen=True)
class AudioChunk:
    """Raw PCM bytes of one segment. May end in the middle of a sample."""

    envelope: Envelope
    audio: bytes


@dataclass(frozen=True)
class WordTimestamp:
    """Timing of one word, in seconds from the start of its *segment's* audio."""

    envelope: Envelope
    word: str
    start: float
    end: float | None


@dataclass(frozen=True)
class SegmentComplete:
    """All audio of one released segment has been sent."""

    envelope: Envelope


@dataclass(frozen=True)
class ServerError:
    """The server refused a request or gave up on the connection."""

    envelope: Envelope
    message: str
    code: str | None = None


@dataclass(frozen=True)
class Pong:
    """Answer to a keep-alive."""


@dataclass(frozen=True)
class Unrecognized:
    """A message this client does not understand; logged and otherwise ignored."""

    raw: Any


ServerEvent = AudioChunk | WordTimestamp | SegmentComplete | ServerError | Pong | Unrecognized


class ResponseError(ValueError):
    """A server message that is not valid JSON, or whose audio is not valid base64."""


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _is_number(value: Any) -> TypeGuard[int | float]:
    # bool is an int subclass, but true/false is no time.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _envelope(obj: dict[str, Any]) -> Envelope:
    return Envelope(
        request_id=_str_or_none(obj.get("request_id")),
        external_request_id=_str_or_none(obj.get("external_request_id")),
        session_id=_str_or_none(obj.get("session_id")),
        external_session_id=_str_or_none(obj.get("external_session_id")),
    )


def _error_fields(obj: dict[str, Any]) -> tuple[str, str | None]:
    """Read both documented error shapes: flat ``message`` or nested ``error``."""
    code: str | None = None
    message: str | None = None
    nested = obj.get("error")
    if isinstance(nested, dict):
        code = _str_or_none(nested.get("code"))
        message = _str_or_none(nested.get("message"))
    elif isinstance(nested, str):
        message = nested
    if message is None:
        message = _str_or_none(obj.get("message"))
    if code is None:
        code = _str_or_none(obj.get("code"))
    return message or "unspecified server error", code


def parse_event(obj: Any) -> ServerEvent:
    """Classify one decoded server message.

    Raises:
        ResponseError: A chunk whose audio is not base64.
    """
    if not isinstance(obj, dict):
        return Unrecognized(obj)
    if obj.get("type") == "pong":
        return Pong()
    status = obj.get("status")
    envelope = _envelope(obj)
    raw_data = obj.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    if status == "chunk":
        encoded = data.get("audio")
        if not isinstance(encoded, str):
            return Unrecognized(obj)
        try:
            audio = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ResponseError(f"audio chunk is not valid base64: {e}") from e
        return AudioChunk(envelope, audio)
    if status == "word_timestamp":
        word = data.get("word")
        start = data.get("start")
        end = data.get("end")
        if not isinstance(word, str) or not _is_number(start):
            return Unrecognized(obj)
        return WordTimestamp(envelope, word, float(start), float(end) if _is_number(end) else None)
    if status == "complete":
        return SegmentComplete(envelope)
    if status == "error":
        message, code = _error_fields(obj)
        return ServerError(envelope, message, code)
    return Unrecognized(obj)


def parse_message(text: str | bytes) -> ServerEvent:
    """Decode and classify one text frame from the server.

    Raises:
        ResponseError: The frame is not JSON, or its audio is not base64.
    """
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ResponseError("server sent a frame nested too deeply") from None
    except ValueError as e:  # not JSON, not UTF-8, or an integer longer than Python reads
        raise ResponseError(f"server sent a frame that is not JSON: {str(e)[:120]}") from None
    return parse_event(obj)


# ----------------------------------------------------------------- server side


def _base(envelope: Envelope, status: str) -> dict[str, Any]:
    msg: dict[str, Any] = {}
    if envelope.session_id is not None:
        msg["session_id"] = envelope.session_id
    if envelope.request_id is not None:
        msg["request_id"] = envelope.request_id
    if envelope.external_session_id is not None:
        msg["external_session_id"] = envelope.external_session_id
    if envelope.external_request_id is not None:
        msg["external_request_id"] = envelope.external_request_id
    msg["status"] = status
    return msg


def chunk_message(envelope: Envelope, audio: bytes) -> dict[str, Any]:
    """Build a ``chunk`` message carrying base64 PCM."""
    msg = _base(envelope, "chunk")
    msg["data"] = {"audio": base64.b64encode(audio).decode("ascii")}
    return msg


def word_timestamp_message(
    envelope: Envelope, index: int, word: str, start: float, end: float
) -> dict[str, Any]:
    """Build a ``word_timestamp`` message; times are seconds within the segment."""
    msg = _base(envelope, "word_timestamp")
    msg["data"] = {"id": index, "word": word, "start": round(start, 3), "end": round(end, 3)}
    return msg


def complete_message(envelope: Envelope) -> dict[str, Any]:
    """Build the ``complete`` message that ends one segment."""
    return _base(envelope, "complete")


def error_message(
    message: str,
    *,
    code: str | None = None,
    envelope: Envelope | None = None,
    shape: str = "flat",
) -> dict[str, Any]:
    """Build an ``error`` message in one of the documented shapes.

    Args:
        message: Human-readable explanation.
        code: Machine-readable code (only carried by the nested shape).
        envelope: Routing fields, when the error concerns a request.
        shape: ``"flat"`` (``message`` beside ``status``, as the docs show
            for the idle timeout), ``"nested"`` (``error: {code, message}``)
            or ``"both"`` (the two at once).
    """
    msg = _base(envelope or Envelope(), "error")
    if shape in ("flat", "both"):
        msg["message"] = message
    if shape in ("nested", "both"):
        msg["error"] = {"code": code or "ERROR", "message": message}
    return msg


def pong_message() -> dict[str, Any]:
    """Build the answer to a keep-alive."""
    return {"type": "pong"}
