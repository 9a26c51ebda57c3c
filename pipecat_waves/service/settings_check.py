"""What makes a set of service settings unusable, found before any text is sent."""

from __future__ import annotations

import math
from typing import Any

from pipecat.utils.types import is_given

from pipecat_waves.protocol import constants as c


def _value(settings: Any, name: str) -> Any:
    value = getattr(settings, name, None)
    return value if is_given(value) else None


def settings_problem(settings: Any) -> str | None:
    """The first setting Waves would refuse, named with the fix; None if all is well.

    Checked: that a model is named, the voice id's form, the speed range, the
    content filter action and the form of the pronunciation dictionary ids.
    Whether the model, the voice or a dictionary exists only the server knows:
    new models appear, so a model this version does not know is sent as given
    (see :func:`unknown_model`).
    """
    model = _value(settings, "model")
    if not isinstance(model, str) or not model.strip():
        return (
            f"model {model!r} names no model; use one of {known_models()} "
            "(or a newer one Waves offers)"
        )
    voice = _value(settings, "voice")
    if not c.is_valid_id(voice):
        shown = repr(voice) if isinstance(voice, str) and len(voice) <= 40 else "given"
        return (
            f"voice id {shown} is malformed; a voice id is 1 to {c.ID_MAX_LENGTH} letters, "
            "digits, '_', '.' or '-'. Run `pipecat-waves voices` to list them"
        )
    speed = _value(settings, "speed")
    if speed is not None and (
        isinstance(speed, bool)
        or not isinstance(speed, int | float)
        or not math.isfinite(speed)
        or not c.SPEED_MIN <= speed <= c.SPEED_MAX
    ):
        return (
            f"speed {speed!r} is out of range; use {c.SPEED_MIN} to {c.SPEED_MAX} (1.0 is normal)"
        )
    content_filter = _value(settings, "content_filter")
    if content_filter is not None and content_filter not in ("reject", "flag"):
        return f"content_filter {content_filter!r} is not 'reject', 'flag' or None"
    return dicts_problem(_value(settings, "pronunciation_dicts"))


def dicts_problem(dicts: Any) -> str | None:
    """What is wrong with a ``pronunciation_dicts`` setting; None if nothing."""
    if dicts is None:
        return None
    fix = "run `pipecat-waves dicts list` to see your dictionary ids"
    if isinstance(dicts, str) or not isinstance(dicts, list | tuple):
        return f"pronunciation_dicts must be a list of dictionary ids, not {type(dicts).__name__}"
    for dict_id in dicts:
        if not c.is_valid_id(dict_id):
            shown = repr(dict_id) if isinstance(dict_id, str) and len(dict_id) <= 40 else "given"
            return f"pronunciation dictionary id {shown} is malformed; {fix}"
    if len(set(dicts)) != len(dicts):
        return "pronunciation_dicts names a dictionary twice; list each id once"
    return None


def unknown_model(model: object) -> str | None:
    """``model`` if it is a name outside the catalogue this version knows, else None.

    Such a model is sent anyway (the server is the authority on its models);
    the caller warns once so a typo is not a silent surprise.
    """
    if isinstance(model, str) and model and model not in c.MODELS:
        return model
    return None


def known_models() -> str:
    """The models this version knows, for messages."""
    return ", ".join(sorted(c.MODELS))
