"""Model names: the server decides. An unknown one is sent, with one warning.

New models appear on the server before a release of this package knows them,
so a model outside the known catalogue is sent as given, and only a refusal
from the server (here the local server, which offers only the documented
models) is reported: once, naming the model and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from loguru import logger
from pipecat.frames.frames import TTSUpdateSettingsFrame
from pipecat.tests.utils import SleepFrame
from pipecat.utils.errors import ErrorCategory

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from tests.service.helpers import API_KEY, errors, heard, llm_turn, make_service, run

NEW_MODEL = "lightning_v9"


@contextmanager
def warnings_logged() -> Iterator[list[str]]:
    """Messages of this package's WARNING records while the block runs."""
    messages: list[str] = []

    def sink(message) -> None:
        record = message.record
        if record["name"].startswith("pipecat_waves") and record["level"].name == "WARNING":
            messages.append(record["message"])

    sink_id = logger.add(sink, level="WARNING")
    try:
        yield messages
    finally:
        logger.remove(sink_id)


def sent(server: LocalWavesServer) -> list[tuple[str, str]]:
    """(text, model) of every text-bearing message the server received."""
    return [
        (m["text"].strip(), m["model"])
        for c in server.connections
        for m in c.received
        if m.get("text", "").strip()
    ]


def test_an_unknown_model_is_accepted_at_construction_with_one_warning():
    with warnings_logged() as warned:
        service = WavesTTSService(
            api_key=API_KEY, settings=WavesTTSService.Settings(model=NEW_MODEL)
        )
    assert service.settings.model == NEW_MODEL
    about = [m for m in warned if NEW_MODEL in m]
    assert len(about) == 1, warned
    assert "lightning_v3.1" in about[0], "the warning lists the models this version knows"


@pytest.mark.parametrize("model", ["", None])
def test_no_model_name_is_still_refused(model):
    with pytest.raises(ValueError, match="names no model"):
        WavesTTSService(api_key=API_KEY, settings=WavesTTSService.Settings(model=model))


@pytest.mark.parametrize("error_shape", ["flat", "nested"])
async def test_a_refused_unknown_model_is_one_error_naming_it_and_the_fix(error_shape):
    behaviour = ServerBehaviour(error_shape=error_shape)
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    ) as server:
        service = make_service(server, settings=WavesTTSService.Settings(model=NEW_MODEL))
        down, up = await run(service, [*llm_turn("One."), SleepFrame(0.3), *llm_turn("Two.")])
        received = sent(server)
    # It went to the server as given: the server is the authority.
    assert ("One.", NEW_MODEL) in received
    errs = errors(up)
    assert len(errs) == 1, [e.error for e in errs]
    assert repr(NEW_MODEL) in errs[0].error
    assert "set a model Waves offers with Settings(model=...)" in errs[0].error
    # Nothing it could go back to: no reply of this service ever spoke. The
    # service cannot work as configured, so a ServiceSwitcher may move on.
    assert errs[0].category is ErrorCategory.INVALID_REQUEST
    assert not service.is_usable
    assert heard(down, "One. Two.") == []
    assert ("Two.", NEW_MODEL) not in received, "no request the server would refuse again"


async def test_an_unknown_model_in_an_update_fails_one_reply_then_the_last_model_speaks():
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True) as server:
        service = make_service(server)
        update = TTSUpdateSettingsFrame(delta=WavesTTSService.Settings(model=NEW_MODEL))
        with warnings_logged() as warned:
            down, up = await run(
                service,
                [
                    *llm_turn("One."),
                    update,
                    *llm_turn("Two."),
                    SleepFrame(0.3),
                    *llm_turn("Three."),
                    # The same name again: no second warning.
                    TTSUpdateSettingsFrame(delta=WavesTTSService.Settings(model=NEW_MODEL)),
                ],
            )
        received = sent(server)
    assert sorted(received) == [
        ("One.", "lightning_v3.1"),
        ("Three.", "lightning_v3.1"),
        ("Two.", NEW_MODEL),
    ]
    errs = errors(up)
    assert len(errs) == 1, [e.error for e in errs]
    assert repr(NEW_MODEL) in errs[0].error and "Settings(model=...)" in errs[0].error
    assert "Going on with model 'lightning_v3.1'" in errs[0].error
    # The service recovered, so the error does not mark it unusable.
    assert errs[0].category is ErrorCategory.APPLICATION
    assert service.is_usable
    assert heard(down, "One. Two. Three.") == ["One.", "Three."]
    assert len([m for m in warned if "is not one this version knows" in m]) == 1, warned


async def test_a_known_model_is_not_warned_about_or_blamed():
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=ServerBehaviour(error_on_request=1)
    ) as server:
        service = make_service(
            server, settings=WavesTTSService.Settings(model="lightning_v3.1_pro")
        )
        with warnings_logged() as warned:
            _, up = await run(service, [*llm_turn("One."), SleepFrame(0.3), *llm_turn("Two.")])
    assert not [m for m in warned if "model" in m], warned
    errs = errors(up)
    assert len(errs) == 1, [e.error for e in errs]
    assert "Settings(model=...)" not in errs[0].error
