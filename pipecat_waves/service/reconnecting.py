"""The WebSocket service's connections: opening, reconnecting, closes, and its one timer.

:class:`ReconnectingMixin` is what :class:`~pipecat_waves.service.websocket.WavesTTSService`
does with its open WebSockets (each a :class:`~pipecat_waves.service.connection.LiveSocket`,
known by its connection number): it opens them as the session asks, waits
between attempts as the reconnect policy (:mod:`pipecat_waves.protocol.reconnect`)
says, tells the session and the policy of every message and close (classifying
the close), carries out the policy's verdicts, and runs the timer that serves
both the session's and the policy's deadlines. A mixin of that service only:
the state it uses is the service's, declared below.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipecat.services.tts_service import TTSService
from pipecat.utils.errors import ErrorCategory

from pipecat_waves.log import logger
from pipecat_waves.protocol import errors as pe
from pipecat_waves.protocol import reconnect as rc
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol import session as sn
from pipecat_waves.service.connection import (
    LiveSocket,
    LiveSocketHandlers,
    WavesConnectError,
    open_socket,
)

__all__ = ["MAX_TIMER_SLEEP_S", "TIMER_SLACK_S", "ReconnectingMixin"]

#: Longest the session timer sleeps, and how late after a deadline it wakes
#: (so a deadline is never checked a hair too early and missed).
MAX_TIMER_SLEEP_S = 5.0
TIMER_SLACK_S = 0.005

if TYPE_CHECKING:
    # Type-checked as the service it is mixed into; a plain class at run time.
    _ServiceBase = TTSService
else:
    _ServiceBase = object


class ReconnectingMixin(_ServiceBase):
    """Opens, replaces and retires ``WavesTTSService``'s connections (see the module docstring)."""

    # The service's state this mixin reads and writes (set in its __init__).
    _url: str
    _api_key: str
    _open_timeout_s: float
    _session: sn.WavesSession
    _policy: rc.ReconnectPolicy
    _connections: dict[int, LiveSocket]
    _connection_ids: Iterator[int]
    _connect_tasks: set[asyncio.Task]
    _retrying: asyncio.Task | None
    _connected_once: bool
    _running: bool
    _last_failure: str
    _timer_task: asyncio.Task | None
    _timer_wakes_at: float | None

    if TYPE_CHECKING:

        async def _act(self, outputs: list[sn.Output]) -> None: ...

        async def _report_unreachable(self, verdict: rc.Unusable) -> None: ...

    # --------------------------------------------------------------- opening

    def _open_connection(self, reason: str) -> None:
        if not self._running or self._policy.gave_up:
            return
        logger.debug(f"{self}: opening connection ({reason})")
        task = asyncio.get_running_loop().create_task(
            self._connect_with_backoff(), name="waves-connect"
        )
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    async def _connect_with_backoff(self) -> None:
        """Open one connection, retrying as the reconnect policy says, and hand it on."""
        retry_after_s: float | None = None
        while self._running and not self._policy.gave_up:
            # The wait is taken here, in this task of its own, never in a
            # socket's callback: the session hears of every close at once.
            delay = retry_after_s if retry_after_s is not None else self._policy.open_delay_s()
            if delay > 0:
                await asyncio.sleep(delay)
                if not self._running or self._policy.gave_up:
                    return
            started = time.monotonic()
            self._policy.attempt_started(started)
            self._wake_timer()
            try:
                websocket = await open_socket(
                    self._url,
                    self._api_key,
                    extra_headers={"X-Source": "pipecat-waves"},
                    open_timeout_s=self._open_timeout_s,
                )
            except WavesConnectError as e:
                retry_after_s = e.retry_after_s
                if not await self._attempt_failed(e):
                    return
                if not self._lead_retries():
                    # Another task already retries: one attempt at a time
                    # reaches a server that is down. The session asks for
                    # its spares again once a connection opens.
                    self._session.connection_failed_to_open()
                    return
                continue
            connection_id = self._register_connection(websocket, started)
            now = time.monotonic()
            # After a drop, an answer on the new socket proves Waves is back.
            prove = self._policy.down_for(now) is not None
            await self._on_policy(self._policy.opened(connection_id, now))
            await self._act(self._session.connection_opened(connection_id, now, prove=prove))
            self._wake_timer()
            return

    def _lead_retries(self) -> bool:
        """Whether this task is the one retrying (the first to fail takes the lead)."""
        me = asyncio.current_task()
        leader = self._retrying
        if leader is None or leader.done() or leader is me:
            self._retrying = me
            return True
        return False

    async def _attempt_failed(self, error: WavesConnectError) -> bool:
        """Tell the policy and the app of a failed attempt; whether to try again."""
        self._last_failure = str(error)
        await self._call_event_handler("on_connection_error", str(error))
        if error.permanent:
            self._session.connection_failed_to_open()
            category = (
                ErrorCategory.AUTHENTICATION
                if error.auth_rejected
                else ErrorCategory.INVALID_REQUEST
            )
            await self._on_policy(
                self._policy.attempt_failed(time.monotonic(), rc.AttemptFailure.PERMANENT),
                give_up=(str(error), category),
            )
            return False
        if self._connections and error.refused:
            # Working already: the server (or account) allows no more
            # sockets. Work with the ones open; that is not a failure.
            logger.info(f"{self}: {error}; going on with {len(self._connections)} connection(s)")
            self._session.connection_failed_to_open()
            self._session.connection_limit_reached(len(self._connections), time.monotonic())
            return False
        failure = rc.AttemptFailure.REFUSED if error.refused else rc.AttemptFailure.UNREACHABLE
        # The first failure of an outage is worth a warning; each retry after it is detail.
        first = self._policy.down_for(time.monotonic()) is None or self._policy.open_delay_s() == 0
        logger.log("WARNING" if first else "DEBUG", f"{self}: {error}")
        await self._on_policy(self._policy.attempt_failed(time.monotonic(), failure))
        return True

    def _register_connection(self, websocket: Any, started: float) -> int:
        connection_id = next(self._connection_ids)
        opened_in = f"{1000 * (time.monotonic() - started):.0f} ms"
        if not self._connected_once:
            self._connected_once = True  # said once; later sockets are detail
            logger.info(f"{self}: connected in {opened_in}")
        logger.debug(f"{self}: connection {connection_id} open in {opened_in}")
        self._connections[connection_id] = LiveSocket(
            connection_id,
            websocket,
            LiveSocketHandlers(self._on_connection_message, self._on_connection_closed),
        )
        return connection_id

    # --------------------------------------------------- messages and closes

    async def _on_connection_message(self, connection_id: int, message: str | bytes) -> None:
        await self._on_policy(self._policy.answered(connection_id, time.monotonic()))
        try:
            event = rs.parse_message(message)
        except rs.ResponseError as e:
            logger.warning(f"{self}: ignoring a malformed server message: {e}")
            return
        if isinstance(event, rs.Unrecognized):
            logger.debug(f"{self}: ignoring unrecognized server message {event.raw!r:.200}")
            return
        await self._act(self._session.receive(connection_id, event, time.monotonic()))
        # Any frame can bring a deadline forward: the last word of a reply
        # matched, say, turns a long guard into the short tail. Re-arming is
        # cheap when it does not (the timer is left alone).
        self._wake_timer()

    async def _on_connection_closed(
        self, connection_id: int, code: int | None, reason: str
    ) -> None:
        connection = self._connections.pop(connection_id, None)
        if connection is None:
            return
        now = time.monotonic()
        retired = self._session.connection_state(connection_id) is sn.ConnState.RETIRED
        how = rc.Close.RETIRED if retired or not self._running else _close_kind(code, reason)
        refused = how is rc.Close.REFUSED and connection.messages_received == 0
        closed = f"code {code}, {reason or 'no reason given'}"
        if how is not rc.Close.RETIRED:
            self._last_failure = f"Waves closed the connection ({closed})"
            at_once = (
                now - connection.opened_at < rc.PROVEN_AFTER_S and not connection.messages_received
            )
            level = "DEBUG" if not at_once or (refused and self._connections) else "WARNING"
            logger.log(level, f"{self}: Waves closed connection {connection_id} ({closed})")
            if refused and self._connections:
                # Turned away while others work: the account allows no more sockets.
                self._session.connection_limit_reached(len(self._connections), now)
        # The session first, so that no reply waits on a socket that is gone.
        await self._act(self._session.connection_lost(connection_id, now, refused=refused))
        await self._on_policy(
            self._policy.closed(connection_id, now, how),
            give_up=(
                pe.auth_close_message(closed),
                ErrorCategory.AUTHENTICATION,
            ),
        )
        self._wake_timer()

    # ------------------------------------------------- the policy's verdicts

    async def _on_policy(
        self,
        actions: list[rc.Action],
        *,
        give_up: tuple[str, ErrorCategory] | None = None,
    ) -> None:
        """Carry out what the reconnect policy decided."""
        for action in actions:
            if isinstance(action, rc.Connected):
                await self._call_event_handler("on_connected")
            elif isinstance(action, rc.Disconnected):
                await self._call_event_handler("on_disconnected")
            elif isinstance(action, rc.Unusable):
                await self._report_unreachable(action)
            elif isinstance(action, rc.Usable):
                logger.info(f"{self}: Waves answers again after {action.down_for_s:.1f} s")
                await self.set_usable(True)
            elif isinstance(action, rc.GiveUp):
                message, category = give_up or (self._last_failure, ErrorCategory.CONNECTIVITY)
                self._running = False
                await self.push_error(message, category=category, force_treat_as_permanent=True)

    # ----------------------------------------------------------------- timer

    def _next_deadline(self, now: float) -> float:
        due = self._session.next_deadline(now)
        policy_due = self._policy.next_deadline()
        return due if policy_due is None else min(due, policy_due)

    async def _timer_loop(self) -> None:
        # Asleep until the session's or the policy's next deadline (a turn-end
        # guard, a stall probe, a keep-alive, an outage verdict), never on a
        # fixed tick: a tick costs CPU on every session all the time. Events
        # that bring a deadline forward wake it.
        while True:
            try:
                now = time.monotonic()
                delay = min(max(self._next_deadline(now) - now, 0.0), MAX_TIMER_SLEEP_S)
                self._timer_wakes_at = now + delay
                await asyncio.sleep(delay + TIMER_SLACK_S)
                self._timer_wakes_at = None
                await self._on_policy(self._policy.poll(time.monotonic()))
                await self._act(self._session.poll(time.monotonic()))
            except Exception as e:
                # Turn ends and keep-alives hang on this loop: a bug must cost
                # one tick, not every later reply. Logged, then on again.
                self._timer_wakes_at = None
                logger.opt(exception=e).error(f"{self}: session timer failed; continuing")
                await asyncio.sleep(TIMER_SLACK_S)

    def _wake_timer(self) -> None:
        """Re-arm the timer if the session now has a deadline before its wake-up."""
        wakes_at = self._timer_wakes_at
        if wakes_at is None or self._timer_task is None:
            return  # not started, or busy acting: it asks again when done
        if self._next_deadline(time.monotonic()) < wakes_at:
            self._timer_wakes_at = None
            self._timer_task.cancel()
            self._timer_task = self.create_task(self._timer_loop(), name="waves-timer")


def _close_kind(code: int | None, reason: str) -> rc.Close:
    """What a close by the server says: the key, a socket limit, or a plain drop."""
    if pe.closed_for_key(code, reason):
        return rc.Close.AUTH
    if pe.closed_for_limit(code):
        return rc.Close.REFUSED
    return rc.Close.DROPPED
