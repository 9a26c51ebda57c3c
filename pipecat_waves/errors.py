"""What a Waves error means for a Pipecat application, and what to change.

The rules that tell one kind of refusal from another, and the words that say
what to fix, live in :mod:`pipecat_waves.protocol.errors` (no Pipecat there,
so the command line and the probe use them too). This module maps those
kinds to Pipecat's ``ErrorCategory`` for both services (the live socket's
:class:`~pipecat_waves.service.websocket.WavesTTSService` and the HTTP
:class:`~pipecat_waves.service.http.WavesHttpTTSService`), so an unknown voice or
a rejected key reads the same whichever transport met it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pipecat.utils.errors import ErrorCategory, classify_http_status_code

from pipecat_waves.protocol import errors as pe
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.errors import mentions_auth
from pipecat_waves.service.settings_check import known_models, unknown_model

__all__ = [
    "KIND_CATEGORIES",
    "category_of",
    "fix_for",
    "http_category",
    "mentions_auth",
    "refused_model",
]

#: The Pipecat category of each kind of error.
KIND_CATEGORIES: Final[Mapping[pe.ErrorKind, ErrorCategory]] = {
    pe.ErrorKind.AUTH: ErrorCategory.AUTHENTICATION,
    pe.ErrorKind.RATE_LIMIT: ErrorCategory.RATE_LIMIT,
    pe.ErrorKind.QUOTA: ErrorCategory.QUOTA,
    pe.ErrorKind.VOICE: ErrorCategory.INVALID_REQUEST,
    pe.ErrorKind.INVALID_REQUEST: ErrorCategory.INVALID_REQUEST,
    pe.ErrorKind.CONTENT_FILTER: ErrorCategory.APPLICATION,
    pe.ErrorKind.CONNECTION_LOST: ErrorCategory.CONNECTIVITY,
    pe.ErrorKind.SERVER: ErrorCategory.SERVER,
}


def category_of(error: rs.ServerError) -> ErrorCategory:
    """The category of an error Waves reported, from its kind (see ``protocol.errors.kind_of``)."""
    return KIND_CATEGORIES[pe.kind_of(error)]


def http_category(status: int, error: rs.ServerError) -> ErrorCategory:
    """The category of an HTTP refusal: the status says it, else the body does.

    A 403 is the key too (Waves answers it for a key it will not serve), so
    both 401 and 403 are ``AUTHENTICATION``, as on the live socket.
    """
    kind = pe.status_kind(status)
    if kind is not None:
        return KIND_CATEGORIES[kind]
    category = classify_http_status_code(status)
    return category if category is not ErrorCategory.UNKNOWN else category_of(error)


def refused_model(error: rs.ServerError, model: object) -> str | None:
    """The model in use, if this version does not know it and the error is about it.

    A model this version knows is never blamed: an error that merely mentions
    "model" (an overloaded one, say) is not a refusal of the name.
    """
    name = unknown_model(model)
    if name is None:
        return None
    return name if pe.names_model(error, name) else None


def fix_for(error: rs.ServerError, refused: str | None = None) -> str:
    """A sentence telling the user what to change, where the error says enough.

    Args:
        error: The error Waves reported.
        refused: The model :func:`refused_model` found refused, if any.

    Returns:
        The sentence, starting with ". " so it can follow the error's text;
        empty when the error names nothing the user can change.
    """
    if refused is not None:
        return (
            f". Waves refused model {refused!r}: set a model Waves offers with "
            f"Settings(model=...) (this version knows {known_models()})."
        )
    return pe.fix_for(error)
