"""The HTTP side of Waves, without I/O: request bodies, SSE events, refusals.

``POST /waves/v1/tts/live`` takes one JSON body and answers with server-sent
events: ``event: audio`` events whose data holds base64 PCM, then a data-only
``{"status": "200", "done": true}``. :class:`SseDecoder` turns the bytes of
such a stream, cut anywhere, into events; :func:`read_sse_event` says what each
one means. :func:`build_http_body` sends every documented field it is given,
and :func:`split_http_text` keeps each request under the documented text limit.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from pipecat_waves.protocol import constants as c
from pipecat_waves.protocol.responses import Envelope, ServerError
from pipecat_waves.protocol.text import split_at_words, split_sentences

#: Body fields the HTTP endpoints document (``word_timestamps`` is documented as
#: accepted and ignored there, so it is never sent).
HTTP_BODY_FIELDS = frozenset(
    {
        "text",
        "voice_id",
        "model",
        "sample_rate",
        "speed",
        "language",
        "number_pronunciation_language",
        "math_notation",
        "output_format",
        "pronunciation_dicts",
        "session_id",
        "request_id",
    }
)

#: Longest SSE line held while waiting for its end. An audio event of a
#: second of 44.1 kHz audio is about 120 kB of base64; anything far beyond is
#: not a Waves stream.
MAX_SSE_LINE_BYTES = 4 * 1024 * 1024


def build_http_body(text: str, voice_id: str, **fields: Any) -> dict[str, Any]:
    """The JSON body of an SSE or sync request.

    Args:
        text: The text to speak (at most ``MAX_HTTP_TEXT_CHARS`` after
            trimming; see :func:`split_http_text`).
        voice_id: The voice.
        **fields: Any other documented field; a field given as None is left
            out, so the server applies its default.

    Raises:
        ValueError: A field the HTTP endpoints do not document (a strict
            server could refuse it; an unknown one would be a typo).
    """
    undocumented = set(fields) - HTTP_BODY_FIELDS
    if undocumented:
        names = ", ".join(sorted(undocumented))
        raise ValueError(f"not documented for the HTTP endpoints: {names}")
    body: dict[str, Any] = {"text": text, "voice_id": voice_id}
    for name, value in fields.items():
        if value is not None:
            body[name] = list(value) if isinstance(value, tuple) else value
    return body


def split_http_text(text: str, limit: int = c.MAX_HTTP_TEXT_CHARS) -> list[str]:
    """Cut ``text`` into requests of at most ``limit`` characters each.

    Text within the limit (after trimming, as the server counts) is one
    request, unchanged. Longer text is cut after whole sentences, packing as
    many as fit into each request; a single sentence longer than the limit
    is cut between words. Said one after the other, the pieces say every word
    of ``text`` in order.
    """
    if len(text.strip()) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        parts = split_at_words(sentence, limit) if len(sentence) > limit else [sentence]
        for part in (p.strip() for p in parts):
            if not part:
                continue
            joined = f"{current} {part}" if current else part
            if len(joined) <= limit:
                current = joined
            else:
                pieces.append(current)
                current = part
    if current:
        pieces.append(current)
    return pieces


@dataclass(frozen=True)
class SseEvent:
    """One dispatched server-sent event: its name (None if unnamed) and data."""

    name: str | None
    data: str


class SseError(ValueError):
    """The stream is not server-sent events (a line far too long)."""


class SseDecoder:
    """Server-sent events from a byte stream cut anywhere.

    Follows the event-stream format: lines end with CR, LF or CRLF (a CR at
    the end of one read may be followed by its LF in the next); ``field:
    value`` with one optional space after the colon; ``data`` lines of one
    event are joined with newlines; a line starting with a colon is a
    comment; a blank line dispatches the event, and an event with no data
    is not dispatched.
    """

    __slots__ = ("_buffer", "_data", "_name", "_skip_lf")

    def __init__(self) -> None:
        self._buffer = b""
        self._skip_lf = False
        self._name: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Add bytes; return the events they complete, in order.

        Raises:
            SseError: A line grew past :data:`MAX_SSE_LINE_BYTES`.
        """
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        buffer = self._buffer + chunk
        events: list[SseEvent] = []
        start = 0
        while True:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start, lf if lf >= 0 else len(buffer))
            end = cr if cr >= 0 else lf
            if end < 0:
                break
            line = buffer[start:end]
            if end == cr:
                if cr + 1 == len(buffer):
                    self._skip_lf = True
                    start = cr + 1
                else:
                    start = cr + 2 if buffer[cr + 1 : cr + 2] == b"\n" else cr + 1
            else:
                start = lf + 1
            event = self._line(line.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        if len(self._buffer) > MAX_SSE_LINE_BYTES:
            raise SseError(f"an event-stream line is longer than {MAX_SSE_LINE_BYTES} bytes")
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            data, name = self._data, self._name
            self._data, self._name = [], None
            return SseEvent(name, "\n".join(data)) if data else None
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._name = value or None
        return None


@dataclass(frozen=True)
class SseAudio:
    """PCM bytes of an audio event. May end in the middle of a sample."""

    pcm: bytes


@dataclass(frozen=True)
class SseDone:
    """The stream's terminator: all audio was sent."""


@dataclass(frozen=True)
class SseFailure:
    """An event reporting a failure mid-stream (undocumented; read if it comes)."""

    error: ServerError


@dataclass(frozen=True)
class SseOther:
    """An event this client does not understand; logged and otherwise ignored."""

    data: str


SseMeaning = SseAudio | SseDone | SseFailure | SseOther


def read_sse_event(event: SseEvent) -> list[SseMeaning]:
    """What one event says: audio, the end, a failure, or nothing known.

    An event carrying both audio and ``done: true`` gives the audio, then the
    end. ``done`` must be ``true`` itself: every audio event carries ``done:
    false``.
    """
    try:
        obj = json.loads(event.data)
    except ValueError:
        return [SseOther(event.data)]
    if not isinstance(obj, dict):
        return [SseOther(event.data)]
    status = str(obj.get("status", ""))
    if status == "error" or "error" in obj or status[:1] in ("4", "5"):
        return [SseFailure(_error_from(obj, status if status[:1] in ("4", "5") else None))]
    out: list[SseMeaning] = []
    audio = obj.get("audio")
    if isinstance(audio, str) and audio:
        try:
            out.append(SseAudio(base64.b64decode(audio, validate=True)))
        except (binascii.Error, ValueError):
            return [SseFailure(ServerError(Envelope(), "an audio event's audio is not base64"))]
    if obj.get("done") is True:
        out.append(SseDone())
    return out or [SseOther(event.data)]


def error_from_http(status: int, body: bytes) -> ServerError:
    """The error an HTTP refusal carries, whatever documented shape its body has.

    Reads ``{"error": "...", "message": "..."}``, the validation list
    ``{"error": [{"path": [...], "message": "..."}]}``, and plain text.
    The code is the status.
    """
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        return _error_from(obj, str(status))
    text = body.decode("utf-8", "replace").strip()[:200]
    return ServerError(Envelope(), text or f"HTTP {status}", code=str(status))


def _error_from(obj: dict[str, Any], code: str | None) -> ServerError:
    message: str | None = None
    nested = obj.get("error")
    if isinstance(nested, list):
        problems = []
        for item in nested:
            if not isinstance(item, dict):
                continue
            text = str(item.get("message") or "invalid")
            path = item.get("path")
            where = ".".join(map(str, path)) if isinstance(path, list) and path else ""
            problems.append(f"{where}: {text}" if where else text)
        message = "; ".join(problems) or None
    elif isinstance(nested, dict):
        message = nested.get("message") if isinstance(nested.get("message"), str) else None
        code = code or (nested.get("code") if isinstance(nested.get("code"), str) else None)
    detail = obj.get("message")
    if isinstance(detail, str) and detail:
        kind = nested if isinstance(nested, str) else None
        message = f"{kind}: {detail}" if kind and kind.lower() not in detail.lower() else detail
    elif message is None and isinstance(nested, str):
        message = nested
    return ServerError(Envelope(), message or "unspecified server error", code=code)


def retry_after_s(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (the date form is not read)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 3600 else None
