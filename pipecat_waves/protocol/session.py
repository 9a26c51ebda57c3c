"""Client-side bookkeeping of a Waves live session, with no I/O.

The Pipecat service is a shell that moves bytes between sockets and this
object: text and server messages go in; messages to send, sockets to open or
close, and events (audio for reply X, a timed word, reply X finished or
failed) come out. Every method takes the current time, so each rule can be
unit-tested without sockets or an event loop.

Where each rule lives:

* **Reply progress** (when is a reply over?): :mod:`pipecat_waves.protocol.reply`.
* **Connections and attribution**: :meth:`WavesSession._attribute`. The server
  never names the context a frame belongs to, and need not echo our
  ``request_id``. So a connection carries **one reply at a time**, and every
  frame on it belongs to that reply. Replies that overlap (one playing while
  the next is prepared) each take a connection; a warm spare is kept so that
  neither a back-to-back reply nor a barge-in waits for a handshake.
* **Barge-in**: :meth:`WavesSession.interrupt`, the whole rule set in one place.
* **Recovery**: :meth:`WavesSession.connection_lost` (resend what was not
  spoken) and :meth:`WavesSession._on_refused` (retries per reply).
* **Keep-alive**: :mod:`pipecat_waves.protocol.keepalive`, applied in
  :meth:`WavesSession._conn_due`.
* **Timed rules**: each written once (:meth:`WavesSession._reply_due`,
  :meth:`WavesSession._conn_due`, :meth:`WavesSession._unreachable_due`);
  ``poll`` and ``next_deadline`` both read them (:mod:`.timers`).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial

from pipecat_waves.protocol import requests as rq
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.backoff import backoff_s
from pipecat_waves.protocol.connection_state import ConnEvent, ConnState, next_conn_state
from pipecat_waves.protocol.constants import MAX_FRAGMENT_CHARS
from pipecat_waves.protocol.keepalive import KeepAlive, complains_of_ping, is_idle_timeout
from pipecat_waves.protocol.reply import Reply, ReplyState, Segment
from pipecat_waves.protocol.reply_state import (
    NEEDS_CONTEXT,
    ON_THE_QUIET_CLOCK,
    REFUSED_PHASES,
    ReplyEvent,
    ReplyPhase,
    next_phase,
)
from pipecat_waves.protocol.text import split_at_words
from pipecat_waves.protocol.timers import Due, earliest
from pipecat_waves.protocol.traits import ServerTraits

#: Gaps remembered for the no-timestamp turn-end guard.
GAP_MEMORY = 32
#: How long a socket limit learned from a refusal is respected before trying more.
LIMIT_MEMORY_S = 60.0
#: Connections a reply may lose and still be resent; one more and it fails.
MAX_DROPS_PER_REPLY = 3
#: Waits between retries of a reply refused for the concurrency limit.
RETRY_FIRST_S = 0.1
RETRY_LARGEST_S = 2.0
#: Error code of a reply given up after losing its connection too often.
CONNECTION_LOST = "CONNECTION_LOST"

#: Why a reply that arrives while the server cannot be reached fails.
UNREACHABLE_REASON = "the server cannot be reached; the reply was dropped rather than spoken late"

#: An idle socket closed sooner than this is not taken for the server's idle timeout.
MIN_IDLE_TIMEOUT_TRAIT_S = 2.0

#: ``complete_backoff_ms`` we ask for: a ``complete`` held back (4 s by the
#: documented default) keeps the context's concurrency slot and delays the
#: proof that a reply's last segment is over, so none is wanted.
COMPLETE_BACKOFF_MS = 0

_RATE_LIMIT_CODES = frozenset({"RATE_LIMIT", "CONCURRENCY_LIMIT", "TOO_MANY_REQUESTS", "429"})
_RATE_LIMIT_WORDS = re.compile(r"concurren|rate.?limit|too many", re.IGNORECASE)


def refuses_complete_backoff(error: rs.ServerError) -> bool:
    """Whether ``error`` refuses the ``complete_backoff_ms`` field itself."""
    return "complete_backoff" in f"{error.code or ''} {error.message}".lower()


def refuses_pronunciation_dicts(error: rs.ServerError) -> bool:
    """Whether ``error`` refuses the ``pronunciation_dicts`` field itself."""
    return "pronunciation_dicts" in f"{error.code or ''} {error.message}".lower()


def is_rate_limit(error: rs.ServerError) -> bool:
    """Whether ``error`` refuses a request for the account's concurrency or rate limit."""
    return (error.code or "").upper() in _RATE_LIMIT_CODES or bool(
        _RATE_LIMIT_WORDS.search(error.message)
    )


