"""Timed rules, each written once.

A timed rule of the session looks at one reply, one connection or the
session as a whole and answers with a :class:`Due`: when it is next due and
what it does then. :meth:`~pipecat_waves.protocol.session.WavesSession.poll`
runs those due now; :meth:`~pipecat_waves.protocol.session.WavesSession.next_deadline`
reports the earliest. The timer and the rules cannot drift apart, because
there is only the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.connection_state import ConnEvent, ConnState
from pipecat_waves.protocol.dispatch import Dispatcher
from pipecat_waves.protocol.outputs import (
    AbortConnection,
    ContextFailed,
    ContextFinished,
    Notice,
    Output,
)
from pipecat_waves.protocol.reply_state import (
    ON_THE_QUIET_CLOCK,
    ReplyEvent,
    ReplyPhase,
)
from pipecat_waves.protocol.session_core import (
    CONNECTION_LOST,
    UNREACHABLE_REASON,
    _Conn,
    _ReplyInfo,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Due(Generic[T]):
    """A rule's next moment: at ``at``, ``act(now)`` does what the rule says.

    Attributes:
        at: When the rule is due, in the session's clock.
        what: What happens then, for logs and tests.
        act: Carries it out; returns the outputs for the shell.
    """

    at: float
    what: str
    act: Callable[[float], Sequence[T]]

    def run_if_due(self, now: float) -> list[T]:
        """The outputs of the rule if it is due at ``now``; nothing otherwise."""
        return list(self.act(now)) if self.at <= now else []


def earliest(dues: Sequence[Due[T] | None], default: float) -> float:
    """The earliest moment among ``dues``, or ``default`` if none is sooner."""
    return min([default, *(due.at for due in dues if due is not None)])


class TimedRules(Dispatcher):
    """Every timed rule of the session, and what ends a reply."""

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
