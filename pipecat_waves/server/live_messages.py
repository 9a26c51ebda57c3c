"""The local server's live messages: checked, answered, and fed to the buffer.

:class:`MessagesMixin` is the part of
:class:`~pipecat_waves.server.live.LiveConnection` that takes one client text
frame: it parses and validates it (:mod:`pipecat_waves.protocol.requests`),
applies the behaviour switches that refuse or alter a field, answers a ping,
cancels or closes a context, refuses an unknown voice or an injected failure,
and feeds text to the continuation buffer, whose releases go to the synthesis
queues (:mod:`pipecat_waves.server.live_segments`). It also keeps each
context's concurrency slot, held until the audio it released is no longer owed.
The state it uses is the connection's, declared below.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from loguru import logger

from pipecat_waves.protocol.constants import is_valid_id
from pipecat_waves.protocol.continuation import ContinuationBuffer, Release, ReleaseReason
from pipecat_waves.protocol.requests import (
    LiveRequest,
    RequestError,
    RequestKind,
    VoiceParams,
    load_frame,
    parse_request,
)
from pipecat_waves.protocol.responses import Envelope, pong_message
from pipecat_waves.server.dicts import DictError
from pipecat_waves.server.live_segments import ContextUse, Fragment, Job, Timeline
from pipecat_waves.server.records import ConnectionRecord
from pipecat_waves.server.state import ServerState
from pipecat_waves.server.voices import is_known_voice

__all__ = ["MessagesMixin"]


class MessagesMixin:
    """Client messages of ``LiveConnection`` (see the module docstring)."""

    # The connection's state this mixin reads and writes (set in its __init__).
    record: ConnectionRecord
    session_id: str
    _state: ServerState
    _key: str
    _loop: asyncio.AbstractEventLoop
    _buffer: ContinuationBuffer[Fragment]
    _wake: asyncio.Event
    _jobs: list[Job]
    _context_params: dict[str | None, VoiceParams]
    _contexts: dict[str, ContextUse]
    _pending_completes: dict[int, tuple[Job, asyncio.Task[None]]]

    if TYPE_CHECKING:

        async def _send(self, obj: dict[str, Any]) -> bool: ...

        async def _error(
            self, message: str, code: str, envelope: Envelope | None = None
        ) -> None: ...

        def _enqueue(self, releases: list[Release[Fragment]]) -> None: ...

    async def _on_text(self, data: str) -> None:
        try:
            obj = load_frame(data)
        except RequestError as e:
            await self._error(e.message, e.code)
            return
        if self._state.record:
            self.record.received.append(obj)
        try:
            request = self._socket_dicts(parse_request(obj))
            self._check_strict_fields(request)
        except RequestError as e:
            await self._error(e.message, e.code, self._raw_envelope(obj))
            return
        await self._dispatch(request)

    def _socket_dicts(self, request: LiveRequest) -> LiveRequest:
        """Refuse, drop or check ``pronunciation_dicts`` (``pronunciation_dicts_on_socket``)."""
        params = request.params
        if "pronunciation_dicts" not in request.raw:
            return request
        what = self._state.behaviour.pronunciation_dicts_on_socket
        if what == "refuse":
            raise RequestError(
                "INVALID_FIELD",
                "'pronunciation_dicts' is not supported on the live socket",
                "pronunciation_dicts",
            )
        if params is None or params.pronunciation_dicts is None:
            return request
        if what == "ignore":
            plain = dataclasses.replace(params, pronunciation_dicts=None)
            return dataclasses.replace(request, params=plain)
        try:
            self._state.dicts.resolve(self._key, params.pronunciation_dicts)
        except DictError as e:
            raise RequestError("INVALID_FIELD", e.message, "pronunciation_dicts") from None
        return request

    def _check_strict_fields(self, request: LiveRequest) -> None:
        """Refuse what a stricter server may refuse (a switch, off by default)."""
        if (
            self._state.behaviour.complete_backoff_with_context == "refuse"
            and request.context_id is not None
            and "complete_backoff_ms" in request.raw
        ):
            raise RequestError(
                "INVALID_FIELD",
                "'complete_backoff_ms' cannot be combined with 'context_id'",
                "complete_backoff_ms",
            )

    def _raw_envelope(self, obj: Any) -> Envelope:
        """Echo what can be echoed from a message that failed validation."""
        raw = obj if isinstance(obj, dict) else {}
        rid, sid = raw.get("request_id"), raw.get("session_id")
        return Envelope(
            session_id=self.session_id,
            external_request_id=self._echo(rid if is_valid_id(rid) else None),
            external_session_id=sid if is_valid_id(sid) else None,
        )

    def _request_envelope(self, request: LiveRequest) -> Envelope:
        return Envelope(
            session_id=self.session_id,
            external_request_id=self._echo(request.request_id),
            external_session_id=request.session_id,
        )

    def _echo(self, request_id: str | None) -> str | None:
        """The ``external_request_id`` to send, if the echo is switched on."""
        return request_id if self._state.behaviour.echo_external_request_id else None

    # -------------------------------------------------------------- requests

    async def _dispatch(self, request: LiveRequest) -> None:
        kind = request.kind
        if kind is RequestKind.PING and not self._state.behaviour.ping_supported:
            await self._error("'text' is required", "MISSING_FIELD")
        elif kind is RequestKind.PING:
            await self._send(pong_message())
        elif kind is RequestKind.CANCEL:
            self._cancel(request.context_id)
            self._end_context(request.context_id, closed=False)
            # New text after a cancel carries its voice again (it must), so
            # nothing of the cancelled context needs keeping.
            self._context_params.pop(request.context_id, None)
        elif kind is RequestKind.CLOSE:
            dropped = self._buffer.close(request.context_id)
            logger.debug(f"context {request.context_id} closed, dropped {len(dropped)} chars")
            self._end_context(request.context_id, closed=True)
            self._context_params.pop(request.context_id, None)
        elif await self._accept_synthesis(request):
            self._enqueue(self._releases(request))
            # Ended only now: what this message released must hold the slot first.
            if not request.continue_:
                self._end_context(request.context_id, closed=True)
                # Everything it had is released (with its voice): nothing
                # about a closed context is kept, however many a socket sees.
                self._context_params.pop(request.context_id, None)
        self._wake.set()  # buffer deadlines may have moved

    async def _accept_synthesis(self, request: LiveRequest) -> bool:
        """Refuse unknown voices and injected failures; ``True`` to go on."""
        params = request.params
        if params is not None and not is_known_voice(params.voice_id):
            await self._error(
                f"Invalid voice_id '{params.voice_id}': no such voice",
                "INVALID_VOICE",
                self._request_envelope(request),
            )
            return False
        if not await self._take_slot(request):
            return False
        if params is not None:
            self._context_params[request.context_id] = params
        if request.text and self._state.count_synthesis_request():
            self._buffer.cancel(request.context_id)
            if not request.continue_:
                self._end_context(request.context_id, closed=True)
            await self._error(
                "synthesis failed (injected error)",
                "INTERNAL_ERROR",
                self._request_envelope(request),
            )
            return False
        return True

    # ------------------------------------------------------- contexts, slots

    async def _take_slot(self, request: LiveRequest) -> bool:
        """Apply ``max_active_contexts``: a new context needs a free slot.

        Only text opens (or reopens) a context; a frame without text never
        needs a slot. A context still holding its slot, even one that has
        ended but still owes audio, takes new text without asking again.
        """
        context_id = request.context_id
        if context_id is None or not request.text:
            return True
        use = self._contexts.get(context_id)
        if use is None:
            slots = self._state.context_slots
            limit = self._state.behaviour.max_active_contexts
            if limit is not None and len(slots) >= limit:
                self._buffer.cancel(context_id)
                await self._error(
                    f"Concurrency limit reached: {limit} active synthesis allowed",
                    "CONCURRENCY_LIMIT",
                    self._request_envelope(request),
                )
                return False
            use = self._contexts[context_id] = ContextUse()
            slots.add((self.record.id, context_id))
        elif use.closed:
            # The same id after a close names a new context: its words are
            # timed from its own first audio, not after the old one's.
            use.timeline = Timeline()
        use.ended = use.closed = False
        return True

    def _releases(self, request: LiveRequest) -> list[Release[Fragment]]:
        now = self._loop.time()
        # Read the switches now: tests may change them between turns.
        behaviour = self._state.behaviour
        self._buffer.min_sentence_chars = behaviour.min_sentence_chars
        self._buffer.max_chunk_chars = behaviour.max_chunk_chars
        backoff = request.raw.get("complete_backoff_ms")
        if request.context_id is not None and behaviour.complete_backoff_with_context != "apply":
            backoff = None
        meta = Fragment(request.params, request.request_id, request.session_id, backoff)
        # A context-less request ends any legacy buffering (continue:false releases it).
        if request.kind is RequestKind.ONE_SHOT and not self._buffer.buffered(None):
            return [Release(None, request.text, meta, ReleaseReason.END)]
        if request.kind in (RequestKind.ONE_SHOT, RequestKind.LEGACY):
            # 0 (the documented default) means no time-based flush at all.
            flush_ms = request.raw.get("max_buffer_flush_ms") or None
            return self._buffer.feed_legacy(
                request.text,
                now=now,
                flush=request.flush,
                more=request.continue_,
                flush_delay_ms=flush_ms if isinstance(flush_ms, int) else None,
                meta=meta,
            )
        override = behaviour.buffer_delay_override_ms
        return self._buffer.feed(
            request.context_id,
            request.text,
            now=now,
            more=request.continue_,
            delay_ms=request.max_buffer_delay_ms if override is None else override,
            meta=meta,
        )

    def _cancel(self, context_id: str | None) -> None:
        dropped = self._buffer.cancel(context_id)
        logger.debug(f"context {context_id} cancelled, dropped {len(dropped)} chars")
        if not self._state.behaviour.cancel_stops_inflight:
            return
        for job in self._jobs:
            if job.segment.context_id == context_id and not job.segment.completed:
                job.segment.cancelled = True
                self._settle(job)
        for key, (job, task) in list(self._pending_completes.items()):
            if job.segment.context_id == context_id:
                job.segment.cancelled = True
                task.cancel()
                del self._pending_completes[key]
                self._settle(job)

    def _end_context(self, context_id: str | None, *, closed: bool) -> None:
        """Mark a context ended; its slot goes once its segments are done."""
        use = self._contexts.get(context_id) if context_id is not None else None
        if use is None:
            return
        use.ended = True
        use.closed = use.closed or closed
        self._free_if_done(context_id)

    def _free_if_done(self, context_id: str | None) -> None:
        if context_id is None:
            return
        use = self._contexts.get(context_id)
        if use is not None and use.ended and use.outstanding <= 0:
            del self._contexts[context_id]
            self._state.context_slots.discard((self.record.id, context_id))

    def _settle(self, job: Job) -> None:
        """A segment finished or was stopped: it no longer holds its context's slot."""
        if job.settled:
            return
        job.settled = True
        if job.use is not None:
            job.use.outstanding -= 1
            self._free_if_done(job.segment.context_id)
