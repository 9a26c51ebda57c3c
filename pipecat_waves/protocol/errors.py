"""What a Waves server's error means, and what the user should change: the one home of these rules.

Every part of the package that meets a refusal (the session, the keep-alive,
the live socket's upgrade, both services, the command line, the probe) asks
here what kind it is, so an unknown voice or a rejected key is recognised by
one set of rules and explained in one set of words. Nothing else in the
package matches a server's error text or an HTTP status to decide what it
means (``tests/protocol/test_errors.py`` checks that).

No I/O and no Pipecat: the command line uses this without loading Pipecat;
:mod:`pipecat_waves.errors` maps the kinds to Pipecat's ``ErrorCategory``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Final

from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.constants import CLOSE_POLICY_VIOLATION

__all__ = [
    "AUTH_CLOSE_CODES",
    "CONNECTION_LOST",
    "ERROR_CODES",
    "FIXES",
    "VOICE_FIX",
    "ErrorKind",
    "Subject",
    "auth_close_message",
    "auth_error_message",
    "cli_key_fix",
    "cli_key_refused",
    "cli_rate_limited",
    "cli_unknown_voice",
    "closed_for_key",
    "closed_for_limit",
    "complains_of_ping",
    "fix_for",
    "is_idle_timeout",
    "is_rate_limit",
    "key_refused",
    "kind_of",
    "mentions_auth",
    "names",
    "names_model",
    "rate_limited_message",
    "status_kind",
]


class ErrorKind(Enum):
    """What sort of refusal an error is: what a caller does about it follows from this."""

    AUTH = "auth"  # the key: retrying cannot help
    RATE_LIMIT = "rate_limit"  # the account's concurrency or rate limit: wait and retry
    QUOTA = "quota"  # the account's quota
    VOICE = "voice"  # a voice the server does not know
    INVALID_REQUEST = "invalid_request"  # a field or message the server will not take
    CONTENT_FILTER = "content_filter"  # the text was blocked
    CONNECTION_LOST = "connection_lost"  # the socket went (raised by the session itself)
    SERVER = "server"  # anything else: the server's own trouble


class Subject(Enum):
    """The setting or field an error names, whatever its kind."""

    VOICE = "voice"
    LANGUAGE = "language"
    CONTENT_FILTER = "content_filter"
    MODEL = "model"
    COMPLETE_BACKOFF = "complete_backoff"
    PRONUNCIATION_DICTS = "pronunciation_dicts"


#: Error code of a reply given up after losing its connection too often (the
#: session's own, never a server's).
CONNECTION_LOST: Final = "CONNECTION_LOST"

#: Error codes Waves (or the local server) sends, by kind.
ERROR_CODES: Final[Mapping[str, ErrorKind]] = {
    "INVALID_VOICE": ErrorKind.VOICE,
    "INVALID_FIELD": ErrorKind.INVALID_REQUEST,
    "MISSING_FIELD": ErrorKind.INVALID_REQUEST,
    "INVALID_MESSAGE": ErrorKind.INVALID_REQUEST,
    "TEXT_TOO_LONG": ErrorKind.INVALID_REQUEST,
    "CONTENT_FILTER_BLOCKED": ErrorKind.CONTENT_FILTER,
    "UNAUTHORIZED": ErrorKind.AUTH,
    "401": ErrorKind.AUTH,
    "403": ErrorKind.AUTH,
    "RATE_LIMIT": ErrorKind.RATE_LIMIT,
    "CONCURRENCY_LIMIT": ErrorKind.RATE_LIMIT,
    "TOO_MANY_REQUESTS": ErrorKind.RATE_LIMIT,
    "429": ErrorKind.RATE_LIMIT,
    "QUOTA_EXCEEDED": ErrorKind.QUOTA,
    CONNECTION_LOST: ErrorKind.CONNECTION_LOST,
}

#: HTTP statuses (on the upgrade, or an HTTP request) whose meaning is fixed.
_STATUS_KINDS: Final[Mapping[int, ErrorKind]] = {
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,  # Waves answers 403 for a key it will not serve
    429: ErrorKind.RATE_LIMIT,
}

#: Close codes some servers use for a rejected credential.
AUTH_CLOSE_CODES: Final = frozenset({4001, 4003, 4401, 4403})

_AUTH_WORDS: Final = ("unauthori", "api key", "api_key", "apikey", "authenticat", "forbidden")
_RATE_LIMIT_WORDS: Final = re.compile(r"concurren|rate.?limit|too many", re.IGNORECASE)
_IDLE_TIMEOUT_WORDS: Final = re.compile(r"timed? ?out|inactiv|idle", re.IGNORECASE)
_PING_COMPLAINT: Final = re.compile(
    r"required|missing|unknown (message )?type|MISSING_FIELD|INVALID_MESSAGE|ping",
    re.IGNORECASE,
)
#: The word in an error's code or message that names each subject.
_SUBJECT_WORDS: Final[Mapping[Subject, str]] = {
    Subject.VOICE: "voice",
    Subject.LANGUAGE: "language",
    Subject.CONTENT_FILTER: "content_filter",
    Subject.MODEL: "model",
    Subject.COMPLETE_BACKOFF: "complete_backoff",
    Subject.PRONUNCIATION_DICTS: "pronunciation_dicts",
}

#: Where to pick a voice id, said in every fix that names a voice.
VOICES_HINT: Final = "`pipecat-waves voices` (GET /waves/v1/lightning-v3.1/get_voices)"

#: The sentence a service adds to an error about a voice it does not know.
VOICE_FIX: Final = f". Pick a voice id from {VOICES_HINT} and set it with Settings(voice=...)."

#: The sentence telling the user what to change, per subject, in the order
#: they are tried (an error naming a voice and a language is about the voice).
FIXES: Final[tuple[tuple[Subject, str], ...]] = (
    (Subject.VOICE, VOICE_FIX),
    (Subject.LANGUAGE, ". Set a language Waves supports with Settings(language=...)."),
    (
        Subject.CONTENT_FILTER,
        ". The text was blocked by the content filter; see Settings(content_filter=...).",
    ),
)

#: What to check when the key is refused, in a service's terms.
API_KEY_FIX: Final = "Check the api_key you passed (or WAVES_API_KEY)"


# ------------------------------------------------------------------ rules


def _text(error: rs.ServerError) -> str:
    return f"{error.code or ''} {error.message}".lower()


def mentions_auth(text: str) -> bool:
    """Whether ``text`` (an error message or close reason) is about the credential."""
    lowered = text.lower()
    return any(word in lowered for word in _AUTH_WORDS)


def is_rate_limit(error: rs.ServerError) -> bool:
    """Whether ``error`` refuses a request for the account's concurrency or rate limit."""
    code = (error.code or "").upper()
    return ERROR_CODES.get(code) is ErrorKind.RATE_LIMIT or bool(
        _RATE_LIMIT_WORDS.search(error.message)
    )


