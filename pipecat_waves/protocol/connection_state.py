"""The life of a connection, as one state machine.

A connection the shell has been asked to open is only counted (it has no id
until it opens); from :meth:`~pipecat_waves.protocol.session.WavesSession.connection_opened`
on, it is in one :class:`ConnState` and moves only through
:data:`CONN_TRANSITIONS`, read by :func:`next_conn_state` alone. When the
shell reports it gone, the session forgets it, whatever its state.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from pipecat_waves.protocol.reply_state import InvalidTransition


class ConnState(enum.Enum):
    """What a connection is doing."""

    SPARE = "spare"  # open and free
    CARRYING = "carrying"  # carries one reply; every frame on it is that reply's
    ABORTING = "aborting"  # stopped answering; dropped, its reply moves on once it is gone
    RETIRED = "retired"  # being closed; whatever it still delivers is discarded


class ConnEvent(enum.Enum):
    """What moves a connection from one state to the next."""

    BIND = "bind"  # a reply takes it
    FREE = "free"  # its reply is over and it is worth keeping
    ABORT = "abort"  # a ping went unanswered
    RETIRE = "retire"  # closed on purpose (barge-in, failure, surplus, a slot to free)


_S = ConnState
_E = ConnEvent

#: Every allowed ``(state, event) -> next state``; nothing else is.
CONN_TRANSITIONS: Mapping[tuple[ConnState, ConnEvent], ConnState] = MappingProxyType(
    {
        (_S.SPARE, _E.BIND): _S.CARRYING,
        (_S.CARRYING, _E.FREE): _S.SPARE,
        (_S.SPARE, _E.ABORT): _S.ABORTING,
        (_S.CARRYING, _E.ABORT): _S.ABORTING,
        # An aborted connection stays aborting when its reply ends: it is dead.
        (_S.ABORTING, _E.FREE): _S.ABORTING,
        (_S.SPARE, _E.RETIRE): _S.RETIRED,
        (_S.CARRYING, _E.RETIRE): _S.RETIRED,
        (_S.ABORTING, _E.RETIRE): _S.RETIRED,
    }
)


def next_conn_state(state: ConnState, event: ConnEvent) -> ConnState:
    """The state a connection in ``state`` moves to on ``event``.

    Raises:
        InvalidTransition: The table has no row for ``(state, event)``.
    """
    try:
        return CONN_TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(
            f"a connection that is {state.value} cannot take '{event.value}'"
        ) from None
