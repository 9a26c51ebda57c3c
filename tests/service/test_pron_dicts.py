"""Pronunciation dictionaries through WavesTTSService on the live socket.

The socket does not declare ``pronunciation_dicts``; the local server takes,
ignores or refuses it by a switch. Whatever it does, every word is spoken once
and no ErrorFrame is raised; where the dictionaries are not applied the user
is told once. Speech is read back from the tone backend, where a replaced word
sounds different from the word as written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import pytest
from loguru import logger
from pipecat.frames.frames import TTSSpeakFrame, TTSTextFrame, TTSUpdateSettingsFrame

from pipecat_waves import WavesHttpTTSService, WavesTTSService
from pipecat_waves.protocol.constants import PRONUNCIATION_DICTS_PATH
from pipecat_waves.protocol.traits import ServerTraits
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from tests.service.helpers import (
    API_KEY,
    RATE,
    contexts_in_order,
    errors,
    heard,
    llm_turn,
    make_service,
    run,
)

ITEMS = [
    {"word": "SQL", "pronunciation": "sequel"},
    {"word": "NYC", "pronunciation": "New York City"},
]
# Both replaced words change the word count or the word; the last word of
# each reply is a replaced one, so the reply's end hangs on its timestamp.
FIRST = "We teach SQL in NYC"
FIRST_SAID = "We teach sequel in New York City"
SECOND = "Come visit NYC"
SECOND_SAID = "Come visit New York City"
NOT_APPLIED = "pronunciation dictionaries are not applied"


def tone_server(**switches) -> LocalWavesServer:
    return LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=ServerBehaviour(**switches), record=True
    )


async def create_dict(server: LocalWavesServer) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.base_url + PRONUNCIATION_DICTS_PATH,
            json={"items": ITEMS},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as r,
    ):
        assert r.status == 201
        return str((await r.json())["id"])


@contextmanager
def captured() -> Iterator[list[tuple[str, str]]]:
    """(level, message) of every log record of this package."""
    records: list[tuple[str, str]] = []

    def sink(message) -> None:
        record = message.record
        if record["name"].startswith("pipecat_waves"):
            records.append((record["level"].name, record["message"]))

    sink_id = logger.add(sink, level="DEBUG")
    try:
        yield records
    finally:
        logger.remove(sink_id)


def texts_sent(server: LocalWavesServer) -> list[dict]:
    return [m for c in server.connections for m in c.received if m.get("text")]


def with_dicts(dict_id: str) -> WavesTTSService.Settings:
    return WavesTTSService.Settings(pronunciation_dicts=[dict_id])


async def speak_two(service: WavesTTSService):
    return await run(service, [TTSSpeakFrame(FIRST), TTSSpeakFrame(SECOND)])


async def test_a_server_that_takes_them_speaks_the_pronunciations_with_words_in_step():
    with captured() as records:
        async with tone_server(pronunciation_dicts_on_socket="apply") as server:
            dict_id = await create_dict(server)
            service = make_service(server, settings=with_dicts(dict_id))
            down, up = await speak_two(service)
    assert errors(up) == []
    first, second = contexts_in_order(down)
    vocabulary = f"{FIRST} {FIRST_SAID} {SECOND}"
    assert heard(down, vocabulary, first) == FIRST_SAID.split()
    assert heard(down, vocabulary, second) == SECOND_SAID.split()
    assert all(m["pronunciation_dicts"] == [dict_id] for m in texts_sent(server))
    # Word frames name the words as written, once each, in order.
    words = [f.text for f in down if isinstance(f, TTSTextFrame)]
    assert " ".join(words).split() == f"{FIRST} {SECOND}".split()
    # Each reply ends because every word it sent was timed, not on a quiet guard.
    messages = [m for _, m in records]
    assert sum("over (every word timed" in m for m in messages) == 2, messages
    assert not any("no timestamp matched" in m or NOT_APPLIED in m for m in messages)
    assert service.server_traits.pronunciation_dicts_on_socket is None


async def test_a_refusal_is_learned_cold_and_nothing_is_lost():
    with captured() as records:
        async with tone_server() as server:  # the strict default: refuse
            dict_id = await create_dict(server)
            service = make_service(server, settings=with_dicts(dict_id))
            down, up = await speak_two(service)
    assert errors(up) == []
    first, second = contexts_in_order(down)
    vocabulary = f"{FIRST} {FIRST_SAID} {SECOND}"
    assert heard(down, vocabulary, first) == FIRST.split()
    assert heard(down, vocabulary, second) == SECOND.split()
    sent = texts_sent(server)
    # Only a reply that started before the refusal came back carried the field
    # (the second may have, on the spare); each was resent without it, and
    # only the resent ones were spoken.
    assert "pronunciation_dicts" in sent[0]
    assert len([m for m in sent if "pronunciation_dicts" in m]) <= 2
    assert [m["text"].strip() for m in sent if "pronunciation_dicts" not in m] == [FIRST, SECOND]
    assert [s.text.strip() for s in server.segments] == [FIRST, SECOND]
    warnings = [m for level, m in records if level == "WARNING"]
    assert len([m for m in warnings if NOT_APPLIED in m]) == 1, warnings
    assert service.server_traits.pronunciation_dicts_on_socket == "refuse"


async def test_a_server_that_ignores_them_still_speaks_every_word():
    async with tone_server(pronunciation_dicts_on_socket="ignore") as server:
        dict_id = await create_dict(server)
        service = make_service(server, settings=with_dicts(dict_id))
        down, up = await speak_two(service)
    assert errors(up) == []
    assert heard(down, f"{FIRST} {SECOND}") == f"{FIRST} {SECOND}".split()
    assert all("pronunciation_dicts" in m for m in texts_sent(server))


@pytest.mark.parametrize("known", ["refuse", "ignore"])
async def test_a_known_refusal_or_ignorance_means_the_field_is_never_sent(known):
    with captured() as records:
        async with tone_server(pronunciation_dicts_on_socket=known) as server:
            dict_id = await create_dict(server)
            service = make_service(
                server,
                settings=with_dicts(dict_id),
                server_traits=ServerTraits(pronunciation_dicts_on_socket=known),
            )
            down, up = await speak_two(service)
    assert errors(up) == []
    assert heard(down, f"{FIRST} {SECOND}") == f"{FIRST} {SECOND}".split()
    sent = texts_sent(server)
    assert [m["text"].strip() for m in sent] == [FIRST, SECOND]
    assert all("pronunciation_dicts" not in m for m in sent)
    warned = [m for level, m in records if level == "WARNING" and NOT_APPLIED in m]
    assert len(warned) == 1 and known in warned[0]


async def test_dictionaries_can_be_switched_on_at_run_time():
    async with tone_server(pronunciation_dicts_on_socket="apply") as server:
        dict_id = await create_dict(server)
        service = make_service(server)
        frames = [*llm_turn(FIRST), TTSUpdateSettingsFrame(delta=with_dicts(dict_id))]
        down, up = await run(service, [*frames, *llm_turn(SECOND)])
    assert errors(up) == []
    first, second = contexts_in_order(down)
    vocabulary = f"{FIRST} {FIRST_SAID} {SECOND}"
    assert heard(down, vocabulary, first) == FIRST.split()
    assert heard(down, vocabulary, second) == SECOND_SAID.split()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "must be a list"),
        (["bad id!"], "is malformed"),
        (["a", "a"], "twice"),
    ],
)
def test_malformed_dictionary_settings_are_refused_up_front(value, message):
    with pytest.raises(ValueError, match=message):
        WavesTTSService(
            api_key=API_KEY,
            base_url="ws://127.0.0.1:9",
            settings=WavesTTSService.Settings(pronunciation_dicts=value),
        )


async def test_the_http_service_sends_them_and_is_heard_with_the_pronunciations():
    # HTTP is where Waves documents the field: WavesHttpTTSService always sends it.
    async with tone_server() as server:
        dict_id = await create_dict(server)
        service = WavesHttpTTSService(
            api_key=API_KEY,
            base_url=server.base_url,
            sample_rate=RATE,
            settings=WavesHttpTTSService.Settings(pronunciation_dicts=[dict_id]),
        )
        down, up = await speak_two(service)
    assert errors(up) == []
    first, second = contexts_in_order(down)
    vocabulary = f"{FIRST} {FIRST_SAID} {SECOND}"
    assert heard(down, vocabulary, first) == FIRST_SAID.split()
    assert heard(down, vocabulary, second) == SECOND_SAID.split()
    bodies = [r.body for r in server.http_requests if isinstance(r.body, dict)]
    assert bodies and all(b.get("pronunciation_dicts") == [dict_id] for b in bodies)
