"""One live WebSocket connection of the local server.

The connection is a thin shell: validation lives in
:mod:`pipecat_waves.protocol.requests`, buffering in
:mod:`pipecat_waves.protocol.continuation`. This module reads frames, arms the
timers (idle timeout, buffer deadlines) and sends; what a message does is in
:mod:`pipecat_waves.server.live_messages`, and how each released segment is
streamed (as ``chunk`` / ``word_timestamp`` frames followed by one
``complete``, in *synthesis queues*) in :mod:`pipecat_waves.server.live_segments`.

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
import json
import math
from typing import Any

from aiohttp import WSMsgType, web
from loguru import logger

from pipecat_waves.protocol.continuation import ContinuationBuffer
from pipecat_waves.protocol.requests import MAX_FRAME_BYTES, VoiceParams
from pipecat_waves.protocol.responses import Envelope, error_message
from pipecat_waves.server.live_messages import MessagesMixin
from pipecat_waves.server.live_segments import (
    ContextUse,
    Fragment,
    Job,
    SegmentsMixin,
    SynthesisQueue,
)
from pipecat_waves.server.records import ConnectionRecord
from pipecat_waves.server.state import ServerState, new_session_id

__all__ = ["MAX_FRAME_BYTES", "LiveConnection"]


class LiveConnection(MessagesMixin, SegmentsMixin):
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
        self._buffer = ContinuationBuffer[Fragment](
            min_sentence_chars=behaviour.min_sentence_chars,
            max_chunk_chars=behaviour.max_chunk_chars,
        )
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._synthesis_queues: dict[object, SynthesisQueue] = {}
        self._jobs: list[Job] = []  # queued or playing, for cancel_request
        self._context_params: dict[str | None, VoiceParams] = {}
        self._contexts: dict[str, ContextUse] = {}  # those holding a slot
        self._pending_completes: dict[int, tuple[Job, asyncio.Task[None]]] = {}
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
        tasks = [queue.task for queue in self._synthesis_queues.values() if queue.task]
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
