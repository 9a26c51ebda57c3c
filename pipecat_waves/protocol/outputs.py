"""What the session asks of its shell: the outputs of :class:`~.session.WavesSession`.

Every method of the session returns a list of these, in order; the shell
acts on each (sends, opens or closes a socket, passes audio on, reports).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipecat_waves.protocol import responses as rs


@dataclass(frozen=True)
class Send:
    """Send ``message`` (a JSON object) on connection ``conn``."""

    conn: int
    message: dict


@dataclass(frozen=True)
class AudioOut:
    """Audio for reply ``context_id``, whole samples only."""

    context_id: str
    pcm: bytes


@dataclass(frozen=True)
class WordOut:
    """A spoken word, ``time_s`` seconds after the start of its reply's audio."""

    context_id: str
    word: str
    time_s: float


@dataclass(frozen=True)
class ContextFinished:
    """Everything sent for ``context_id`` has been spoken; nothing more will come."""

    context_id: str


@dataclass(frozen=True)
class ContextFailed:
    """The server refused ``context_id``; report it once. Nothing more will come."""

    context_id: str
    error: rs.ServerError


@dataclass(frozen=True)
class ContextRetrying:
    """``context_id`` was refused for the concurrency limit and will be sent again."""

    context_id: str
    error: rs.ServerError
    delay_s: float | None  # None: as soon as one of our own replies frees its slot


@dataclass(frozen=True)
class OpenConnection:
    """Open a connection; report it with :meth:`WavesSession.connection_opened`."""

    reason: str


@dataclass(frozen=True)
class CloseConnection:
    """Close connection ``conn`` once the messages already queued for it are sent."""

    conn: int
    reason: str


@dataclass(frozen=True)
class AbortConnection:
    """Connection ``conn`` stopped answering: drop it now.

    Its reply moves on once it is gone (see ``WavesSession.connection_lost``).
    """

    conn: int
    reason: str


@dataclass(frozen=True)
class UnattributedError:
    """An error on connection ``conn`` that belongs to no reply.

    The shell decides whether it is fatal.
    """

    conn: int
    error: rs.ServerError


@dataclass(frozen=True)
class Notice:
    """Something routine worth a log line, and nothing more."""

    level: str  # "debug", "info" or "warning"
    message: str


Output = (
    Send
    | AudioOut
    | WordOut
    | ContextFinished
    | ContextFailed
    | ContextRetrying
    | OpenConnection
    | CloseConnection
    | AbortConnection
    | UnattributedError
    | Notice
)