def names(error: rs.ServerError, subject: Subject) -> bool:
    """Whether ``error``'s code or message names ``subject``."""
    return _SUBJECT_WORDS[subject] in _text(error)


def names_model(error: rs.ServerError, model: str) -> bool:
    """Whether ``error`` is about a model, or names ``model`` itself."""
    return names(error, Subject.MODEL) or model.lower() in _text(error)


def kind_of(error: rs.ServerError) -> ErrorKind:
    """The kind of an error Waves reported: from its code, else from its words.

    A known code decides; without one, words about the key, then about a
    limit, then about a voice; anything else is the server's.
    """
    code = (error.code or "").upper()
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    if mentions_auth(error.message):
        return ErrorKind.AUTH
    if is_rate_limit(error):
        return ErrorKind.RATE_LIMIT
    if names(error, Subject.VOICE):
        return ErrorKind.VOICE
    return ErrorKind.SERVER


def status_kind(status: int | None) -> ErrorKind | None:
    """What an HTTP status says on its own (401/403 the key, 429 a limit); None if nothing."""
    return _STATUS_KINDS.get(status) if status is not None else None


def closed_for_key(code: int | None, reason: str) -> bool:
    """Whether a close by the server was about the credential."""
    return code in AUTH_CLOSE_CODES or mentions_auth(reason)


def closed_for_limit(code: int | None) -> bool:
    """Whether a close code says the server turned the socket away (a limit was hit)."""
    return code == CLOSE_POLICY_VIOLATION


