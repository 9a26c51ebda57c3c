"""Keep-alive: when to ping, and what a server's answers teach us.

A Waves socket closes after an idle period (60 s unless ``?timeout=`` asks
otherwise). The newer documents describe a ``{"type": "ping"}`` message that
the server answers with a pong; older servers may refuse it with an error.
Text is never synthesized to keep a socket open (that costs money and could
be heard).

* Support for pings is learned from the first answer: a pong turns stall
  probes on; a refusal turns every ping off, and idle sockets are then left to
  close, which is routine: the session opens a fresh one.
* A server that closes idle sockets sooner than the interval we ping at shows
  the real timeout; later pings go out at half of what was observed.
"""

from __future__ import annotations

from pipecat_waves.protocol.errors import complains_of_ping as complains_of_ping
from pipecat_waves.protocol.errors import is_idle_timeout as is_idle_timeout

#: Shortest interval pings are ever sent at, however early a server closes.
MIN_INTERVAL_S = 1.0


class KeepAlive:
    """What the session knows about keeping sockets open.

    Args:
        interval_s: Ping a socket after this long without sending on it.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        #: ``None`` until the server has answered a ping one way or the other.
        self.ping_supported: bool | None = None
        #: How long an idle socket lasted when the server closed it sooner than
        #: our ping interval (so sooner than asked); None if that never happened.
        self.closed_early_after_s: float | None = None

    @property
    def may_ping(self) -> bool:
        """Whether a ping may be sent at all."""
        return self.ping_supported is not False

    @property
    def can_probe_stalls(self) -> bool:
        """Whether a silent socket can be asked if it is alive: only once pongs are seen."""
        return self.ping_supported is True

    def ping_due(self, last_sent_at: float, now: float) -> bool:
        """Whether a socket last written at ``last_sent_at`` needs a ping now."""
        return self.may_ping and now - last_sent_at >= self.interval_s

    def next_ping_at(self, last_sent_at: float) -> float | None:
        """When that socket will need its next ping, if pings are allowed."""
        return last_sent_at + self.interval_s if self.may_ping else None

    def pong_received(self) -> None:
        """The server answers pings."""
        self.ping_supported = True

    def ping_refused(self) -> None:
        """The server answered a ping with an error: no more pings."""
        self.ping_supported = False

    def idle_closed(self, idle_for_s: float) -> bool:
        """A socket idle for ``idle_for_s`` was closed by the server.

        Returns:
            True if that was sooner than our interval, which is then shortened.
        """
        if idle_for_s >= self.interval_s:
            return False
        self.closed_early_after_s = idle_for_s
        self.interval_s = max(MIN_INTERVAL_S, idle_for_s / 2)
        return True
