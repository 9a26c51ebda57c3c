"""One live WebSocket connection of the local server.

The connection is a thin shell: validation lives in
:mod:`pipecat_waves.protocol.requests`, buffering in
:mod:`pipecat_waves.protocol.continuation`. This module moves frames, arms the
timers (idle timeout, buffer deadlines), and streams each released segment
as ``chunk`` / ``word_timestamp`` frames followed by one ``complete``.

Segments run in *lanes*: one lane per connection by default (every context,
first come first served), or one lane per context when
``interleave_contexts`` is on. Within a context, order is always kept.

Choices where the protocol is open:

* ``context_close`` ends the context *now*: buffered text is dropped, not
  released; segments already released still play out.
* ``cancel_request`` drops buffered text and, when ``cancel_stops_inflight``,
  also the context's queued and playing segments, and any ``complete`` they
  still owe.
* A context's concurrency slot outlives the context while audio it released
  is still owed: an account is busy as long as it is being spoken to. A
  segment is done once its ``complete`` goes out (or it was stopped).
* Only client frames reset the idle timer; audio being sent does not.
* ``error_on_request`` answers the failing message with an error frame and
  drops what its context had buffered, as a failed synthesis would.
* ``pronunciation_dicts`` is refused, ignored or applied as
  ``pronunciation_dicts_on_socket`` says. Applied, the ids must be the key's
  dictionaries when the message arrives, and a segment is spoken with them
  as they are when it is synthesized.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from loguru import logger

from pipecat_waves.protocol.constants import is_valid_id
from pipecat_waves.protocol.continuation import ContinuationBuffer, Release, ReleaseReason
from pipecat_waves.protocol.requests import (
    MAX_FRAME_BYTES,
    LiveRequest,
    RequestError,
    RequestKind,
    VoiceParams,
    load_frame,
    parse_request,
)
from pipecat_waves.protocol.responses import (
    Envelope,
    chunk_message,
    complete_message,
    error_message,
    pong_message,
    word_timestamp_message,
)
from pipecat_waves.server.backends import Synthesis, WordSpan
from pipecat_waves.server.dicts import DictError, PronunciationDict
from pipecat_waves.server.records import ConnectionRecord, SegmentRecord
from pipecat_waves.server.state import ServerState, new_request_id, new_session_id
from pipecat_waves.server.synthesis import chunk_size, split_audio, synthesize
from pipecat_waves.server.voices import is_known_voice

__all__ = ["MAX_FRAME_BYTES", "LiveConnection"]

_SERIAL_LANE = object()


@dataclass
class _Fragment:
    """What the buffer keeps about a fragment, for the segment it ends up in."""

    params: VoiceParams | None
    request_id: str | None
    session_id: str | None
    complete_backoff_ms: float | None = None


@dataclass
class _Timeline:
    """Seconds of audio sent so far for one context (``word_time_reference``)."""

    sent_s: float = 0.0


@dataclass
class _ContextUse:
    """A context of this connection that holds a concurrency slot.

    Attributes:
        timeline: Audio sent for the context, which context-relative word
            times are measured from.
        ended: ``continue: false``, ``context_close`` or ``cancel_request``
            came after its last text; the slot goes once nothing is owed.
        closed: Ended by ``continue: false`` or ``context_close`` (not by a
            cancel, after which the context stays open): new text starts a
            new context under the same id, with a timeline of its own.
        outstanding: Released segments not yet finished or stopped.
    """

    timeline: _Timeline = field(default_factory=_Timeline)
    ended: bool = False
    closed: bool = False
    outstanding: int = 0


@dataclass
class _Job:
    """A released segment waiting for, or in, synthesis."""

    segment: SegmentRecord
    params: VoiceParams
    envelope: Envelope
    one_shot: bool
    use: _ContextUse | None = None
    timeline: _Timeline | None = None  # its context's, as it was when released
    settled: bool = False  # finished or stopped; no longer holds its context's slot
    complete_backoff_ms: float | None = None  # as the request asked, else the switch applies

    @property
    def cancelled(self) -> bool:
        return self.segment.cancelled


@dataclass
class _Lane:
    key: object
    queue: asyncio.Queue[_Job] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class LiveConnection:
    """Serves one accepted live socket until it closes.

    Args:
        state: The server's shared state.
        request: The upgrade request (its transport is aborted by
            ``drop_after_chunks``).
        ws: The prepared WebSocket.
        record: Where this connection's history is kept.
        idle_timeout_s: Seconds without a client frame before closing.
    """

    def __init__(
        self,
        state: ServerState,
        request: web.Request,
        ws: web.WebSocketResponse,
        record: ConnectionRecord,
        idle_timeout_s: float,
    ) -> None:
        self._state = state
        self._request = request
        self._ws = ws
        self.record = record
        self.session_id = new_session_id("ws")
        self._key = state.key_of(request)  # owner of the dictionaries its messages name
        self._idle_timeout_s = idle_timeout_s
        behaviour = state.behaviour
        self._buffer = ContinuationBuffer[_Fragment](
            min_sentence_chars=behaviour.min_sentence_chars,
            max_chunk_chars=behaviour.max_chunk_chars,
        )
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._lanes: dict[object, _Lane] = {}
        self._jobs: list[_Job] = []  # queued or playing, for cancel_request
        self._context_params: dict[str | None, VoiceParams] = {}
        self._contexts: dict[str, _ContextUse] = {}  # those holding a slot
        self._pending_completes: dict[int, tuple[_Job, asyncio.Task[None]]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._chunks_sent = 0
        self._stalled = False
        self._dropped = False
        self._gone = False
        self._timer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        """Read frames until the socket closes, then end every context.

        The socket is prepared without ``autoclose``: when the client closes,
        this method frees the connection's slots *before* answering the close,
        so a client whose close handshake has finished finds them free.
        """
        self._timer = asyncio.create_task(self._timer_loop())
        try:
            async for msg in self._ws:
                self._touch()
                await self._on_frame(msg)
        except Exception:  # a broken transport must end this socket only
            logger.exception(f"live connection {self.record.id} failed")
        finally:
            self._gone = True
            self._end_all_contexts()
            try:
                if not self._ws.closed:
                    await self._ws.close()
            finally:
                await self._shutdown()
                self.record.closed = True
                self.record.close_code = self._ws.close_code
                logger.info(f"live connection {self.record.id} closed ({self._ws.close_code})")

    async def close(self, code: int = 1001, message: bytes = b"server shutting down") -> None:
        """Close the socket from the server side."""
        await self._ws.close(code=code, message=message)

    def _end_all_contexts(self) -> None:
        """Forget every context and free its slot; no await, so nothing sees it half done."""
        self._buffer.close_all()
        self._contexts.clear()
        self._state.context_slots = {
            key for key in self._state.context_slots if key[0] != self.record.id
        }

    async def _shutdown(self) -> None:
        tasks = [lane.task for lane in self._lanes.values() if lane.task]
        if self._timer is not None:
            tasks.append(self._timer)
        tasks += [task for _, task in self._pending_completes.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Closers started by the connection itself are left to finish.
        if self._background:
            await asyncio.wait(self._background, timeout=1.0)

    def _touch(self) -> None:
        self._last_activity = self._loop.time()
        self._wake.set()

    # ---------------------------------------------------------------- timers

    async def _timer_loop(self) -> None:
        """Fire buffer deadlines and the idle timeout, until the connection ends."""
        while not self._gone:
            try:
                if await self._timer_step():
                    return
            except Exception:
                # Buffer deadlines and the idle timeout hang on this loop: a
                # bug costs one tick, logged, never the rest of the connection.
                logger.exception(f"live connection {self.record.id}: timer failed; continuing")
                await asyncio.sleep(0.01)

    async def _timer_step(self) -> bool:
        """One turn of the timer; ``True`` once the connection timed out."""
        now = self._loop.time()
        # A stalled server says nothing, not even a timeout.
        idle_at = math.inf if self._stalled else self._last_activity + self._idle_timeout_s
        if now >= idle_at:
            await self._time_out()
            return True
        deadline = self._buffer.next_deadline()
        if deadline is not None and now >= deadline:
            self._enqueue(self._buffer.poll(now))
            return False
        wake_at = min(idle_at, deadline if deadline is not None else math.inf)
        self._wake.clear()
        timeout = None if math.isinf(wake_at) else wake_at - now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        return False

    async def _time_out(self) -> None:
        seconds = self._idle_timeout_s
        shown = int(seconds) if float(seconds).is_integer() else seconds
        logger.info(f"live connection {self.record.id} idle for {shown} s; closing")
        await self._send(
            {
                "status": "error",
                "message": f"Connection timed out after {shown} seconds of inactivity",
            }
        )
        await self._ws.close(code=1000, message=b"idle timeout")

    # ---------------------------------------------------------------- frames

    async def _on_frame(self, msg: Any) -> None:
        try:
            await self._handle_frame(msg)
        except Exception:
            # A message that trips a bug must cost that message, not the
            # connection: the client hears about it and may go on.
            logger.exception(f"live connection {self.record.id}: message handling failed")
            await self._error("the server could not handle this message", "INTERNAL_ERROR")

    async def _handle_frame(self, msg: Any) -> None:
        if msg.type == WSMsgType.TEXT:
            await self._on_text(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await self._error(
                "binary frames are not supported; send JSON text frames", "INVALID_MESSAGE"
            )
        elif msg.type == WSMsgType.ERROR:
            logger.warning(f"live connection {self.record.id}: {self._ws.exception()}")

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

    def _dicts_for(self, params: VoiceParams) -> tuple[PronunciationDict, ...]:
        """The dictionaries a segment is spoken with: those named that still exist."""
        found: list[PronunciationDict] = []
        for dict_id in params.pronunciation_dicts or ():
            with contextlib.suppress(DictError):
                found.extend(self._state.dicts.resolve(self._key, (dict_id,)))
        return tuple(found)

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
            use = self._contexts[context_id] = _ContextUse()
            slots.add((self.record.id, context_id))
        elif use.closed:
            # The same id after a close names a new context: its words are
            # timed from its own first audio, not after the old one's.
            use.timeline = _Timeline()
        use.ended = use.closed = False
        return True

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

    def _settle(self, job: _Job) -> None:
        """A segment finished or was stopped: it no longer holds its context's slot."""
        if job.settled:
            return
        job.settled = True
        if job.use is not None:
            job.use.outstanding -= 1
            self._free_if_done(job.segment.context_id)

    def _releases(self, request: LiveRequest) -> list[Release[_Fragment]]:
        now = self._loop.time()
        # Read the switches now: tests may change them between turns.
        behaviour = self._state.behaviour
        self._buffer.min_sentence_chars = behaviour.min_sentence_chars
        self._buffer.max_chunk_chars = behaviour.max_chunk_chars
        backoff = request.raw.get("complete_backoff_ms")
        if request.context_id is not None and behaviour.complete_backoff_with_context != "apply":
            backoff = None
        meta = _Fragment(request.params, request.request_id, request.session_id, backoff)
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

    # -------------------------------------------------------------- segments

    def _enqueue(self, releases: list[Release[_Fragment]]) -> None:
        for release in releases:
            job = self._make_job(release)
            if job is None:
                continue
            if release.context_id is not None:
                job.use = self._contexts.get(release.context_id)
                if job.use is not None:
                    job.use.outstanding += 1
                    # Taken now: a context reopened under the same id before
                    # this segment plays gets a timeline this one must not use.
                    job.timeline = job.use.timeline
            self._jobs.append(job)
            if self._state.record:
                self._state.segments.append(job.segment)
            self._lane_for(release.context_id).queue.put_nowait(job)

    def _make_job(self, release: Release[_Fragment]) -> _Job | None:
        meta = release.meta or _Fragment(None, None, None)
        params = meta.params or self._context_params.get(release.context_id)
        if params is None:  # only possible for a context never given a voice
            return None
        request_id = new_request_id()
        segment = SegmentRecord(
            connection_id=self.record.id,
            context_id=release.context_id,
            text=release.text,
            request_id=request_id,
            external_request_id=meta.request_id,
        )
        envelope = Envelope(
            request_id=request_id,
            session_id=self.session_id,
            external_request_id=self._echo(meta.request_id),
            external_session_id=meta.session_id,
        )
        one_shot = release.context_id is None
        return _Job(
            segment, params, envelope, one_shot, complete_backoff_ms=meta.complete_backoff_ms
        )

    def _lane_for(self, context_id: str | None) -> _Lane:
        key: object = context_id if self._state.behaviour.interleave_contexts else _SERIAL_LANE
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key)
            lane.task = asyncio.create_task(self._run_lane(lane))
        return lane

    def _lane_done(self, lane: _Lane) -> bool:
        """Retire a context's own lane once its context is over and its queue empty.

        Checked and removed with no await in between, so a segment for the same
        context released later simply gets a new lane.
        """
        if lane.key is _SERIAL_LANE or not lane.queue.empty():
            return False
        use = self._contexts.get(lane.key)  # type: ignore[call-overload]
        if use is not None and not use.ended:
            return False  # more text may come
        self._lanes.pop(lane.key, None)
        return True

    async def _run_lane(self, lane: _Lane) -> None:
        while True:
            job = await lane.queue.get()
            try:
                if not job.cancelled:
                    await self._stream(job)
            except RuntimeError as e:
                # The backend cannot work at all (a missing voice package): one
                # line naming the fix, for the server's log and for the client.
                logger.error(f"segment {job.segment.request_id}: {e}")
                await self._error(f"synthesis failed: {e}", "INTERNAL_ERROR", job.envelope)
            except Exception:
                logger.exception(f"segment {job.segment.request_id} failed")
                await self._error("synthesis failed", "INTERNAL_ERROR", job.envelope)
            finally:
                self._jobs.remove(job)
                # A complete still pending settles the job when it goes out.
                if id(job) not in self._pending_completes:
                    self._settle(job)
            if self._lane_done(lane):
                return

    async def _stream(self, job: _Job) -> None:
        """Synthesize one segment and send its frames."""
        behaviour = self._state.behaviour
        started = self._loop.time()
        params = job.params
        synthesis = await synthesize(
            self._state.backend,
            job.segment.text,
            voice_id=params.voice_id,
            speed=params.speed or 1.0,
            sample_rate=params.sample_rate,
            dicts=self._dicts_for(params),
        )
        wait = behaviour.ttfb_ms / 1000 - (self._loop.time() - started)
        if wait > 0:
            await asyncio.sleep(wait)
        if not self._live(job):
            return
        self._coalesce_pending()
        if not await self._send_audio(job, synthesis):
            return
        await self._finish(job)

    def _live(self, job: _Job) -> bool:
        return not (
            job.cancelled or self._stalled or self._dropped or self._gone or self._ws.closed
        )

    async def _send_audio(self, job: _Job, synthesis: Synthesis) -> bool:
        """Send chunks and word timestamps; ``False`` if the segment was cut short."""
        behaviour = self._state.behaviour
        size = chunk_size(synthesis.sample_rate, behaviour.chunk_ms, odd=behaviour.split_odd_bytes)
        words = list(self._words_for(job, synthesis))
        bytes_per_s = synthesis.sample_rate * 2
        timeline = job.timeline
        # Earlier segments of this context are done (a context's segments
        # never overlap), so what its timeline holds now is where this one starts.
        offset = 0.0
        if behaviour.word_time_reference == "context" and timeline is not None:
            offset = timeline.sent_s
        sent_bytes = 0
        word_index = 0
        for i, piece in enumerate(split_audio(synthesis.pcm, size)):
            # Sleeping even for 0 s yields, so interleaved lanes take turns.
            await asyncio.sleep(behaviour.chunk_interval_ms / 1000 if i else 0)
            if not self._live(job):
                return False
            if not await self._send(chunk_message(job.envelope, piece)):
                return False
            job.segment.chunks_sent += 1
            sent_bytes += len(piece)
            if timeline is not None:
                # Audio the client actually got: a stopped segment adds only its part.
                timeline.sent_s += len(piece) / bytes_per_s
            logger.debug(f"{job.segment.request_id}: chunk {i} ({len(piece)} bytes)")
            self._after_chunk()
            word_index = await self._send_words(
                job, words, word_index, sent_bytes / bytes_per_s, offset
            )
        await self._send_words(job, words, word_index, math.inf, offset)
        return self._live(job)

    def _words_for(self, job: _Job, synthesis: Synthesis) -> tuple[WordSpan, ...]:
        allowed = self._state.behaviour.word_timestamp_voices
        wanted = job.params.word_timestamps
        if not wanted or (allowed is not None and job.params.voice_id not in allowed):
            return ()
        return synthesis.words

    async def _send_words(
        self, job: _Job, words: list[WordSpan], start: int, sent_s: float, offset: float
    ) -> int:
        """Send timestamps of words whose audio has been sent in full.

        Args:
            job: The segment.
            words: Its words, timed from the start of the segment's audio.
            start: Index of the first word not sent yet.
            sent_s: Seconds of the segment's audio sent so far.
            offset: Added to the times sent (``word_time_reference``).

        Returns:
            Index of the first word still not sent.
        """
        index = start
        while index < len(words) and words[index].end <= sent_s + 1e-9 and self._live(job):
            span = words[index]
            await self._send(
                word_timestamp_message(
                    job.envelope, index, span.word, span.start + offset, span.end + offset
                )
            )
            index += 1
        return index

    def _after_chunk(self) -> None:
        """Count a chunk on this connection and fire the drop and stall faults."""
        self._chunks_sent += 1
        behaviour = self._state.behaviour
        drop = behaviour.drop_after_chunks
        if drop is not None and not self._state.drop_fired and self._chunks_sent >= drop:
            self._state.drop_fired = True
            logger.info(f"live connection {self.record.id}: dropping transport (fault)")
            self._dropped = True
            transport = self._request.transport
            if transport is not None:
                transport.abort()
        stall = behaviour.stall_after_chunks
        if stall is not None and not self._state.stall_fired and self._chunks_sent >= stall:
            self._state.stall_fired = True
            logger.info(f"live connection {self.record.id}: stalling (fault)")
            self._stalled = True

    # -------------------------------------------------------------- complete

    async def _finish(self, job: _Job) -> None:
        delay = job.complete_backoff_ms
        if delay is None:
            delay = self._state.behaviour.complete_delay_ms
        if delay <= 0:
            await self._send_complete(job)
            return
        task = asyncio.create_task(self._complete_later(job, delay / 1000))
        self._pending_completes[id(job)] = (job, task)

    async def _complete_later(self, job: _Job, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self._pending_completes.pop(id(job), None)
        await self._send_complete(job)

    def _coalesce_pending(self) -> None:
        """A segment starts: fold earlier delayed completes into its own."""
        if not self._state.behaviour.coalesce_complete:
            return
        for key, (job, task) in list(self._pending_completes.items()):
            task.cancel()
            job.segment.coalesced = True
            del self._pending_completes[key]
            self._settle(job)

    async def _send_complete(self, job: _Job) -> None:
        # Settled before the frame goes out: a client that has read the last
        # complete of an ended context may count on the slot being free.
        self._settle(job)
        if not self._live(job):
            return
        if await self._send(complete_message(job.envelope)):
            job.segment.completed = True
            if job.one_shot and self._state.behaviour.close_after_one_shot_complete:
                closer = asyncio.create_task(self.close(1000, b"request complete"))
                self._background.add(closer)
                closer.add_done_callback(self._background.discard)

    # ----------------------------------------------------------------- sends

    async def _error(self, message: str, code: str, envelope: Envelope | None = None) -> None:
        shape = self._state.behaviour.error_shape
        envelope = envelope or Envelope(session_id=self.session_id)
        await self._send(error_message(message, code=code, envelope=envelope, shape=shape))

    async def _send(self, obj: dict[str, Any]) -> bool:
        """Send one JSON frame; ``False`` if it could not (or must not) go out."""
        async with self._send_lock:
            if self._stalled or self._dropped or self._ws.closed:
                return False
            try:
                await self._ws.send_str(json.dumps(obj))
            except (ConnectionError, RuntimeError) as e:
                logger.debug(f"live connection {self.record.id}: send failed: {e}")
                return False
        return True
