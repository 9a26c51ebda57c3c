"""The settings both services start from, and change mid-session."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipecat.services.settings import TTSSettings
from pipecat.transcriptions.language import Language
from pipecat.utils.types import NOT_GIVEN, NotGiven

from pipecat_waves.service.settings_check import settings_problem

__all__ = ["WavesTTSSettings", "initial_settings"]


@dataclass
class WavesTTSSettings(TTSSettings):
    """Runtime-updatable settings of :class:`~pipecat_waves.service.websocket.WavesTTSService`.

    Change any of them mid-session with ``TTSUpdateSettingsFrame``; no
    reconnect is needed. A change of voice, model, language or speed in the
    middle of a reply moves the rest of the reply to a new server context.

    Parameters:
        speed: Speaking rate, 0.5 to 2.0. None leaves the server default (1.0).
        math_notation: Read digit-flanked operators as words ("2 + 2").
        number_pronunciation_language: Language used to read numbers.
        content_filter: ``"reject"`` or ``"flag"`` profanity handling, or None.
        pronunciation_dicts: Ids of pronunciation dictionaries to speak with
            (``pipecat-waves dicts list`` shows them), or None. The live
            socket does not declare the field: it is sent there only while the
            server takes it, and the first refusal stops it for the session,
            with one warning that the dictionaries are not applied.
    """

    speed: float | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    math_notation: bool | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    number_pronunciation_language: str | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    content_filter: str | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    pronunciation_dicts: list[str] | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)


def initial_settings(given: WavesTTSSettings | None) -> WavesTTSSettings:
    """The defaults with ``given`` applied, checked: what both services start from.

    Raises:
        ValueError: A setting that cannot work, named.
    """
    settings = WavesTTSSettings(
        model="lightning_v3.1",
        voice="avery",
        language=Language.EN,
        speed=None,
        math_notation=None,
        number_pronunciation_language=None,
        content_filter=None,
        pronunciation_dicts=None,
    )
    if given is not None:
        settings.apply_update(given)
    problem = settings_problem(settings)
    if problem:
        raise ValueError(problem)
    return settings
