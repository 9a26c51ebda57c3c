"""HTTP endpoints of the local server: SSE streaming, sync synthesis, voices, dictionaries."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from loguru import logger

from pipecat_waves.protocol import constants as c
from pipecat_waves.server.dicts import (
    DictError,
    PronunciationDict,
    parse_dict_id,
    parse_dict_ids,
    parse_items,
)
from pipecat_waves.server.records import HttpRequestRecord, safe_headers
from pipecat_waves.server.state import (
    ServerState,
    new_request_id,
    new_session_id,
    server_error_response,
    too_many_response,
    unauthorized_response,
)
from pipecat_waves.server.synthesis import chunk_size, split_audio, synthesize, wav_bytes
from pipecat_waves.server.voices import is_known_voice, voices_json

#: Audio per SSE event, as observed on the real service.
SSE_CHUNK_MS = 20

#: Formats the API documents; the local server can produce only the PCM ones.
_DOCUMENTED_FORMATS = frozenset({"pcm", "mp3", "wav", "ulaw", "alaw"})
_LOCAL_FORMATS = frozenset({"pcm", "wav"})


class BodyError(ValueError):
    """A request body field the server refuses (answered with 400)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class HttpSynthesisRequest:
    """A validated SSE or sync request body."""

    text: str
    voice_id: str
    sample_rate: int
    speed: float
    output_format: str
    session_id: str | None
    request_id: str | None
    pronunciation_dicts: tuple[str, ...] | None = None
    #: The dictionaries named, once looked up for the request's key.
    dicts: tuple[PronunciationDict, ...] = ()


#: Fields each dictionary request takes; any other is refused.
_DICT_FIELDS = {
    "create": frozenset({"items"}),
    "update": frozenset({"id", "items"}),
    "delete": frozenset({"id"}),
}

#: Largest request body read, in bytes: the text limit with room for the rest.
MAX_BODY_BYTES = 64 * 1024


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BodyError(name, f"Expected a number for '{name}'")
    try:
        number = float(value)  # an integer too large for a float overflows
    except OverflowError:
        raise BodyError(name, f"'{name}' is out of range") from None
    if not math.isfinite(number):
        raise BodyError(name, f"Expected a number for '{name}'")
    return number


def _choice(body: dict[str, Any], name: str, allowed: frozenset[str], default: str | None) -> Any:
    value = body.get(name, default)
    if value is not None and (not isinstance(value, str) or value not in allowed):
        raise BodyError(name, f"Invalid value for '{name}'")
    return value