# ---------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Send:
    """Send ``message`` (a JSON object) on connection ``conn``."""

    conn: int
    message: dict


@dataclass(frozen=True)
class AudioOut:
    """Audio for reply ``context_id``, whole samples only."""

    context_id: str
    pcm: bytes


@dataclass(frozen=True)
class WordOut:
    """A spoken word, ``time_s`` seconds after the start of its reply's audio."""

    context_id: str
    word: str
    time_s: float


@dataclass(frozen=True)
class ContextFinished:
    """Everything sent for ``context_id`` has been spoken; nothing more will come."""

    context_id: str


@dataclass(frozen=True)
class ContextFailed:
    """The server refused ``context_id``; report it once. Nothing more will come."""

    context_id: str
    error: rs.ServerError


@dataclass(frozen=True)
class ContextRetrying:
    """``context_id`` was refused for the concurrency limit and will be sent again."""

    context_id: str
    error: rs.ServerError
    delay_s: float | None  # None: as soon as one of our own replies frees its slot


@dataclass(frozen=True)
class OpenConnection:
    """Open a connection; report it with :meth:`WavesSession.connection_opened`."""

    reason: str


@dataclass(frozen=True)
class CloseConnection:
    """Close ``conn`` once the messages already queued for it are sent."""

    conn: int
    reason: str


@dataclass(frozen=True)
class AbortConnection:
    """``conn`` stopped answering: drop it now (its reply moves on, see connection_lost)."""

    conn: int
    reason: str


@dataclass(frozen=True)
class UnattributedError:
    """An error on ``conn`` that belongs to no reply (the shell decides if it is fatal)."""

    conn: int
    error: rs.ServerError


@dataclass(frozen=True)
class Notice:
    """Something routine worth a log line, and nothing more."""

    level: str  # "debug", "info" or "warning"
    message: str


Output = (
    Send
    | AudioOut
    | WordOut
    | ContextFinished
    | ContextFailed
    | ContextRetrying
    | OpenConnection
    | CloseConnection
    | AbortConnection
    | UnattributedError
    | Notice
)


# ------------------------------------------------------------------------ state


@dataclass
class SessionConfig:
    """Tunable timing of the session.

    Parameters:
        sample_rate: Rate requested from the server; turns byte counts into seconds.
        tail_guard_s: Once word timestamps account for every word, the most
            the reply may stay quiet (for trailing silence) before it is over,
            when its last segment has not completed. Twice the server's
            longest pause between chunks is used when that is shorter.
        min_tail_guard_s: The least that trailing-silence guard shrinks to.
        min_gap_guard_s: Least quiet that ends a reply without word
            timestamps. The guard grows to twice the longest gap seen
            between a request and its audio or between two segments.
        max_gap_guard_s: Most that guard ever grows to.
        keepalive_interval_s: Ping a connection after this long without
            sending on it, so the server's idle timeout never closes it.
        stall_probe_s: A connection awaiting audio and silent this long is
            asked whether it is alive (only on servers that answer pings).
        pong_timeout_s: A ping unanswered this long means the connection is dead.
        spare_connections: Warm connections kept free, so that a barge-in or
            a back-to-back reply never waits for a handshake.
        max_connections: Most connections open at once (the account allows
            five per unit of concurrency).
        max_replies_in_flight: Replies sent to the server at once: the one
            playing and the next ones prepared behind it. Later replies wait
            their turn here, with no clock running.
        retry_budget_s: How long a reply refused for the concurrency limit,
            while none of our own replies holds a slot, keeps being retried.

    How long a reply may wait for a connection during an outage is not the
    session's to judge: the reconnect policy (:mod:`.reconnect`) owns the one
    outage clock and the shell calls :meth:`WavesSession.unreachable`.
    """

    sample_rate: int = 24000
    tail_guard_s: float = 0.25
    min_tail_guard_s: float = 0.05
    min_gap_guard_s: float = 0.5
    max_gap_guard_s: float = 5.0
    keepalive_interval_s: float = 20.0
    stall_probe_s: float = 2.0
    pong_timeout_s: float = 2.0
    spare_connections: int = 1
    max_connections: int = 4
    max_replies_in_flight: int = 2
    retry_budget_s: float = 10.0


@dataclass
class _Conn:
    id: int
    state: ConnState
    last_sent_at: float
    last_recv_at: float
    reply: Reply | None = None
    previous: Reply | None = None  # the last reply it carried, for late frames
    ping_sent_at: float | None = None
    last_text_at: float = 0.0
    last_pong_at: float = float("-inf")
    unnamed: int = 0  # segments of a server that names none, so far
    ignore_refusals: bool = False  # refusals of an attempt already being retried

    @property
    def open(self) -> bool:
        return self.state is not ConnState.RETIRED

    def to(self, event: ConnEvent) -> None:
        """Move on ``event``: the one place a connection's state changes."""
        self.state = next_conn_state(self.state, event)


