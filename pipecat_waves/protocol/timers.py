"""Timed rules, each written once.

A timed rule of the session looks at one reply, one connection or the
session as a whole and answers with a :class:`Due`: when it is next due and
what it does then. :meth:`~pipecat_waves.protocol.session.WavesSession.poll`
runs those due now; :meth:`~pipecat_waves.protocol.session.WavesSession.next_deadline`
reports the earliest. The timer and the rules cannot drift apart, because
there is only the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

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
