"""Client-side bookkeeping of a Waves live session, with no I/O.

The Pipecat service is a shell that moves bytes between sockets and this
object: text and server messages go in; messages to send, sockets to open or
close, and events (audio for reply X, a timed word, reply X finished or
failed) come out. Every method takes the current time, so each rule can be
unit-tested without sockets or an event loop.

Where each rule lives:

* **A reply's life**: one state machine, :mod:`.reply_state` (every phase, and
  one table of the transitions allowed); **a connection's**: :mod:`.connection_state`.
* **Reply progress** (when is a reply over?): :mod:`pipecat_waves.protocol.reply`.
* **Connections and attribution**: :meth:`WavesSession._attribute`. The server
  never names the context a frame belongs to, and need not echo our
  ``request_id``. So a connection carries **one reply at a time**, and every
  frame on it belongs to that reply. Replies that overlap (one playing while
  the next is prepared) each take a connection; a warm spare is kept so that
  neither a back-to-back reply nor a barge-in waits for a handshake. What is
  sent where: :mod:`.dispatch`.
* **Barge-in**: :meth:`WavesSession.interrupt`, the whole rule set in one place.
* **Recovery**: :meth:`WavesSession.connection_lost` (resend what was not
  spoken) and :mod:`.refusals` (retries per reply, refused fields).
* **Timed rules** (reply ends, failures reported after their tail, retries,
  keep-alive pings, stall probes): each written once in :mod:`.timers`,
  returning when it is next due and what it does then; ``poll`` and
  ``next_deadline`` both read them. Keep-alive facts: :mod:`.keepalive`.

The class is assembled from those layers (:mod:`.session_core` holds the
state they share); this module keeps the methods the shells call.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipecat_waves.protocol import requests as rq
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.connection_state import ConnState
from pipecat_waves.protocol.outputs import AbortConnection as AbortConnection
from pipecat_waves.protocol.outputs import AudioOut as AudioOut
from pipecat_waves.protocol.outputs import CloseConnection as CloseConnection
from pipecat_waves.protocol.outputs import ContextFailed as ContextFailed
from pipecat_waves.protocol.outputs import ContextFinished as ContextFinished
from pipecat_waves.protocol.outputs import ContextRetrying as ContextRetrying
from pipecat_waves.protocol.outputs import Notice as Notice
from pipecat_waves.protocol.outputs import OpenConnection as OpenConnection
from pipecat_waves.protocol.outputs import Output as Output
from pipecat_waves.protocol.outputs import Send as Send
from pipecat_waves.protocol.outputs import UnattributedError as UnattributedError
from pipecat_waves.protocol.outputs import WordOut as WordOut
from pipecat_waves.protocol.refusals import ErrorRules
from pipecat_waves.protocol.refusals import is_rate_limit as is_rate_limit
from pipecat_waves.protocol.refusals import refuses_complete_backoff as refuses_complete_backoff
from pipecat_waves.protocol.refusals import (
    refuses_pronunciation_dicts as refuses_pronunciation_dicts,
)
from pipecat_waves.protocol.reply import Reply, ReplyState, Segment
from pipecat_waves.protocol.reply_state import (
    ReplyEvent,
    ReplyPhase,
)
from pipecat_waves.protocol.session_core import COMPLETE_BACKOFF_MS as COMPLETE_BACKOFF_MS
from pipecat_waves.protocol.session_core import CONNECTION_LOST as CONNECTION_LOST
from pipecat_waves.protocol.session_core import GAP_MEMORY as GAP_MEMORY
from pipecat_waves.protocol.session_core import LIMIT_MEMORY_S as LIMIT_MEMORY_S
from pipecat_waves.protocol.session_core import MAX_DROPS_PER_REPLY as MAX_DROPS_PER_REPLY
from pipecat_waves.protocol.session_core import MIN_IDLE_TIMEOUT_TRAIT_S as MIN_IDLE_TIMEOUT_TRAIT_S
from pipecat_waves.protocol.session_core import RETRY_FIRST_S as RETRY_FIRST_S
from pipecat_waves.protocol.session_core import RETRY_LARGEST_S as RETRY_LARGEST_S
from pipecat_waves.protocol.session_core import UNREACHABLE_REASON as UNREACHABLE_REASON
from pipecat_waves.protocol.session_core import SessionConfig as SessionConfig
from pipecat_waves.protocol.session_core import _Conn, _ReplyInfo
from pipecat_waves.protocol.traits import ServerTraits


class WavesSession(ErrorRules):
    """Everything the client must remember about its replies and connections.

    All methods are synchronous and take the current time; each returns the
    outputs the I/O shell must act on, in order.
    """

    def traits(self) -> ServerTraits:
        """What is known of the server now: what was given, updated by what it showed.

        Pass it to a later session (``WavesTTSService(server_traits=...)``) so
        that it need not learn the same things again.
        """
        early = self._keepalive.closed_early_after_s
        if early is not None and early < MIN_IDLE_TIMEOUT_TRAIT_S:
            early = None  # more likely a blip or a restart than an idle timeout
        learned = ServerTraits(
            answers_pings=self._keepalive.ping_supported,
            complete_backoff_with_context=None if self._send_complete_backoff else "refuse",
            idle_timeout_s=early,
            honours_timeout_query=False if early is not None else None,
            pronunciation_dicts_on_socket="refuse" if self._dicts_refused else None,
        )
        return self._given_traits.merged(learned)

    def connection_state(self, conn: int) -> ConnState | None:
        """State of connection ``conn``, or None once it is gone."""
        state = self._conns.get(conn)
        return state.state if state else None

    def live_contexts(self) -> list[str]:
        """Replies not yet over, oldest first."""
        return [rid for rid, info in self._replies.items() if not info.reply.state.ended]

    def voice_of(self, context_id: str) -> str | None:
        """The voice reply ``context_id`` is being spoken with, while it is known."""
        info = self._replies.get(context_id)
        return info.params.voice_id if info else None

    def model_of(self, context_id: str) -> str | None:
        """The model reply ``context_id`` is being spoken with, while it is known."""
        info = self._replies.get(context_id)
        return info.params.model if info else None

    def is_live(self, context_id: str) -> bool:
        """Whether ``context_id`` is known and not over."""
        info = self._replies.get(context_id)
        return bool(info and not info.reply.state.ended)

    def start(self) -> list[Output]:
        """Open the first connections: one for the first reply, plus the spares."""
        return self._request_connections(1 + self.config.spare_connections, "warm start")

    def connection_opened(self, conn: int, now: float, *, prove: bool = False) -> list[Output]:
        """A connection the shell opened is ready.

        Args:
            conn: The connection.
            now: Current time in seconds.
            prove: Ask the server to answer on it at once (a ping, where the
                server takes pings), so that a reconnect after an outage is
                known to work within one round trip.
        """
        self._opening = max(0, self._opening - 1)
        self._unreachable = False
        self._conns[conn] = _Conn(conn, ConnState.SPARE, last_sent_at=now, last_recv_at=now)
        out: list[Output] = []
        if prove and self._keepalive.ping_supported:
            out.append(self._ping(self._conns[conn], now))
        elif self._keepalive.ping_supported is None and not any(
            c.ping_sent_at is not None for c in self._conns.values()
        ):
            # Learn at once whether the server answers pings, on an idle socket
            # where a refusal cannot be mistaken for a reply's error.
            out.append(self._ping(self._conns[conn], now))
        out.extend(self._dispatch(now))
        return out

    def connection_failed_to_open(self) -> None:
        """An :class:`OpenConnection` could not be carried out (the shell retries it)."""
        self._opening = max(0, self._opening - 1)

    def connection_limit_reached(self, open_now: int, now: float) -> None:
        """The server turned a connection away while ``open_now`` others work.

        The account allows no more sockets: no more are opened for a while.
        Replies then share what is open (a barge-in waits for a handshake).
        """
        self._connection_limit = (max(1, open_now), now + LIMIT_MEMORY_S)

    def connection_lost(self, conn: int, now: float, *, refused: bool = False) -> list[Output]:
        """A connection closed or failed.

        A reply it carried is sent again on another connection as a new server
        context, starting at the first word not yet proven spoken: audio
        already received is kept, so nothing is lost, and with word timestamps
        nothing but the word in flight can repeat.

        Args:
            conn: The connection.
            now: Current time in seconds.
            refused: The server turned the connection away as soon as it
                opened (a socket limit): it never worked, so it neither counts
                as a drop of its reply nor teaches anything about idle timeouts.
        """
        state = self._conns.pop(conn, None)
        if state is None:
            return []
        out: list[Output] = []
        info = self._info(state.reply)
        if state.state is ConnState.RETIRED:
            pass  # closed on purpose
        elif info is not None and not info.reply.state.ended:
            info.conn = None
            info.drops += 0 if refused else 1
            info.to(ReplyEvent.LOST)
            if info.drops > MAX_DROPS_PER_REPLY:
                # A server that drops every try would have the rest resent (and
                # its start, without timestamps, repeated) for ever.
                info.error = rs.ServerError(
                    rs.Envelope(),
                    f"the connection was lost {info.drops} times while speaking this reply",
                    CONNECTION_LOST,
                )
                info.error_at = now
                info.to(ReplyEvent.ERROR)
                out.extend(self._check_reply(info, now, force=True))
            else:
                what = "turned away" if refused else "lost mid-reply"
                out.append(
                    Notice(
                        "debug" if refused else "warning",
                        f"connection {conn} {what}; resending the rest of the reply",
                    )
                )
                info.error = None
        elif not refused:
            idle_for = now - state.last_sent_at
            if self._keepalive.idle_closed(idle_for):
                out.append(
                    Notice(
                        "debug",
                        f"server closed idle connection {conn} after {idle_for:.1f} s; "
                        f"pinging every {self._keepalive.interval_s:.1f} s from now on",
                    )
                )
            else:
                out.append(Notice("debug", f"connection {conn} closed while idle; replacing it"))
        self._own_slot_freed()
        out.extend(self._dispatch(now))
        return out

    def send_text(
        self,
        context_id: str,
        text: str,
        params: rq.VoiceParams,
        now: float,
        *,
        max_buffer_delay_ms: int | None = None,
    ) -> list[Output]:
        """Queue ``text`` as the next fragment of reply ``context_id``.

        The first call opens the reply; its voice parameters hold for the whole
        reply (a settings change takes effect with the next one).
        """
        info = self._replies.get(context_id)
        if info is None:
            if context_id in self._failed:
                return []  # reported once already; the rest of it is not spoken
            reply = Reply(context_id, self.config.sample_rate)
            info = _ReplyInfo(reply, params, max_buffer_delay_ms)
            self._replies[context_id] = info
        reply = info.reply
        if reply.state is not ReplyState.WRITING:
            return []
        current = info.next_params or info.params
        if params != current:
            attempt = reply.attempt
            if attempt is None or attempt.sent_upto == attempt.text_start:
                info.params = params  # nothing sent with the old ones yet
            elif info.next_params is None:
                info.next_params, info.switch_at = params, len(reply.text)
                if info.phase in (ReplyPhase.SENDING, ReplyPhase.SPEAKING):
                    info.to(ReplyEvent.PARAMS_CHANGED)
            else:
                info.next_params = params
        reply.add_text(text)
        return self._dispatch(now)

    def close_context(self, context_id: str, now: float) -> list[Output]:
        """No more text for ``context_id``: the server speaks what it holds, then it is over."""
        info = self._replies.get(context_id)
        if info is None or info.reply.state is not ReplyState.WRITING:
            return []
        reply = info.reply
        reply.state = ReplyState.CLOSING
        if info.conn is None and not reply.attempts and not reply.text.strip():
            # Nothing was ever said; the server has nothing to answer.
            info.to(ReplyEvent.FINISH)
            return [ContextFinished(context_id)]
        return self._dispatch(now)

    def interrupt(
        self, context_ids: Iterable[str], now: float, *, dispatch: bool = True
    ) -> list[Output]:
        """Barge-in: cancel ``context_ids`` so that none of their audio comes out again.

        This is the whole barge-in rule set:

        1. Each reply is marked cancelled at once: nothing of it is sent or
           played from here on, whatever the server does.
        2. A reply whose audio has all arrived holds nothing on the server;
           its connection is already free. Otherwise the server is told to
           drop the reply's buffered text and end its context, and the
           connection is then retired (closed). That holds for every server:
           one that does not echo ids cannot tell the cancelled reply's late
           audio from the next reply's, and one whose cancel leaves the
           segment in flight streaming would make the next reply queue behind
           it. Closing also frees the account's concurrency slot.
        3. The next reply goes to the warm spare at once; a new spare is
           opened in the background. Nothing here waits on the network.

        One barge-in may cancel its replies one call at a time (Pipecat names
        them one by one): those calls pass ``dispatch=False``, and
        :meth:`dispatch` follows the last of them. Otherwise a reply about to
        be cancelled could be handed the warm spare in between, and cancelling
        it would retire the spare too.
        """
        out: list[Output] = []
        context_ids = list(context_ids)
        for context_id in context_ids:
            info = self._replies.get(context_id)
            if info is None or info.reply.state.ended:
                continue
            info.to(ReplyEvent.CANCEL)
            info.retry = None
            conn = self._conns.get(info.conn) if info.conn is not None else None
            if conn is None or conn.state is ConnState.RETIRED:
                continue
            attempt = info.reply.attempt
            voice = info.params.voice_id
            if attempt is not None:
                out.append(Send(conn.id, rq.build_cancel(attempt.wire_id, voice)))
                out.append(Send(conn.id, rq.build_close(attempt.wire_id, voice)))
            out.extend(self._retire(conn, "barge-in"))
        for context_id in context_ids:
            self.forget(context_id)
        if dispatch:
            out.extend(self._dispatch(now))
        return out

    def dispatch(self, now: float) -> list[Output]:
        """Send what replies have ready and keep the pool of connections full.

        Ends a barge-in whose replies were cancelled with ``dispatch=False``.
        """
        return self._dispatch(now)

    def receive(self, conn: int, event: rs.ServerEvent, now: float) -> list[Output]:
        """Handle one message from the server on connection ``conn``."""
        state = self._conns.get(conn)
        if state is None:
            return []
        state.last_recv_at = now
        pinged = state.ping_sent_at is not None
        state.ping_sent_at = None  # any message proves the connection is alive
        if state.state is ConnState.RETIRED or isinstance(event, rs.Unrecognized):
            return []
        if isinstance(event, rs.Pong):
            self._keepalive.pong_received()
            state.last_pong_at = now
            info = self._info(state.reply)
            return self._check_reply(info, now) if info is not None else []
        if isinstance(event, rs.ServerError):
            return self._on_error(state, event, pinged, now)
        info = self._attribute(state, event.envelope)
        if info is None:
            return self._late_frame(state, event)
        return self._on_frame(state, info, event, now)

    def _attribute(self, conn: _Conn, envelope: rs.Envelope) -> _ReplyInfo | None:
        """The reply a frame on connection ``conn`` belongs to, or None if no live one's.

        An echoed id, when a server sends one, must agree with the connection's
        reply: a frame naming an older reply is that reply's late audio.
        """
        info = self._info(conn.reply)
        if info is None or info.reply.state.ended:
            return None
        previous = conn.previous
        if (
            envelope.request_id
            and previous is not None
            and previous.has_segment(envelope.request_id)
        ):
            return None  # say, a delayed complete of the reply before
        wire = envelope.external_request_id
        if wire is not None and info.reply.attempt and wire != info.reply.attempt.wire_id:
            return None
        return info

    def _late_frame(self, conn: _Conn, event: rs.ServerEvent) -> list[Output]:
        """A frame for no live reply: late audio of one already over (never played)."""
        if not isinstance(event, rs.AudioChunk | rs.WordTimestamp):
            return []
        previous = conn.previous or conn.reply
        what = f"reply {previous.id}" if previous else "no known reply"
        if previous is not None and previous.state is ReplyState.CANCELLED:
            return []  # a cancelled reply's audio is meant to be dropped
        if previous is not None and previous.words_prove_spoken():
            # Every word was heard: this is trailing silence after the last one.
            return [Notice("debug", f"trailing audio of {what} after its last word; not played")]
        detail = f"word {event.word!r}" if isinstance(event, rs.WordTimestamp) else "audio"
        return [Notice("warning", f"late {detail} on connection {conn.id} for {what}; not played")]

    def _on_frame(
        self, conn: _Conn, info: _ReplyInfo, event: rs.ServerEvent, now: float
    ) -> list[Output]:
        reply = info.reply
        segment = self._segment(conn, reply, event.envelope, now)  # type: ignore[union-attr]
        info.to(ReplyEvent.FRAME)
        failing = info.phase is ReplyPhase.FAILING
        out: list[Output] = []
        if isinstance(event, rs.AudioChunk):
            pcm = reply.add_audio(segment, event.audio, now)
            if pcm and not failing:
                out.append(AudioOut(reply.id, pcm))
        elif isinstance(event, rs.WordTimestamp):
            self._timed_voices.add(info.params.voice_id)
            time_s = reply.add_word(segment, event.word, event.start, event.end, now)
            if not failing:
                out.append(WordOut(reply.id, event.word, time_s))
        elif isinstance(event, rs.SegmentComplete):
            reply.complete(segment, now)
            if event.envelope.request_id is None:
                conn.unnamed += 1
        out.extend(self._check_reply(info, now))
        return out

    def _segment(self, conn: _Conn, reply: Reply, envelope: rs.Envelope, now: float) -> Segment:
        """The segment a frame belongs to; a new one records the gap before it."""
        key = envelope.request_id or f"unnamed-{conn.unnamed}"
        segment = reply.find_segment(key)
        if segment is not None:
            return segment
        attempt = reply.attempt
        assert attempt is not None
        since = reply.last_audio_at if attempt.segments else attempt.last_sent_at
        if since is not None:
            self._gaps.append(max(0.0, now - since))
        return reply.new_segment(key)

    def unreachable(self, now: float, reason: str) -> list[Output]:
        """The server cannot be reached: fail every reply that waits for a connection.

        Called by the shell when its reconnect policy judges the outage too
        long to wait out. Each waiting reply fails once (a reply spoken long
        after its moment is worse than none, and is billed), and so does any
        new one until a connection opens.

        Args:
            now: Current time in seconds.
            reason: Why, for the replies' errors.
        """
        self._unreachable = True
        return self._fail_waiting_replies(now, reason)
