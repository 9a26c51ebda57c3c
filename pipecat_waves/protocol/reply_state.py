"""The life of a reply on the wire, as one state machine.

Every state a reply can be in is a :class:`ReplyPhase`; everything that moves
it is a :class:`ReplyEvent`; :data:`REPLY_TRANSITIONS` lists every allowed
``(phase, event) -> next phase``, and :func:`next_phase` is the one place that
reads it. An event the table does not allow in a phase raises
:class:`InvalidTransition`: a bookkeeping bug, never a server's doing.

What the session does on a transition (send, retire a socket, report) stays
in its methods; the data a phase carries (the refusal's retry clock, the
error being reported, the settings switched to) stays beside the reply.

Whether the LLM is still writing is a separate, simpler fact
(:class:`pipecat_waves.protocol.reply.ReplyState` ``WRITING``/``CLOSING``): a
reply may be speaking while its text still arrives. The ended states of both
are kept equal by :func:`next_phase`'s caller, which sets them together.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType


class ReplyPhase(enum.Enum):
    """Where a reply is on the wire."""

    QUEUED = "queued"  # waits for a connection; nothing sent yet
    SENDING = "sending"  # its server context is open on a connection; no audio of it yet
    SPEAKING = "speaking"  # audio of its current context is arriving
    SWITCHING = "switching"  # settings changed mid-reply: the text before plays out first
    RESENDING = "resending"  # the rest goes to a new context (a drop, a refused field, a switch)
    REFUSED = "refused"  # the concurrency limit refused it: retried after a backoff
    WAITING_OWN = "waiting_own"  # refused while one of our replies holds a slot: waits for it
    FAILING = "failing"  # failed; audio already under way plays out before it is reported
    FINISHED = "finished"  # everything sent was spoken
    FAILED = "failed"  # reported once; nothing more of it
    CANCELLED = "cancelled"  # barge-in, or Pipecat is done with it

    @property
    def ended(self) -> bool:
        """Whether nothing more of this reply is expected or wanted."""
        return self in _ENDED


class ReplyEvent(enum.Enum):
    """What moves a reply from one phase to the next."""

    START_CONTEXT = "start_context"  # a new server context is opened for its unsent text
    FRAME = "frame"  # audio, a word or a complete of its current context arrived
    PARAMS_CHANGED = "params_changed"  # new settings for text after what was sent
    SWITCHED = "switched"  # the text before a settings change has been spoken
    RESTART = "restart"  # the server refused a field: the context got nothing
    LOST = "lost"  # its connection is gone (dropped, aborted, turned away)
    REFUSED = "refused"  # concurrency limit, no slot of ours to wait for: back off
    REFUSED_WAIT_OWN = "refused_wait_own"  # concurrency limit while one of ours holds a slot
    SLOT_FREED = "slot_freed"  # one of our own replies let go of its slot
    ERROR = "error"  # the server refused it, or it cannot be delivered
    GIVE_UP = "give_up"  # the failure is reported (its tail has played)
    FINISH = "finish"  # the evidence says everything sent was spoken
    CANCEL = "cancel"  # barge-in, or forgotten before it ended


class InvalidTransition(RuntimeError):
    """An event arrived that a reply (or connection) in its state cannot take."""


_ENDED = frozenset({ReplyPhase.FINISHED, ReplyPhase.FAILED, ReplyPhase.CANCELLED})

#: Phases in which the next send opens a new server context.
NEEDS_CONTEXT = frozenset(
    {ReplyPhase.QUEUED, ReplyPhase.RESENDING, ReplyPhase.REFUSED, ReplyPhase.WAITING_OWN}
)
#: Phases of a reply refused for the concurrency limit: it holds no slot.
REFUSED_PHASES = frozenset({ReplyPhase.REFUSED, ReplyPhase.WAITING_OWN})
#: Phases whose audio may end the reply once it has been quiet long enough.
ON_THE_QUIET_CLOCK = frozenset({ReplyPhase.SENDING, ReplyPhase.SPEAKING, ReplyPhase.SWITCHING})

_P = ReplyPhase
_E = ReplyEvent


def _rows() -> dict[tuple[ReplyPhase, ReplyEvent], ReplyPhase]:
    rows: dict[tuple[ReplyPhase, ReplyEvent], ReplyPhase] = {}

    def row(event: ReplyEvent, to: ReplyPhase | None, *froms: ReplyPhase) -> None:
        for phase in froms:
            rows[(phase, event)] = phase if to is None else to

    live = [p for p in ReplyPhase if not p.ended]
    on_a_context = (_P.SENDING, _P.SPEAKING, _P.SWITCHING)
    row(_E.START_CONTEXT, _P.SENDING, _P.QUEUED, _P.RESENDING, _P.REFUSED)
    row(_E.FRAME, _P.SPEAKING, _P.SENDING, _P.SPEAKING)
    # Late frames of a context already left behind still count as evidence.
    row(_E.FRAME, None, _P.SWITCHING, _P.RESENDING, _P.REFUSED, _P.WAITING_OWN, _P.FAILING)
    row(_E.PARAMS_CHANGED, _P.SWITCHING, _P.SENDING, _P.SPEAKING)
    row(_E.SWITCHED, _P.RESENDING, _P.SWITCHING)
    row(_E.RESTART, _P.RESENDING, *on_a_context, _P.RESENDING)
    row(_E.RESTART, None, _P.REFUSED, _P.WAITING_OWN)  # the retry still governs
    row(_E.LOST, _P.RESENDING, *on_a_context, _P.RESENDING, _P.FAILING)
    row(_E.LOST, None, _P.REFUSED, _P.WAITING_OWN)  # the retry still governs
    row(_E.REFUSED, _P.REFUSED, *on_a_context, _P.RESENDING)
    row(_E.REFUSED_WAIT_OWN, _P.WAITING_OWN, *on_a_context, _P.RESENDING)
    row(_E.SLOT_FREED, _P.REFUSED, _P.WAITING_OWN)
    row(_E.ERROR, _P.FAILING, _P.QUEUED, *on_a_context, _P.RESENDING, *REFUSED_PHASES)
    row(_E.GIVE_UP, _P.FAILED, _P.FAILING)
    # A switching reply's quiet means its first part was spoken: SWITCHED, not FINISH.
    row(_E.FINISH, _P.FINISHED, _P.QUEUED, _P.SENDING, _P.SPEAKING)
    row(_E.CANCEL, _P.CANCELLED, *live)
    return rows


#: Every allowed ``(phase, event) -> next phase``; nothing else is.
REPLY_TRANSITIONS: Mapping[tuple[ReplyPhase, ReplyEvent], ReplyPhase] = MappingProxyType(_rows())


def next_phase(phase: ReplyPhase, event: ReplyEvent) -> ReplyPhase:
    """The phase a reply in ``phase`` moves to on ``event``.

    Raises:
        InvalidTransition: The table has no row for ``(phase, event)``.
    """
    try:
        return REPLY_TRANSITIONS[(phase, event)]
    except KeyError:
        raise InvalidTransition(
            f"a reply that is {phase.value} cannot take '{event.value}'"
        ) from None
