"""Pipecat ``Language`` values to Waves language codes."""

from __future__ import annotations

from pipecat.transcriptions.language import Language, resolve_language

from pipecat_waves.protocol.constants import LANGUAGES

# Every Pipecat language whose base code the API accepts, regional variants
# (en-US, pt-BR, ...) included, so none of them logs an "unverified" warning.
_WAVES_LANGUAGES: dict[Language, str] = {
    language: language.value.split("-")[0]
    for language in Language
    if language.value.split("-")[0] in LANGUAGES
}


def language_to_waves_language(language: Language) -> str | None:
    """Convert a Pipecat language to the code Waves expects.

    Args:
        language: Any ``Language``, regional or not.

    Returns:
        The Waves code (``"en"``, ``"hi"``, ...). A language Waves does not list
        falls back to its base code with a warning, so the server can say no.
    """
    return resolve_language(language, _WAVES_LANGUAGES, use_base_code=True)
