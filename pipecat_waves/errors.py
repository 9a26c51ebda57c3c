"""What a Waves error means for a Pipecat application, and what to change.

Both services (the live socket's :class:`~pipecat_waves.service.websocket.WavesTTSService`
and the HTTP :class:`~pipecat_waves.service.http.WavesHttpTTSService`) classify a
refusal by Waves into one of Pipecat's ``ErrorCategory`` values here, and take
the sentence that tells the user what to fix from here, so an unknown voice
or a rejected key reads the same whichever transport met it.
"""

from __future__ import annotations

from pipecat.utils.errors import ErrorCategory, classify_http_status_code

from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol import session as sn
from pipecat_waves.service.settings_check import known_models, unknown_model

__all__ = [
    "ERROR_CATEGORIES",
    "category_of",
    "fix_for",
    "http_category",
    "mentions_auth",
    "refused_model",
]

#: Error codes Waves (or the local server) sends, by what they mean.
ERROR_CATEGORIES = {
    "INVALID_VOICE": ErrorCategory.INVALID_REQUEST,
    "INVALID_FIELD": ErrorCategory.INVALID_REQUEST,
    "MISSING_FIELD": ErrorCategory.INVALID_REQUEST,
    "INVALID_MESSAGE": ErrorCategory.INVALID_REQUEST,
    "TEXT_TOO_LONG": ErrorCategory.INVALID_REQUEST,
    "CONTENT_FILTER_BLOCKED": ErrorCategory.APPLICATION,
    "UNAUTHORIZED": ErrorCategory.AUTHENTICATION,
    "RATE_LIMIT": ErrorCategory.RATE_LIMIT,
    "CONCURRENCY_LIMIT": ErrorCategory.RATE_LIMIT,
    "QUOTA_EXCEEDED": ErrorCategory.QUOTA,
    sn.CONNECTION_LOST: ErrorCategory.CONNECTIVITY,
}


def mentions_auth(text: str) -> bool:
    """Whether ``text`` (an error message or close reason) is about the credential."""
    lowered = text.lower()
    return any(
        word in lowered
        for word in ("unauthori", "api key", "api_key", "apikey", "authenticat", "forbidden")
    )


def category_of(error: rs.ServerError) -> ErrorCategory:
    """The category of an error Waves reported, from its code or else its words."""
    if error.code and error.code.upper() in ERROR_CATEGORIES:
        return ERROR_CATEGORIES[error.code.upper()]
    if mentions_auth(error.message) or (error.code or "") in ("401", "403"):
        return ErrorCategory.AUTHENTICATION
    if sn.is_rate_limit(error):
        return ErrorCategory.RATE_LIMIT
    if "voice" in error.message.lower():
        return ErrorCategory.INVALID_REQUEST
    return ErrorCategory.SERVER


def http_category(status: int, error: rs.ServerError) -> ErrorCategory:
    """The category of an HTTP refusal: the status says it, else the body does.

    A 403 is the key too (Waves answers it for a key it will not serve), so
    both 401 and 403 are ``AUTHENTICATION``, as on the live socket.
    """
    if status in (401, 403):
        return ErrorCategory.AUTHENTICATION
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
    text = f"{error.code or ''} {error.message}".lower()
    return name if "model" in text or name.lower() in text else None


def fix_for(error: rs.ServerError, refused: str | None = None) -> str:
    """A sentence telling the user what to change, where the error says enough.

    Args:
        error: The error Waves reported.
        refused: The model :func:`refused_model` found refused, if any.

    Returns:
        The sentence, starting with ". " so it can follow the error's text;
        empty when the error names nothing the user can change.
    """
    text = f"{error.code or ''} {error.message}".lower()
    if refused is not None:
        return (
            f". Waves refused model {refused!r}: set a model Waves offers with "
            f"Settings(model=...) (this version knows {known_models()})."
        )
    if "voice" in text:
        return (
            ". Pick a voice id from `pipecat-waves voices` (GET "
            "/waves/v1/lightning-v3.1/get_voices) and set it with Settings(voice=...)."
        )
    if "language" in text:
        return ". Set a language Waves supports with Settings(language=...)."
    if "content_filter" in text:
        return ". The text was blocked by the content filter; see Settings(content_filter=...)."
    return ""
