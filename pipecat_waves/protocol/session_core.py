"""The session's state and the helpers every part of it shares (internal).

:class:`~.session.WavesSession` is assembled from layers, each in its own
module and each built on the one before: this core (what is remembered and
how a reply or connection is freed), :mod:`.dispatch` (what is sent where),
:mod:`.timers` (every timed rule), :mod:`.refusals` (server errors), and
:mod:`.session` (the public methods the shells call).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from pipecat_waves.protocol import requests as rq
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.connection_state import ConnEvent, ConnState, next_conn_state
from pipecat_waves.protocol.errors import CONNECTION_LOST as CONNECTION_LOST
from pipecat_waves.protocol.keepalive import KeepAlive
from pipecat_waves.protocol.outputs import (
    CloseConnection,
    OpenConnection,
    Output,
    Send,
)
from pipecat_waves.protocol.reply import Reply, ReplyState
from pipecat_waves.protocol.reply_state import (
    REFUSED_PHASES,
    ReplyEvent,
    ReplyPhase,
    next_phase,
)
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

#: Why a reply that arrives while the server cannot be reached fails.
UNREACHABLE_REASON = "the server cannot be reached; the reply was dropped rather than spoken late"

#: An idle socket closed sooner than this is not taken for the server's idle timeout.
MIN_IDLE_TIMEOUT_TRAIT_S = 2.0

#: ``complete_backoff_ms`` we ask for: a ``complete`` held back (4 s by the
#: documented default) keeps the context's concurrency slot and delays the
#: proof that a reply's last segment is over, so none is wanted.
COMPLETE_BACKOFF_MS = 0


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
    """One connection as the session sees it (``conn`` is short for connection)."""

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


class SessionCore:
    """What the session remembers, and the helpers every layer of it uses."""

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

    @property
    def gap_guard_s(self) -> float:
        """Quiet that ends a reply without word timestamps (see SessionConfig)."""
        longest = max(self._gaps, default=0.0)
        return min(max(self.config.min_gap_guard_s, 2 * longest), self.config.max_gap_guard_s)

    @property
    def keepalive(self) -> KeepAlive:
        """What is known about keeping connections open."""
        return self._keepalive

    def _info(self, reply: Reply | None) -> _ReplyInfo | None:
        if reply is None:
            return None
        info = self._replies.get(reply.id)
        return info if info is not None and info.reply is reply else None

    def _quiet_needed(self, info: _ReplyInfo) -> float | None:
        return info.reply.quiet_needed(
            self.config.tail_guard_s,
            self.gap_guard_s,
            expect_words=info.params.word_timestamps and info.params.voice_id in self._timed_voices,
            min_tail_guard_s=self.config.min_tail_guard_s,
        )

    def _ping(self, conn: _Conn, now: float) -> Send:
        conn.ping_sent_at = now
        conn.last_sent_at = now
        return Send(conn.id, rq.build_ping())

    def _request_connections(self, n: int, reason: str) -> list[Output]:
        self._opening += n
        return [OpenConnection(reason) for _ in range(n)]

    def _max_connections(self, now: float) -> int:
        limit = self.config.max_connections
        if self._connection_limit is not None:
            learned, until = self._connection_limit
            if now < until:
                return min(limit, learned)
            self._connection_limit = None
        return limit

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

    def _own_slot_freed(self) -> None:
        for info in self._replies.values():
            if info.phase is ReplyPhase.WAITING_OWN:
                assert info.retry is not None
                info.retry.not_before = 0.0
                info.to(ReplyEvent.SLOT_FREED)

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
