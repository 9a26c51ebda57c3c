"""When to open the next connection, and when Waves is gone for good.

The whole reconnect and outage policy, with no sockets and no clock of its
own: the shell reports what happened to its connection attempts and open
connections, with the time, and carries out what comes back. One outage clock
lives here and nowhere else.

The rules, each in one method:

* **Backoff** (:meth:`ReconnectPolicy.attempt_failed`,
  :meth:`ReconnectPolicy.open_delay_s`): each failed attempt doubles the wait
  before the next, up to a ceiling; a connection turned away or closed right
  after opening makes the next attempt wait too, so a server that hangs up at
  once is not hammered.
* **Outage** (:meth:`ReconnectPolicy.poll`): the service is *down* from the
  moment it needs a connection and has none open, until a connection proves
  itself (the server sends something on it, or it stays open
  :data:`PROVEN_AFTER_S`). Down for ``failover_after_s`` means Waves cannot be
  reached: :class:`Unusable` is returned once, so the shell reports one error
  that leaves the service unusable and a ``ServiceSwitcher`` can fail over.
  A blip that a retry repairs sooner is only logged.
* **Recovery**: attempts go on with backoff; the first connection that proves
  itself after an outage returns :class:`Usable`.
* **Give up** (:class:`GiveUp`): only for what no retry can fix, a refused key
  or a URL the server will never accept.
* **Connectivity events** (:class:`Connected`, :class:`Disconnected`): about
  the service, not its sockets. A socket retired on purpose, or replaced after
  an idle close, changes nothing the application needs to hear.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pipecat_waves.protocol.backoff import backoff_s

__all__ = [
    "PROVEN_AFTER_S",
    "Action",
    "AttemptFailure",
    "Close",
    "Connected",
    "Disconnected",
    "GiveUp",
    "ReconnectConfig",
    "ReconnectPolicy",
    "Unusable",
    "Usable",
]

#: A connection that stays open this long without the server closing it is
#: taken to work, even if the server has had nothing to say on it yet; one
#: closed sooner with nothing received was closed "at once".
PROVEN_AFTER_S = 2.0


class AttemptFailure(enum.Enum):
    """Why an attempt to open a connection failed."""

    UNREACHABLE = "unreachable"  # refused, reset, timed out, DNS, TLS, HTTP 5xx
    REFUSED = "refused"  # the server is up but turned us away (HTTP 429): a limit
    PERMANENT = "permanent"  # a refused key, a URL the server will never accept


class Close(enum.Enum):
    """How an open connection ended."""

    RETIRED = "retired"  # closed on purpose (after a barge-in, as a spare, at the end)
    DROPPED = "dropped"  # closed by the server or the network
    REFUSED = "refused"  # turned away at once with the server's policy code (a socket limit)
    AUTH = "auth"  # closed because of the key


@dataclass(frozen=True)
class Connected:
    """The service has a connection again (or for the first time)."""


@dataclass(frozen=True)
class Disconnected:
    """The service has lost every connection and the first retry failed."""


@dataclass(frozen=True)
class Unusable:
    """Waves could not be reached for ``down_for_s``: report it once, fail over.

    Attributes:
        down_for_s: How long no connection has worked.
        refused: The last failure was a connection turned away by a limit
            (HTTP 429 or the policy close code).
        closed_at_once: The last failure was a connection that opened and
            was closed by the server straight away (a refused key or a full
            account, most often).
    """

    down_for_s: float
    refused: bool
    closed_at_once: bool


@dataclass(frozen=True)
class Usable:
    """A connection works again after an outage that made the service unusable."""

    down_for_s: float


@dataclass(frozen=True)
class GiveUp:
    """No retry can help: stop opening connections.

    Attributes:
        auth: It is the key that was refused.
    """

    auth: bool


Action = Connected | Disconnected | Unusable | Usable | GiveUp


@dataclass(frozen=True)
class ReconnectConfig:
    """Timing of the policy.

    Parameters:
        first_backoff_s: Wait after the first failed attempt.
        largest_backoff_s: Longest wait between attempts.
        failover_after_s: How long the service may go without a working
            connection before it reports itself unusable.
    """

    first_backoff_s: float = 0.1
    largest_backoff_s: float = 5.0
    failover_after_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.failover_after_s > 0:
            raise ValueError(f"failover_after_s must be above 0 (got {self.failover_after_s})")
        if not 0 < self.first_backoff_s <= self.largest_backoff_s:
            raise ValueError(
                "reconnect_backoff_s must be (first, largest) with 0 < first <= largest "
                f"(got {(self.first_backoff_s, self.largest_backoff_s)})"
            )


@dataclass
class _Open:
    opened_at: float
    proven: bool = False


@dataclass
class ReconnectPolicy:
    """The reconnect and outage policy of one service (see the module docstring)."""

    config: ReconnectConfig = field(default_factory=ReconnectConfig)
    _open: dict[int, _Open] = field(default_factory=dict)
    _failures: int = 0  # failed attempts (and at-once closes) since one last worked
    _refusals: int = 0  # of which turned away by a limit, in a row
    _closed_at_once: bool = False  # the last failure: a connection closed right after opening
    _down_since: float | None = None
    _unusable: bool = False
    _connected: bool = False
    _gave_up: bool = False

    # ------------------------------------------------------------- queries

    @property
    def usable(self) -> bool:
        """False from an :class:`Unusable` until the next :class:`Usable`."""
        return not self._unusable

    @property
    def gave_up(self) -> bool:
        """Whether a :class:`GiveUp` was returned: nothing more is to be opened."""
        return self._gave_up

    @property
    def connected(self) -> bool:
        """Whether the last connectivity event was :class:`Connected`."""
        return self._connected

    def down_for(self, now: float) -> float | None:
        """How long the service has had no working connection, or None if it has one."""
        return None if self._down_since is None else now - self._down_since

    def open_delay_s(self) -> float:
        """How long to wait before the next attempt to open a connection.

        Zero while nothing has failed; after failures, the backoff of the
        streak so far.
        """
        if self._failures == 0:
            return 0.0
        return backoff_s(self._failures, self.config.first_backoff_s, self.config.largest_backoff_s)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` may next have something to do, or None."""
        proving = [s.opened_at + PROVEN_AFTER_S for s in self._open.values() if not s.proven]
        if proving:
            # The verdict waits for these; their proof (or their close) comes first.
            return min(proving)
        if self._down_since is not None and not self._unusable and not self._gave_up:
            return self._down_since + self.config.failover_after_s
        return None

    # -------------------------------------------------------------- events

    def attempt_started(self, now: float) -> None:
        """An attempt to open a connection begins: with none open, the service is down."""
        if not self._open and self._down_since is None:
            self._down_since = now

    def attempt_failed(self, now: float, failure: AttemptFailure) -> list[Action]:
        """An attempt to open a connection failed."""
        if failure is AttemptFailure.PERMANENT:
            return self._give_up(auth=False)
        self._failures += 1
        self._refusals = self._refusals + 1 if failure is AttemptFailure.REFUSED else 0
        self._closed_at_once = False
        out: list[Action] = []
        if not self._open and self._connected:
            # The last connection is gone and a retry could not replace it.
            self._connected = False
            out.append(Disconnected())
        out.extend(self.poll(now))
        return out

    def give_up(self, *, auth: bool) -> list[Action]:
        """Something no retry can fix was found elsewhere (a reply's error naming the key)."""
        return self._give_up(auth=auth)

    def opened(self, conn: int, now: float) -> list[Action]:
        """A connection opened."""
        self._open[conn] = _Open(opened_at=now)
        if self._connected:
            return []
        self._connected = True
        return [Connected()]

    def answered(self, conn: int, now: float) -> list[Action]:
        """The server sent something on connection ``conn``: it works."""
        state = self._open.get(conn)
        if state is None or state.proven:
            return []
        return self._prove(state, now)

    def closed(self, conn: int, now: float, how: Close) -> list[Action]:
        """An open connection ended."""
        state = self._open.pop(conn, None)
        if state is None:
            return []
        if how is Close.AUTH:
            return self._give_up(auth=True)
        if how is Close.RETIRED:
            return self._down_if_none_open(now)
        at_once = not state.proven and now - state.opened_at < PROVEN_AFTER_S
        if at_once:
            # It never worked: the outage (if any) goes on from when it began.
            self._failures += 1
            self._closed_at_once = True
            self._refusals = self._refusals + 1 if how is Close.REFUSED else 0
        return self._down_if_none_open(now)

    def poll(self, now: float) -> list[Action]:
        """Act on time passing: prove long-lived connections, judge an outage."""
        out: list[Action] = []
        for state in self._open.values():
            if not state.proven and now - state.opened_at >= PROVEN_AFTER_S:
                out.extend(self._prove(state, now))
        down_for = self.down_for(now)
        if (
            down_for is not None
            and down_for >= self.config.failover_after_s
            and not self._unusable
            and not self._gave_up
            and not any(now - s.opened_at < PROVEN_AFTER_S for s in self._open.values())
        ):
            # A connection still proving itself gets its chance first.
            self._unusable = True
            if self._connected:
                self._connected = False
                out.append(Disconnected())
            out.append(
                Unusable(
                    down_for_s=down_for,
                    refused=self._refusals > 0,
                    closed_at_once=self._closed_at_once,
                )
            )
        return out

    def shutdown(self) -> list[Action]:
        """The service stops: it is no longer connected."""
        self._open.clear()
        self._gave_up = True
        if not self._connected:
            return []
        self._connected = False
        return [Disconnected()]

    # ------------------------------------------------------------- helpers

    def _prove(self, state: _Open, now: float) -> list[Action]:
        state.proven = True
        down_for = self.down_for(now)
        self._failures = self._refusals = 0
        self._closed_at_once = False
        self._down_since = None
        if not self._unusable:
            return []
        self._unusable = False
        return [Usable(down_for_s=down_for or 0.0)]

    def _down_if_none_open(self, now: float) -> list[Action]:
        if not self._open and self._down_since is None:
            self._down_since = now
        return []

    def _give_up(self, *, auth: bool) -> list[Action]:
        if self._gave_up:
            return []
        self._gave_up = True
        out: list[Action] = []
        if self._connected:
            self._connected = False
            out.append(Disconnected())
        out.append(GiveUp(auth=auth))
        return out