def is_idle_timeout(error: rs.ServerError) -> bool:
    """Whether ``error`` is the server announcing it closes an idle socket."""
    env = error.envelope
    if env.request_id or env.external_request_id:
        return False
    return bool(_IDLE_TIMEOUT_WORDS.search(f"{error.code or ''} {error.message}"))


def complains_of_ping(error: rs.ServerError) -> bool:
    """Whether ``error`` reads like a refusal of the keep-alive message itself."""
    env = error.envelope
    if env.request_id or env.external_request_id:
        return False
    return bool(_PING_COMPLAINT.search(f"{error.code or ''} {error.message}"))


# ------------------------------------------------------------------ words


def fix_for(error: rs.ServerError) -> str:
    """A sentence telling the user what to change, where the error says enough.

    Returns:
        The sentence, starting with ". " so it can follow the error's text;
        empty when the error names nothing the user can change.
    """
    for subject, fix in FIXES:
        if names(error, subject):
            return fix
    return ""


def key_refused(status: int, *, key_given: bool, server: str, local: bool) -> str:
    """Why a service's key was refused and what to do, true to the server that refused it.

    Args:
        status: The HTTP status of the refusal.
        key_given: A (non-blank) key was sent.
        server: ``host[:port]`` of the server.
        local: The server is on this machine (a ``pipecat-waves serve``).
    """
    if not key_given:
        return (
            f"The Waves server at {server} requires an API key and none was given (HTTP {status}). "
            "Pass api_key= (a Smallest.ai key, or the key a local server was started with)."
        )
    if local:
        return (
            f"The local Waves server at {server} rejected the API key (HTTP {status}). "
            "Pass the key that server was started with as api_key."
        )
    return (
        f"Waves rejected the API key (HTTP {status}). {API_KEY_FIX} "
        "and that it is active in the Smallest.ai console."
    )


def auth_error_message(message: str) -> str:
    """A service's words for an error frame about the key."""
    return f"Waves error: {message}. Check the api_key (or WAVES_API_KEY)."


def auth_close_message(closed: str) -> str:
    """A service's words for a socket the server closed because of the key."""
    return f"Waves closed the connection because of the API key ({closed}). {API_KEY_FIX}."


def rate_limited_message(what: str, retry_after_s: float | None = None) -> str:
    """A service's words for HTTP 429: ``what`` is what was refused ("the connection", ...)."""
    after = f"; Waves asks to retry after {retry_after_s:g} s" if retry_after_s is not None else ""
    return (
        f"Waves refused {what}: the account's concurrency limit is reached (HTTP 429{after}). "
        "Run fewer sessions at once or raise the account's concurrency"
    )


def cli_key_refused(
    status: int, *, key_given: bool, smallest: bool, server_name: str, envs: tuple[str, ...]
) -> str:
    """The command line's words for a refused key, in its own flags' terms.

    Args:
        status: The HTTP status of the refusal.
        key_given: A key was sent.
        smallest: The server is Smallest.ai's own.
        server_name: Who answered, as the command line names it.
        envs: The environment variables the command line reads the key from.
    """
    either = " or ".join(envs)
    if not key_given:
        return (
            f"{server_name} requires an API key and none was given (HTTP {status}); "
            f"pass --api-key or set {either}"
        )
    if smallest:
        return (
            f"Smallest.ai Waves rejected the API key (HTTP {status}); set {envs[0]} "
            "(or pass --api-key) to a valid key from the Smallest.ai console"
        )
    return (
        f"{server_name} rejected the API key (HTTP {status}); pass the key that "
        f"server was started with, with --api-key or {either}"
    )


def cli_key_fix(cause: str) -> str:
    """The command line's fix for a key a service reported refused."""
    return f"{cause}; pass the right key with --api-key (or WAVES_API_KEY)"


def cli_rate_limited(server_name: str) -> str:
    """The command line's words for HTTP 429 on the upgrade."""
    return (
        f"{server_name} refused the connection: concurrency limit reached "
        "(HTTP 429); wait a moment or stop other sessions, then retry"
    )


def cli_unknown_voice(voice: str, *, flag: bool = False) -> str:
    """The command line's words for a voice the server does not know."""
    line = f"unknown voice {voice!r}; run 'pipecat-waves voices' to list the voice ids"
    return f"{line} and pass one with --voice" if flag else line