def _optional_id(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not c.is_valid_id(value):
        raise BodyError(name, f"Invalid '{name}'")
    return value


def decode_body(raw: bytes) -> HttpSynthesisRequest:
    """Decode and validate a raw SSE or sync request body.

    Raises:
        BodyError: The body is too big, not JSON, or names a field at fault;
            nothing else.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise BodyError("", f"Body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BodyError("", "Body is nested too deeply") from None
    except ValueError:  # not JSON, not UTF-8, or an integer longer than Python reads
        raise BodyError("", "Body is not valid JSON") from None
    return parse_body(body)


def parse_body(body: Any) -> HttpSynthesisRequest:
    """Validate an SSE or sync request body.

    Raises:
        BodyError: Naming the first field at fault.
    """
    if not isinstance(body, dict):
        raise BodyError("", "Expected a JSON object")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BodyError("text", "Text is required")
    if len(text.strip()) > c.MAX_HTTP_TEXT_CHARS:
        raise BodyError("text", f"Text must be at most {c.MAX_HTTP_TEXT_CHARS} characters")
    voice_id = body.get("voice_id")
    if not isinstance(voice_id, str) or not is_known_voice(voice_id):
        raise BodyError("voice_id", "Invalid Voice ID")
    _choice(body, "model", c.MODELS, c.DEFAULT_MODEL)
    _choice(body, "language", c.LANGUAGES, None)
    _choice(body, "number_pronunciation_language", c.LANGUAGES, None)
    rate = _number(body, "sample_rate")
    if rate is not None and rate not in c.SAMPLE_RATES:
        raise BodyError("sample_rate", "Invalid sample rate")
    speed = _number(body, "speed")
    if speed is not None and not c.SPEED_MIN <= speed <= c.SPEED_MAX:
        raise BodyError("speed", f"Speed must be between {c.SPEED_MIN} and {c.SPEED_MAX}")
    output_format = _choice(body, "output_format", _DOCUMENTED_FORMATS, "pcm")
    if output_format not in _LOCAL_FORMATS:
        raise BodyError("output_format", f"The local server cannot produce '{output_format}'")
    try:
        dict_ids = parse_dict_ids(body.get("pronunciation_dicts"))
    except DictError as e:
        raise BodyError("pronunciation_dicts", e.message) from None
    return HttpSynthesisRequest(
        text=text,
        voice_id=voice_id,
        sample_rate=int(rate) if rate is not None else c.DEFAULT_SAMPLE_RATE,
        speed=speed if speed is not None else 1.0,
        output_format=output_format,
        session_id=_optional_id(body, "session_id"),
        request_id=_optional_id(body, "request_id"),
        pronunciation_dicts=dict_ids,
    )


def _id_headers(body: HttpSynthesisRequest) -> dict[str, str]:
    """The documented id headers: the server's own, and echoes of what the client sent."""
    headers = {"X-Session-Id": new_session_id("http"), "X-Request-Id": new_request_id()}
    # Echoes only of what the client sent: an empty header says nothing.
    if body.session_id:
        headers["X-External-Session-Id"] = body.session_id
    if body.request_id:
        headers["X-External-Request-Id"] = body.request_id
    return headers


def _bad_request(error: BodyError) -> web.Response:
    path = [error.path] if error.path else []
    body = {"error": [{"code": "custom", "path": path, "message": error.message}]}
    return web.json_response(body, status=400)


def _dict_refusal(error: DictError) -> web.Response:
    body = {"error": [{"code": "custom", "path": error.path, "message": error.message}]}
    return web.json_response(body, status=error.status)


class HttpHandlers:
    """The SSE, sync and voice-list handlers, bound to one server's state."""

    def __init__(self, state: ServerState) -> None:
        self._state = state

    def _record(self, endpoint: str, request: web.Request, raw: bytes | None) -> HttpRequestRecord:
        """A record of this request, kept only when the server records."""
        body: Any = None
        if raw is not None:
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):
                body = None
        peer = request.transport.get_extra_info("peername") if request.transport else None
        record = HttpRequestRecord(
            endpoint=endpoint,
            body=body,
            headers=safe_headers(request.headers),
            peer=(str(peer[0]), int(peer[1])) if peer else None,
        )
        if self._state.record:
            self._state.http_requests.append(record)
        return record

    async def _admit(
        self, endpoint: str, request: web.Request
    ) -> tuple[HttpSynthesisRequest | web.Response, HttpRequestRecord]:
        """Authenticate, check capacity and validate; a response means refusal."""
        if not self._state.is_authorized(request):
            record = self._record(endpoint, request, None)
            record.status = 401
            return unauthorized_response(), record
        # Over MAX_BODY_BYTES, aiohttp answers 413 itself (the app's
        # client_max_size) without reading the rest.
        raw = await request.read()
        record = self._record(endpoint, request, raw)
        refusal: web.Response | None = None
        if self._state.at_capacity():
            refusal = too_many_response()
        else:
            try:
                admitted = decode_body(raw)
            except BodyError as e:
                refusal = _bad_request(e)
            else:
                if admitted.pronunciation_dicts:
                    key = self._state.key_of(request)
                    try:
                        found = self._state.dicts.resolve(key, admitted.pronunciation_dicts)
                    except DictError as e:
                        refusal = _bad_request(BodyError("pronunciation_dicts", e.message))
                    else:
                        admitted = dataclasses.replace(admitted, dicts=found)
                if refusal is None and self._state.count_synthesis_request():
                    refusal = server_error_response()
        if refusal is not None:
            record.status = refusal.status
            return refusal, record
        return admitted, record

    async def sse(self, request: web.Request) -> web.StreamResponse:
        """``POST /waves/v1/tts/live``: audio as server-sent events."""
        admitted, record = await self._admit("sse", request)
        if isinstance(admitted, web.Response):
            return admitted
        self._state.active += 1
        try:
            return await self._stream_sse(request, admitted, record)
        finally:
            self._state.active -= 1

    async def _stream_sse(
        self, request: web.Request, body: HttpSynthesisRequest, record: HttpRequestRecord
    ) -> web.StreamResponse:
        behaviour = self._state.behaviour
        synthesis = await synthesize(
            self._state.backend,
            body.text,
            voice_id=body.voice_id,
            speed=body.speed,
            sample_rate=body.sample_rate,
            dicts=body.dicts,
        )
        size = chunk_size(body.sample_rate, SSE_CHUNK_MS, odd=behaviour.split_odd_bytes)
        pieces = list(split_audio(synthesis.pcm, size))
        record.chunks_total = len(pieces)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **_id_headers(body),
            }
        )
        await response.prepare(request)
        try:
            if behaviour.ttfb_ms > 0:
                await asyncio.sleep(behaviour.ttfb_ms / 1000)
            for i, piece in enumerate(pieces):
                if i and behaviour.chunk_interval_ms > 0:
                    await asyncio.sleep(behaviour.chunk_interval_ms / 1000)
                data = {
                    "audio": base64.b64encode(piece).decode("ascii"),
                    "done": False,
                    "status": "206",
                }
                await response.write(f"event: audio\ndata: {json.dumps(data)}\n\n".encode())
                record.chunks_sent += 1
            done = json.dumps({"status": "200", "done": True})
            await response.write(f"data: {done}\n\n".encode())
            await response.write_eof()
        except ConnectionResetError:
            # The client closed the stream (a barge-in, say): routine.
            record.abandoned = True
            logger.debug(f"SSE stream abandoned after {record.chunks_sent} of {len(pieces)} chunks")
            return response
        record.finished = True
        return response

    async def sync(self, request: web.Request) -> web.StreamResponse:
        """``POST /waves/v1/tts``: the whole audio as the response body."""
        admitted, _record = await self._admit("sync", request)
        if isinstance(admitted, web.Response):
            return admitted
        self._state.active += 1
        try:
            synthesis = await synthesize(
                self._state.backend,
                admitted.text,
                voice_id=admitted.voice_id,
                speed=admitted.speed,
                sample_rate=admitted.sample_rate,
                dicts=admitted.dicts,
            )
        finally:
            self._state.active -= 1
        audio = synthesis.pcm
        if admitted.output_format == "wav":
            audio = wav_bytes(audio, admitted.sample_rate)
        logger.debug(f"sync synthesis: {len(audio)} bytes")
        # The real service labels raw PCM audio/wav too; clients go by output_format.
        return web.Response(body=audio, content_type="audio/wav", headers=_id_headers(admitted))

    async def voices(self, request: web.Request) -> web.Response:
        """``GET /waves/v1/lightning-v3.1/get_voices``: the catalogue."""
        if not self._state.is_authorized(request):
            return unauthorized_response()
        return web.json_response(voices_json())

    # ------------------------------------------------------ dictionaries

    async def dicts_list(self, request: web.Request) -> web.Response:
        """``GET /waves/v1/pronunciation-dicts``: the key's dictionaries."""
        if not self._state.is_authorized(request):
            return unauthorized_response()
        owned = self._state.dicts.list(self._state.key_of(request))
        return web.json_response([entry.to_json() for entry in owned])

    async def dicts_create(self, request: web.Request) -> web.Response:
        """``POST /waves/v1/pronunciation-dicts``: a new dictionary from ``items``."""
        return await self._dict_change(request, "create")

    async def dicts_update(self, request: web.Request) -> web.Response:
        """``PUT /waves/v1/pronunciation-dicts``: new ``items`` for the dictionary ``id``."""
        return await self._dict_change(request, "update")

    async def dicts_delete(self, request: web.Request) -> web.Response:
        """``DELETE /waves/v1/pronunciation-dicts``: forget the dictionary ``id``."""
        return await self._dict_change(request, "delete")

    async def _dict_change(self, request: web.Request, what: str) -> web.Response:
        if not self._state.is_authorized(request):
            return unauthorized_response()
        try:
            body = json.loads(await request.read())
        except RecursionError:
            return _bad_request(BodyError("", "Body is nested too deeply"))
        except ValueError:
            return _bad_request(BodyError("", "Body is not valid JSON"))
        store = self._state.dicts
        key = self._state.key_of(request)
        allowed = _DICT_FIELDS[what]
        extra = sorted(set(body) - allowed) if isinstance(body, dict) else []
        if extra:
            return _bad_request(BodyError(extra[0], f"Unknown field '{extra[0]}'"))
        try:
            if what == "create":
                created = store.create(key, parse_items(body))
                logger.debug(f"pronunciation dictionary {created.id} created")
                return web.json_response(created.to_json(), status=201)
            dict_id = parse_dict_id(body)
            if what == "update":
                updated = store.update(key, dict_id, parse_items(body))
                return web.json_response(
                    {"id": updated.id, "items": [i.to_json() for i in updated.items]}
                )
            store.delete(key, dict_id)
            return web.json_response({"id": dict_id, "deleted": True})
        except DictError as e:
            return _dict_refusal(e)