@dataclass
class _Retry:
    first_refused_at: float
    tries: int = 0
    not_before: float = 0.0


@dataclass
class _ReplyInfo:
    """What the session keeps beside a reply's progress."""

    reply: Reply
    params: rq.VoiceParams
    max_buffer_delay_ms: int | None
    phase: ReplyPhase = ReplyPhase.QUEUED
    conn: int | None = None  # the connection carrying it, while one does
    error: rs.ServerError | None = None  # what FAILING will report
    error_at: float = 0.0
    retry: _Retry | None = None  # the clock of its refusals, from the first one on
    drops: int = 0  # connections lost while carrying it
    resume_at: int | None = None  # where that context starts (None: first unspoken word)
    wire_seq: int = 0
    asked_no_backoff: bool = False  # its current context was sent complete_backoff_ms
    asked_dicts: bool = False  # its current context was sent pronunciation_dicts
    # A voice, model or language change mid-reply: text from ``switch_at`` on
    # goes to a new server context with these parameters, once the current
    # one has been spoken (a server context keeps one voice).
    next_params: rq.VoiceParams | None = None
    switch_at: int = 0

    def to(self, event: ReplyEvent) -> None:
        """Move on ``event``: the one place a reply's phase changes.

        The reply's own :class:`ReplyState` follows it into the ended states,
        so that the two never disagree about a reply being over.
        """
        self.phase = next_phase(self.phase, event)
        if self.phase.ended:
            self.reply.state = _ENDED_STATE[self.phase]


_ENDED_STATE = {
    ReplyPhase.FINISHED: ReplyState.FINISHED,
    ReplyPhase.FAILED: ReplyState.FAILED,
    ReplyPhase.CANCELLED: ReplyState.CANCELLED,
}


