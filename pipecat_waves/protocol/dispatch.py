"""Dispatch: which reply goes out on which connection, and the pool kept warm (internal)."""

from __future__ import annotations

from dataclasses import replace

from pipecat_waves.protocol import requests as rq
from pipecat_waves.protocol.connection_state import ConnEvent, ConnState
from pipecat_waves.protocol.constants import MAX_FRAGMENT_CHARS
from pipecat_waves.protocol.outputs import (
    Notice,
    Output,
    Send,
)
from pipecat_waves.protocol.reply import ReplyState
from pipecat_waves.protocol.reply_state import (
    NEEDS_CONTEXT,
    ReplyEvent,
    ReplyPhase,
)
from pipecat_waves.protocol.session_core import (
    COMPLETE_BACKOFF_MS,
    SessionCore,
    _Conn,
    _ReplyInfo,
)
from pipecat_waves.protocol.text import split_at_words


class Dispatcher(SessionCore):
    """Sends what replies have ready, in order, and keeps the pool of connections."""

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

    def _has_something_to_send(self, info: _ReplyInfo) -> bool:
        reply = info.reply
        return bool(reply.unsent().strip()) or (
            reply.state is ReplyState.CLOSING and bool(reply.text.strip())
        )

    @staticmethod
    def _waits_for_connection(info: _ReplyInfo) -> bool:
        """Whether a reply waits for a connection (a refused one waits for its retry)."""
        return info.conn is None and info.phase in (ReplyPhase.QUEUED, ReplyPhase.RESENDING)

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
