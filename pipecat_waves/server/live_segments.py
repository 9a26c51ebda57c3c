"""The local server's segments: queued, synthesized, streamed, completed.

Every segment the continuation buffer releases becomes a :class:`Job` in a
:class:`SynthesisQueue`: one queue per connection by default (every context,
first come first served), or one queue per context when ``interleave_contexts``
is on; within a context, order is always kept. A queue synthesizes its segments
one after another and streams each as ``chunk`` / ``word_timestamp`` frames,
followed by one ``complete`` (held back, folded into the next, or never sent,
as the behaviour switches say), and fires the drop and stall faults.
:class:`SegmentsMixin` is that part of
:class:`~pipecat_waves.server.live.LiveConnection`; the state it uses is the
connection's, declared below.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from loguru import logger

from pipecat_waves.protocol.continuation import Release
from pipecat_waves.protocol.requests import VoiceParams
from pipecat_waves.protocol.responses import (
    Envelope,
    chunk_message,
    complete_message,
    word_timestamp_message,
)
from pipecat_waves.server.backends import Synthesis, WordSpan
from pipecat_waves.server.dicts import DictError, PronunciationDict
from pipecat_waves.server.records import ConnectionRecord, SegmentRecord
from pipecat_waves.server.state import ServerState, new_request_id
from pipecat_waves.server.synthesis import chunk_size, split_audio, synthesize

__all__ = [
    "SERIAL_QUEUE",
    "ContextUse",
    "Fragment",
    "Job",
    "SegmentsMixin",
    "SynthesisQueue",
    "Timeline",
]

#: The one queue every context shares unless ``interleave_contexts`` is on.
SERIAL_QUEUE = object()


@dataclass
class Fragment:
    """What the buffer keeps about a fragment, for the segment it ends up in."""

    params: VoiceParams | None
    request_id: str | None
    session_id: str | None
    complete_backoff_ms: float | None = None


@dataclass
class Timeline:
    """Seconds of audio sent so far for one context (``word_time_reference``)."""

    sent_s: float = 0.0


@dataclass
class ContextUse:
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

    timeline: Timeline = field(default_factory=Timeline)
    ended: bool = False
    closed: bool = False
    outstanding: int = 0


@dataclass
class Job:
    """A released segment waiting for, or in, synthesis."""

    segment: SegmentRecord
    params: VoiceParams
    envelope: Envelope
    one_shot: bool
    use: ContextUse | None = None
    timeline: Timeline | None = None  # its context's, as it was when released
    settled: bool = False  # finished or stopped; no longer holds its context's slot
    complete_backoff_ms: float | None = None  # as the request asked, else the switch applies

    @property
    def cancelled(self) -> bool:
        return self.segment.cancelled


@dataclass
class SynthesisQueue:
    """A queue of segments synthesized one after another, and the task that runs it."""

    key: object
    jobs: asyncio.Queue[Job] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class SegmentsMixin:
    """Segments of ``LiveConnection``, queued and streamed (see the module docstring)."""

    # The connection's state this mixin reads and writes (set in its __init__).
    record: ConnectionRecord
    session_id: str
    _state: ServerState
    _request: web.Request
    _ws: web.WebSocketResponse
    _key: str
    _loop: asyncio.AbstractEventLoop
    _synthesis_queues: dict[object, SynthesisQueue]
    _jobs: list[Job]
    _context_params: dict[str | None, VoiceParams]
    _contexts: dict[str, ContextUse]
    _pending_completes: dict[int, tuple[Job, asyncio.Task[None]]]
    _background: set[asyncio.Task[Any]]
    _chunks_sent: int
    _stalled: bool
    _dropped: bool
    _gone: bool

    if TYPE_CHECKING:

        async def close(
            self, code: int = 1001, message: bytes = b"server shutting down"
        ) -> None: ...

        async def _send(self, obj: dict[str, Any]) -> bool: ...

        async def _error(
            self, message: str, code: str, envelope: Envelope | None = None
        ) -> None: ...

        def _echo(self, request_id: str | None) -> str | None: ...

        def _settle(self, job: Job) -> None: ...

    def _enqueue(self, releases: list[Release[Fragment]]) -> None:
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
            self._queue_for(release.context_id).jobs.put_nowait(job)

    def _make_job(self, release: Release[Fragment]) -> Job | None:
        meta = release.meta or Fragment(None, None, None)
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
        return Job(
            segment, params, envelope, one_shot, complete_backoff_ms=meta.complete_backoff_ms
        )

    def _queue_for(self, context_id: str | None) -> SynthesisQueue:
        key: object = context_id if self._state.behaviour.interleave_contexts else SERIAL_QUEUE
        queue = self._synthesis_queues.get(key)
        if queue is None:
            queue = self._synthesis_queues[key] = SynthesisQueue(key)
            queue.task = asyncio.create_task(self._run_queue(queue))
        return queue

    def _queue_done(self, queue: SynthesisQueue) -> bool:
        """Retire a context's own queue once its context is over and no job waits in it.

        Checked and removed with no await in between, so a segment for the same
        context released later simply gets a new queue.
        """
        if queue.key is SERIAL_QUEUE or not queue.jobs.empty():
            return False
        use = self._contexts.get(queue.key)  # type: ignore[call-overload]
        if use is not None and not use.ended:
            return False  # more text may come
        self._synthesis_queues.pop(queue.key, None)
        return True

    async def _run_queue(self, queue: SynthesisQueue) -> None:
        while True:
            job = await queue.jobs.get()
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
            if self._queue_done(queue):
                return

    # ------------------------------------------------------------- streaming

    async def _stream(self, job: Job) -> None:
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

    def _live(self, job: Job) -> bool:
        return not (
            job.cancelled or self._stalled or self._dropped or self._gone or self._ws.closed
        )

    def _dicts_for(self, params: VoiceParams) -> tuple[PronunciationDict, ...]:
        """The dictionaries a segment is spoken with: those named that still exist."""
        found: list[PronunciationDict] = []
        for dict_id in params.pronunciation_dicts or ():
            with contextlib.suppress(DictError):
                found.extend(self._state.dicts.resolve(self._key, (dict_id,)))
        return tuple(found)

    async def _send_audio(self, job: Job, synthesis: Synthesis) -> bool:
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
            # Sleeping even for 0 s yields, so interleaved queues take turns.
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

    def _words_for(self, job: Job, synthesis: Synthesis) -> tuple[WordSpan, ...]:
        allowed = self._state.behaviour.word_timestamp_voices
        wanted = job.params.word_timestamps
        if not wanted or (allowed is not None and job.params.voice_id not in allowed):
            return ()
        return synthesis.words

    async def _send_words(
        self, job: Job, words: list[WordSpan], start: int, sent_s: float, offset: float
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

    async def _finish(self, job: Job) -> None:
        delay = job.complete_backoff_ms
        if delay is None:
            delay = self._state.behaviour.complete_delay_ms
        if delay <= 0:
            await self._send_complete(job)
            return
        task = asyncio.create_task(self._complete_later(job, delay / 1000))
        self._pending_completes[id(job)] = (job, task)

    async def _complete_later(self, job: Job, delay_s: float) -> None:
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

    async def _send_complete(self, job: Job) -> None:
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