class WavesSession:
    """Everything the client must remember about its replies and connections.

    All methods are synchronous and take the current time; each returns the
    outputs the I/O shell must act on, in order.
    """

    def __init__(
        self, config: SessionConfig | None = None, traits: ServerTraits | None = None
    ) -> None:
        """Start a session.

        Args:
            config: Timing; the defaults suit the documented server.
            traits: What is already known of the server (a probe report or
                an earlier session's :meth:`traits`); see :meth:`_apply_traits`
                for what is acted on. The keep-alive interval, which a known
                idle timeout sets, is the config's.
        """
        self.config = config or SessionConfig()
        self._given_traits = traits or ServerTraits()
        self._replies: dict[str, _ReplyInfo] = {}
        self._by_wire: dict[str, _ReplyInfo] = {}
        self._conns: dict[int, _Conn] = {}
        self._opening = 0  # OpenConnection outputs not yet answered
        self._keepalive = KeepAlive(self.config.keepalive_interval_s)
        self._gaps: deque[float] = deque(maxlen=GAP_MEMORY)
        self._timed_voices: set[str] = set()  # voices the server has timed words for
        self._connection_limit: tuple[int, float] | None = None  # (most sockets, until)
        # Cleared for good once a server refuses the field (some refuse the
        # legacy buffering fields beside a context_id).
        self._send_complete_backoff = True
        # Where the socket is not known to take pronunciation_dicts, the first
        # refusal teaches the session to send replies without it.
        self._dicts_refused = False
        self._dicts_warned = False
        self._apply_traits(self._given_traits)
        # The server cannot be reached (see unreachable()): replies that would
        # wait for a connection fail at once until one opens.
        self._unreachable = False
        # Replies that failed, so text still arriving for them starts nothing.
        self._failed: deque[str] = deque(maxlen=GAP_MEMORY)

    def _apply_traits(self, traits: ServerTraits) -> None:
        """Act on the hints whose being wrong costs no more than learning would.

        A known ``complete_backoff_ms`` refusal: the field is never sent (a
        wrong hint only leaves completes held back, which nothing waits on).
        Ping support is not acted on either way: the first ping costs nothing,
        a refusal of a ping believed answered could not be told from a reply's
        error, and a wrong "refused" would switch off stall detection.
        """
        if traits.complete_backoff_with_context == "refuse":
            self._send_complete_backoff = False

    # ----------------------------------------------------------------- queries

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
        """State of ``conn``, or None once it is gone."""
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

    @property
    def keepalive(self) -> KeepAlive:
        """What is known about keeping connections open."""
        return self._keepalive

    @property
    def gap_guard_s(self) -> float:
        """Quiet that ends a reply without word timestamps (see SessionConfig)."""
        longest = max(self._gaps, default=0.0)
        return min(max(self.config.min_gap_guard_s, 2 * longest), self.config.max_gap_guard_s)

    # ------------------------------------------------------------- connections

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

    def _max_connections(self, now: float) -> int:
        limit = self.config.max_connections
        if self._connection_limit is not None:
            learned, until = self._connection_limit
            if now < until:
                return min(limit, learned)
            self._connection_limit = None
        return limit

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

    # -------------------------------------------------------------------- text

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

    # ---------------------------------------------------------------- barge-in

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

    def forget(self, context_id: str) -> None:
        """Drop a reply that is over, or that Pipecat is done with.

        Its connection still knows it (``previous``), so late frames of it are
        recognised and never taken for the next reply's.
        """
        info = self._replies.pop(context_id, None)
        if info is None:
            return
        if not info.phase.ended:
            info.to(ReplyEvent.CANCEL)
        for attempt in info.reply.attempts:
            self._by_wire.pop(attempt.wire_id, None)

    # ---------------------------------------------------------------- receive

    def receive(self, conn: int, event: rs.ServerEvent, now: float) -> list[Output]:
        """Handle one message from the server on ``conn``."""
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
        """The reply a frame on ``conn`` belongs to, or None if no live one's.

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

    # ------------------------------------------------------------------ errors

    def _on_error(
        self, conn: _Conn, error: rs.ServerError, pinged: bool, now: float
    ) -> list[Output]:
        if is_idle_timeout(error):
            # Routine: the server closes the socket next, and connection_lost
            # resends whatever it carried.
            return [Notice("debug", f"connection {conn.id}: server idle timeout ({error.message})")]
        info = self._info(conn.reply)
        live = info is not None and not info.reply.state.ended
        if (
            pinged
            and self._keepalive.ping_supported is not True
            and (not live or complains_of_ping(error))
        ):
            self._keepalive.ping_refused()
            return [Notice("info", "the server does not answer pings; keep-alive is off")]
        if refuses_pronunciation_dicts(error):
            return self._on_dicts_refused(conn, info if live else None, now)
        if refuses_complete_backoff(error):
            return self._on_complete_backoff_refused(conn, info if live else None, now)
        if info is None or not live:
            return [UnattributedError(conn.id, error)]
        assert info is not None
        if is_rate_limit(error):
            if conn.ignore_refusals:
                return []  # another fragment of the attempt already being retried
            return self._on_refused(conn, info, error, now)
        if info.phase is not ReplyPhase.FAILING:
            info.error = error
            info.error_at = now
            info.to(ReplyEvent.ERROR)
        return self._check_reply(info, now)

    def _on_complete_backoff_refused(
        self, conn: _Conn, info: _ReplyInfo | None, now: float
    ) -> list[Output]:
        """The server will not take ``complete_backoff_ms``: stop sending it.

        The refusal is per message, so the reply's context got none of its
        text: it starts again, without the field, on a new context. Every other
        fragment of the refused context gets the same answer: those are dropped.
        """
        out: list[Output] = []
        if self._send_complete_backoff:
            self._send_complete_backoff = False
            out.append(
                Notice(
                    "info",
                    "the server refuses 'complete_backoff_ms' with a context; no longer "
                    "sending it (nothing here waits on a held-back 'complete')",
                )
            )
        attempt = info.reply.attempt if info is not None else None
        if info is None or attempt is None or not info.asked_no_backoff:
            return out  # another fragment of a context already restarted
        info.asked_no_backoff = False
        if info.phase is ReplyPhase.FAILING:
            return out  # nothing more of it is sent
        info.to(ReplyEvent.RESTART)
        if attempt.segments:
            # Part was accepted after all and its audio is still coming on
            # this socket: leave it, and resume the unheard rest elsewhere.
            out.extend(self._retire(conn, "resuming without 'complete_backoff_ms'"))
            info.conn = None
        else:
            info.resume_at = attempt.text_start
        out.extend(self._dispatch(now))
        return out

    def _on_dicts_refused(self, conn: _Conn, info: _ReplyInfo | None, now: float) -> list[Output]:
        """The socket will not take ``pronunciation_dicts``: send replies without it.

        As with ``complete_backoff_ms``, the refused context got none of its
        text: the reply starts again, without the field, on a new context, and
        the other fragments of the refused one (refused alike) are dropped.
        """
        out: list[Output] = []
        if not self._dicts_refused:
            self._dicts_refused = True
            out.extend(self._dicts_not_applied("the server refuses them on the live socket"))
        attempt = info.reply.attempt if info is not None else None
        if info is None or attempt is None or not info.asked_dicts:
            return out  # another fragment of a context already restarted
        info.asked_dicts = False
        if info.phase is ReplyPhase.FAILING:
            return out  # nothing more of it is sent
        info.to(ReplyEvent.RESTART)
        if attempt.segments:
            out.extend(self._retire(conn, "resuming without 'pronunciation_dicts'"))
            info.conn = None
        else:
            info.resume_at = attempt.text_start
        out.extend(self._dispatch(now))
        return out

    def _sends_dicts(self) -> bool:
        """Whether ``pronunciation_dicts`` goes out on the socket (see ServerTraits)."""
        known = self._given_traits.pronunciation_dicts_on_socket
        return not self._dicts_refused and known not in ("refuse", "ignore")

    def _dicts_not_applied(self, why: str) -> list[Output]:
        """The one warning that the user's dictionaries are not applied."""
        if self._dicts_warned:
            return []
        self._dicts_warned = True
        return [
            Notice(
                "warning",
                f"pronunciation dictionaries are not applied: {why}; replies are spoken "
                "without them (the HTTP endpoints apply them)",
            )
        ]

    def _on_refused(
        self, conn: _Conn, info: _ReplyInfo, error: rs.ServerError, now: float
    ) -> list[Output]:
        """The account's concurrency limit refused a reply: retry it, per reply.

        While another of our own replies holds a slot, the refused one simply
        waits for it (no clock, no budget). Otherwise it is retried with
        backoff for at most ``retry_budget_s``, then reported once.
        """
        if info.phase is ReplyPhase.FAILING:
            return []  # already failing for another reason
        retry = info.retry or _Retry(first_refused_at=now)
        info.retry = retry
        conn.ignore_refusals = True
        if self._own_slots_held(info):
            info.to(ReplyEvent.REFUSED_WAIT_OWN)
            return [ContextRetrying(info.reply.id, error, None)]
        if now - retry.first_refused_at >= self.config.retry_budget_s:
            info.error = error
            info.error_at = now
            info.to(ReplyEvent.ERROR)
            return self._check_reply(info, now, force=True)
        retry.tries += 1
        delay = backoff_s(retry.tries, RETRY_FIRST_S, RETRY_LARGEST_S)
        retry.not_before = now + delay
        info.to(ReplyEvent.REFUSED)
        return [ContextRetrying(info.reply.id, error, delay)]

    def _own_slots_held(self, info: _ReplyInfo) -> bool:
        """Whether another of our replies may hold a concurrency slot on the server."""
        for conn in self._conns.values():
            if conn.state is ConnState.RETIRED:
                return True  # a cancelled synthesis may run until the socket is gone
            other = self._info(conn.reply)
            if (
                other is not None
                and other is not info
                and other.phase not in REFUSED_PHASES  # a refused reply holds no slot
                and not other.phase.ended
            ):
                return True
        return False

    def _own_slot_freed(self) -> None:
        for info in self._replies.values():
            if info.phase is ReplyPhase.WAITING_OWN:
                assert info.retry is not None
                info.retry.not_before = 0.0
                info.to(ReplyEvent.SLOT_FREED)

    # ----------------------------------------------------------------- endings

    def _check_reply(self, info: _ReplyInfo, now: float, *, force: bool = False) -> list[Output]:
        """Act on the reply's timed rule if it is due now (``force``: report its failure now)."""
        if force:
            return self._report_failure(info, now)
        due = self._reply_due(info, now)
        return due.run_if_due(now) if due is not None else []

    def _report_failure(self, info: _ReplyInfo, now: float) -> list[Output]:
        """Report a failing reply once and free its connection."""
        assert info.error is not None
        reply = info.reply
        info.to(ReplyEvent.GIVE_UP)
        self._failed.append(reply.id)
        out: list[Output] = [ContextFailed(reply.id, info.error)]
        out += self._release(info, clean=False)
        self.forget(reply.id)
        return out + self._dispatch(now)

    def _finish(self, info: _ReplyInfo, now: float) -> list[Output]:
        """The reply's audio has all been heard: it is over."""
        reply = info.reply
        since = reply.quiet_since() or now
        info.to(ReplyEvent.FINISH)
        how = "every word timed" if reply.words_prove_spoken() else "quiet guard"
        out: list[Output] = [
            ContextFinished(reply.id),
            Notice("debug", f"reply {reply.id} over ({how}, {now - since:.2f} s after its audio)"),
        ]
        if reply.attempt and reply.attempt.words_seen and not reply.all_words_matched():
            out.append(
                Notice(
                    "warning",
                    f"reply {reply.id}: no timestamp matched {reply.missing_words()!r}; "
                    "taken as spoken after a quiet spell",
                )
            )
        out += self._release(info, clean=True)
        self.forget(reply.id)
        return out + self._dispatch(now)

    def _switch_params(self, info: _ReplyInfo, now: float) -> list[Output]:
        """The text before a settings change has been spoken: go on with the new ones."""
        assert info.next_params is not None
        info.params, info.next_params = info.next_params, None
        info.to(ReplyEvent.SWITCHED)
        info.resume_at = info.switch_at
        return self._dispatch(now)

    def _quiet_needed(self, info: _ReplyInfo) -> float | None:
        return info.reply.quiet_needed(
            self.config.tail_guard_s,
            self.gap_guard_s,
            expect_words=info.params.word_timestamps and info.params.voice_id in self._timed_voices,
            min_tail_guard_s=self.config.min_tail_guard_s,
        )

    def _release(self, info: _ReplyInfo, *, clean: bool) -> list[Output]:
        """Free the connection of a reply that is over."""
        conn = self._conns.get(info.conn) if info.conn is not None else None
        info.conn = None
        refused_waiting = any(
            other.phase in REFUSED_PHASES and other is not info for other in self._replies.values()
        )
        self._own_slot_freed()
        if conn is None or conn.state is ConnState.RETIRED:
            return []
        conn.previous = info.reply
        conn.reply = None
        if not clean:
            # The server may still hold part of a failed reply: start afresh.
            return self._retire(conn, "reply failed")
        if refused_waiting and not info.reply.last_segment_completed():
            # A server may hold the context's concurrency slot until a
            # held-back ``complete``; closing the socket frees it now for the
            # reply that was refused one.
            return self._retire(conn, "free its concurrency slot for a waiting reply")
        conn.to(ConnEvent.FREE)
        return []

    def _retire(self, conn: _Conn, reason: str) -> list[Output]:
        if conn.state is ConnState.RETIRED:
            return []
        conn.to(ConnEvent.RETIRE)
        return [CloseConnection(conn.id, reason)]

    # ------------------------------------------------------------------ timers

    def poll(self, now: float) -> list[Output]:
        """Act on time passing: run every timed rule that is due (see :meth:`_dues`)."""
        out: list[Output] = []
        for due in self._dues(now):
            out.extend(due.run_if_due(now))
        out.extend(self._dispatch(now))
        return out

    def next_deadline(self, now: float) -> float:
        """The earliest time at which :meth:`poll` may have something to do.

        Lets the shell sleep exactly as long as nothing can happen. Events that
        bring a deadline forward (new text, a close, a frame) are the shell's
        cue to ask again.
        """
        return earliest(list(self._dues(now)), now + self._keepalive.interval_s)

    def _dues(self, now: float) -> Iterator[Due[Output]]:
        """Every timed rule's next moment, one rule at a time.

        Lazily, so that :meth:`poll` sees each rule as the ones before it
        left the session.
        """
        due = self._unreachable_due(now)
        if due is not None:
            yield due
        for info in list(self._replies.values()):
            due = self._reply_due(info, now)
            if due is not None:
                yield due
        for conn in list(self._conns.values()):
            due = self._conn_due(conn)
            if due is not None:
                yield due

    def _unreachable_due(self, now: float) -> Due[Output] | None:
        """Rule: while the server is unreachable, a reply waiting for a connection fails."""
        if not self._unreachable or any(c.open for c in self._conns.values()):
            return None
        if not any(self._waits_for_connection(info) for info in self._replies.values()):
            return None
        return Due(now, "fail waiting replies", self._fail_unreachable)

    def _fail_unreachable(self, now: float) -> list[Output]:
        return self._fail_waiting_replies(now, UNREACHABLE_REASON)

    def _reply_due(self, info: _ReplyInfo, now: float) -> Due[Output] | None:
        """Rule: when a reply's phase next moves with time, and how.

        A failing reply is reported once the audio under way has played; a
        refused one is sent again after its backoff; one whose audio went
        quiet long enough is over (or goes on with its new settings), unless
        a stalled socket could explain the quiet: then a pong must come first.
        """
        reply = info.reply
        if info.phase is ReplyPhase.FAILING:
            at = max(reply.last_frame_at or 0.0, info.error_at) + self.config.tail_guard_s
            return Due(at, "report the failure", partial(self._report_failure, info))
        if info.phase is ReplyPhase.REFUSED:
            retry = info.retry
            if retry is None or retry.not_before <= now:
                return None  # sent as soon as dispatch finds it room
            return Due(retry.not_before, "retry the refused reply", self._dispatch)
        if info.phase not in ON_THE_QUIET_CLOCK:
            return None
        needed = self._quiet_needed(info)
        since = reply.quiet_since()
        if needed is None or since is None:
            return None
        if info.phase is ReplyPhase.SWITCHING:
            return Due(since + needed, "switch settings", partial(self._switch_params, info))
        conn = self._conns.get(info.conn) if info.conn is not None else None
        if (
            conn is not None
            and not reply.words_prove_spoken()
            and self._keepalive.can_probe_stalls
            and conn.last_pong_at < since
        ):
            # Quiet alone could be a stalled socket: where the server answers
            # pings, a pong after the quiet began must show it is alive first.
            if conn.ping_sent_at is not None:
                return None  # the pong, or its timeout (the connection's rule), decides
            return Due(since + needed, "prove the socket alive", partial(self._ping_out, conn))
        return Due(since + needed, "finish the reply", partial(self._finish, info))

    def _conn_due(self, conn: _Conn) -> Due[Output] | None:
        """Rule: a connection is pinged when idle or stalled, and dropped if it never answers."""
        if conn.state in (ConnState.RETIRED, ConnState.ABORTING):
            return None
        if conn.ping_sent_at is not None:
            at = conn.ping_sent_at + self.config.pong_timeout_s
            return Due(at, "give up on the ping", partial(self._pong_overdue, conn))
        ats = []
        ping_at = self._keepalive.next_ping_at(conn.last_sent_at)
        if ping_at is not None:
            ats.append(ping_at)
        if self._awaits_audio(conn) and self._keepalive.can_probe_stalls:
            ats.append(max(conn.last_recv_at, conn.last_text_at) + self.config.stall_probe_s)
        if not ats:
            return None
        return Due(min(ats), "ping", partial(self._ping_out, conn))

    def _awaits_audio(self, conn: _Conn) -> bool:
        info = self._info(conn.reply)
        return bool(info and info.phase in ON_THE_QUIET_CLOCK and info.reply.attempt)

    def _pong_overdue(self, conn: _Conn, now: float) -> list[Output]:
        conn.ping_sent_at = None
        if self._keepalive.ping_supported is not True:
            # An unanswered first ping says nothing about the socket
            # (a server may simply ignore unknown messages).
            return []
        conn.to(ConnEvent.ABORT)
        return [AbortConnection(conn.id, "no answer to a ping")]

    def _ping_out(self, conn: _Conn, now: float) -> list[Output]:
        return [self._ping(conn, now)]

    def _ping(self, conn: _Conn, now: float) -> Send:
        conn.ping_sent_at = now
        conn.last_sent_at = now
        return Send(conn.id, rq.build_ping())

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self, now: float) -> list[Output]:
        """Send what replies have ready, in order, and keep the pool of connections."""
        out: list[Output] = []
        waiting = 0
        for info in self._replies.values():
            if info.phase.ended or info.phase is ReplyPhase.FAILING:
                continue
            if info.conn is None:
                if not self._ready_to_start(info, now):
                    if self._has_something_to_send(info):
                        waiting += 1
                        break  # replies start in order: none overtakes an earlier one
                    continue
                conn = self._spare()
                if conn is None:
                    waiting += 1
                    break
                self._bind(info, conn)
            out.extend(self._send_ready(info, now))
        out.extend(self._keep_pool(waiting, now))
        return out

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

    def _fail_waiting_replies(self, now: float, reason: str) -> list[Output]:
        if not self._unreachable or any(c.open for c in self._conns.values()):
            return []
        out: list[Output] = []
        for info in list(self._replies.values()):
            if not self._waits_for_connection(info):
                continue
            info.error = rs.ServerError(rs.Envelope(), reason, CONNECTION_LOST)
            info.error_at = now
            info.to(ReplyEvent.ERROR)
            out.extend(self._check_reply(info, now, force=True))
        return out

    @staticmethod
    def _waits_for_connection(info: _ReplyInfo) -> bool:
        """Whether a reply waits for a connection (a refused one waits for its retry)."""
        return info.conn is None and info.phase in (ReplyPhase.QUEUED, ReplyPhase.RESENDING)

    def _has_something_to_send(self, info: _ReplyInfo) -> bool:
        reply = info.reply
        return bool(reply.unsent().strip()) or (
            reply.state is ReplyState.CLOSING and bool(reply.text.strip())
        )

    def _ready_to_start(self, info: _ReplyInfo, now: float) -> bool:
        if not self._has_something_to_send(info):
            return False
        if self._held_back(info, now):
            return False
        in_flight = sum(
            1
            for other in self._replies.values()
            if other.conn is not None and not other.reply.state.ended
        )
        return in_flight < self.config.max_replies_in_flight

    def _held_back(self, info: _ReplyInfo, now: float) -> bool:
        """Whether a refused reply must wait before it is sent again."""
        if info.phase is ReplyPhase.WAITING_OWN:
            return True
        return (
            info.phase is ReplyPhase.REFUSED
            and info.retry is not None
            and info.retry.not_before > now
        )

    def _spare(self) -> _Conn | None:
        spares = [c for c in self._conns.values() if c.state is ConnState.SPARE]
        # The oldest first: replies stay on one socket when they do not overlap.
        spares.sort(key=lambda c: c.id)
        return spares[0] if spares else None

    def _bind(self, info: _ReplyInfo, conn: _Conn) -> None:
        assert info.phase in NEEDS_CONTEXT
        conn.to(ConnEvent.BIND)
        conn.reply = info.reply
        conn.ignore_refusals = False
        info.conn = conn.id

    def _send_ready(self, info: _ReplyInfo, now: float) -> list[Output]:
        """Send a bound reply's unsent text, and its end once it has one."""
        conn = self._conns[info.conn] if info.conn is not None else None
        if conn is None:
            return []
        reply = info.reply
        if self._held_back(info, now):
            return []
        notices: list[Output] = []
        if info.phase in NEEDS_CONTEXT:
            info.to(ReplyEvent.START_CONTEXT)
            if info.next_params is not None:
                info.to(ReplyEvent.PARAMS_CHANGED)
            info.wire_seq += 1
            wire_id = reply.id if info.wire_seq == 1 else f"{reply.id}.{info.wire_seq}"
            reply.start_attempt(wire_id, info.resume_at)
            info.resume_at = None
            info.asked_no_backoff = self._send_complete_backoff
            notices = self._dicts_for_attempt(info)
            self._by_wire[wire_id] = info
            conn.ignore_refusals = False
        attempt = reply.attempt
        assert attempt is not None
        out: list[Output] = []
        switching = info.next_params is not None
        upto = info.switch_at if switching else len(reply.text)
        text = reply.text[attempt.sent_upto : upto]
        if text.strip():
            for piece in split_at_words(text, MAX_FRAGMENT_CHARS):
                out.append(Send(conn.id, self._fragment(info, piece, more=True)))
            attempt.sent_upto = upto
            attempt.last_sent_at = now
            conn.last_text_at = now
        closing = switching or reply.state is ReplyState.CLOSING
        if closing and attempt.close_sent_at is None:
            out.append(Send(conn.id, self._fragment(info, "", more=False)))
            attempt.close_sent_at = now
        if out:
            conn.last_sent_at = now
        return notices + out

    def _dicts_for_attempt(self, info: _ReplyInfo) -> list[Output]:
        """Decide, as an attempt starts, whether its fragments carry the dictionaries."""
        wanted = bool(info.params.pronunciation_dicts)
        info.asked_dicts = wanted and self._sends_dicts()
        if not wanted or info.asked_dicts:
            return []
        known = self._given_traits.pronunciation_dicts_on_socket
        why = "the server ignores them on the live socket"
        if self._dicts_refused or known == "refuse":
            why = "the server refuses them on the live socket"
        return self._dicts_not_applied(why)

    def _fragment(self, info: _ReplyInfo, text: str, *, more: bool) -> dict:
        attempt = info.reply.attempt
        assert attempt is not None
        params = info.params
        if params.pronunciation_dicts and not info.asked_dicts:
            params = replace(params, pronunciation_dicts=None)
        return rq.build_fragment(
            text,
            params,
            context_id=attempt.wire_id,
            more=more,
            max_buffer_delay_ms=info.max_buffer_delay_ms,
            request_id=attempt.wire_id,
            complete_backoff_ms=COMPLETE_BACKOFF_MS if info.asked_no_backoff else None,
        )

    def _keep_pool(self, waiting: int, now: float) -> list[Output]:
        """Open connections for waiting replies plus the spares; close surplus spares."""
        spares = [c for c in self._conns.values() if c.state is ConnState.SPARE]
        in_use = sum(1 for c in self._conns.values() if c.open)
        wanted = min(waiting, 1) + self.config.spare_connections
        room = self._max_connections(now) - in_use - self._opening
        missing = min(wanted - len(spares) - self._opening, room)
        if missing > 0:
            return self._request_connections(missing, "keep a warm spare")
        out: list[Output] = []
        # One spare over the target is kept: replies end and start all the
        # time, and a handshake saved is worth more than an idle socket.
        for conn in spares[wanted + 1 :]:
            out.extend(self._retire(conn, "surplus spare"))
        return out

    def _request_connections(self, n: int, reason: str) -> list[Output]:
        self._opening += n
        return [OpenConnection(reason) for _ in range(n)]

    def _info(self, reply: Reply | None) -> _ReplyInfo | None:
        if reply is None:
            return None
        info = self._replies.get(reply.id)
        return info if info is not None and info.reply is reply else None
