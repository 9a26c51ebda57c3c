"""Server errors on the live socket: which is which, and what the session does (internal)."""

from __future__ import annotations

from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.backoff import backoff_s
from pipecat_waves.protocol.connection_state import ConnState
from pipecat_waves.protocol.errors import (
    Subject,
    complains_of_ping,
    is_idle_timeout,
    is_rate_limit,
    names,
)
from pipecat_waves.protocol.outputs import (
    ContextRetrying,
    Notice,
    Output,
    UnattributedError,
)
from pipecat_waves.protocol.reply_state import (
    REFUSED_PHASES,
    ReplyEvent,
    ReplyPhase,
)
from pipecat_waves.protocol.session_core import (
    RETRY_FIRST_S,
    RETRY_LARGEST_S,
    _Conn,
    _ReplyInfo,
    _Retry,
)
from pipecat_waves.protocol.timers import TimedRules


def refuses_complete_backoff(error: rs.ServerError) -> bool:
    """Whether ``error`` refuses the ``complete_backoff_ms`` field itself."""
    return names(error, Subject.COMPLETE_BACKOFF)


def refuses_pronunciation_dicts(error: rs.ServerError) -> bool:
    """Whether ``error`` refuses the ``pronunciation_dicts`` field itself."""
    return names(error, Subject.PRONUNCIATION_DICTS)


class ErrorRules(TimedRules):
    """What the session does with each kind of server error."""

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
