"""Mistakes that no retry can fix fail at once, once, and say what to change."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from pipecat.frames.frames import TTSUpdateSettingsFrame
from pipecat.tests.utils import SleepFrame
from pipecat.utils.errors import ErrorCategory

from pipecat_waves import WavesTTSService
from pipecat_waves.protocol.constants import LIVE_PATH
from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.backends import ToneBackend
from tests.service.helpers import API_KEY, errors, heard, llm_turn, make_service, run

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick


class _StatusServer:
    """Answers every live upgrade with one HTTP status, counting the attempts."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.attempts = 0
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        return web.json_response({"error": "no"}, status=self.status)

    async def __aenter__(self) -> _StatusServer:
        app = web.Application()
        app.router.add_get(LIVE_PATH, self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"ws://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def tone_server() -> AsyncIterator[LocalWavesServer]:
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True) as server:
        yield server


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_a_client_error_on_the_upgrade_is_reported_once_and_not_retried(status: int):
    async with _StatusServer(status) as server:
        service = WavesTTSService(
            api_key=API_KEY,
            base_url=server.url,
            sample_rate=16000,
            reconnect_backoff_s=(0.01, 0.02),
        )
        _, up = await run(service, [SleepFrame(1.0)])
    errs = errors(up)
    assert len(errs) == 1, [e.error for e in errs]
    assert f"HTTP {status}" in errs[0].error and "base_url" in errs[0].error
    assert errs[0].category is ErrorCategory.INVALID_REQUEST
    # Retrying every 10-20 ms for a second would be dozens of attempts; only
    # the warm start's two connections ever tried.
    assert server.attempts <= 2


async def test_a_server_error_on_the_upgrade_is_still_retried():
    async with _StatusServer(503) as server:
        service = WavesTTSService(
            api_key=API_KEY,
            base_url=server.url,
            sample_rate=16000,
            reconnect_backoff_s=(0.01, 0.02),
        )
        await run(service, [SleepFrame(0.5)])
    assert server.attempts > 2


@pytest.mark.parametrize(
    "base_url",
    [
        "wss://api.smallest.ai/waves/v1/tts/live",
        "wss://api.smallest.ai/waves/v1/tts/live/",
        "wss://api.smallest.ai/waves",
        "wss://api.smallest.ai?timeout=30",
    ],
)
def test_a_base_url_holding_the_endpoint_path_is_refused(base_url: str):
    with pytest.raises(ValueError, match="give only the origin"):
        WavesTTSService(api_key=API_KEY, base_url=base_url)


@pytest.mark.parametrize("idle_timeout_s", [0, -5, 181, 3600])
def test_an_idle_timeout_waves_does_not_honour_is_refused(idle_timeout_s: int):
    with pytest.raises(ValueError, match="at most 180 seconds"):
        WavesTTSService(api_key=API_KEY, idle_timeout_s=idle_timeout_s)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"speed": 9}, "speed 9"),
        ({"speed": 0.1}, "speed 0.1"),
        ({"speed": float("nan")}, "speed nan"),
        ({"voice": "not a voice!"}, "voice id 'not a voice!' is malformed"),
        ({"voice": ""}, "voice id '' is malformed"),
        ({"model": ""}, "model '' names no model"),
        ({"content_filter": "block"}, "content_filter 'block'"),
    ],
)
def test_bad_settings_are_refused_at_construction(settings: dict, named: str):
    with pytest.raises(ValueError) as info:
        WavesTTSService(api_key=API_KEY, settings=WavesTTSService.Settings(**settings))
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("delta", "named"),
    [
        ({"speed": 9.0}, "speed 9.0"),
        ({"voice": "liam", "speed": 3}, "speed 3"),
        ({"voice": "bad voice"}, "voice id 'bad voice'"),
        ({"model": ""}, "model '' names no model"),
    ],
)
async def test_a_bad_update_is_refused_once_and_the_previous_settings_stay(
    tone_server: LocalWavesServer, delta: dict, named: str
):
    service = make_service(tone_server)
    update = TTSUpdateSettingsFrame(delta=WavesTTSService.Settings(**delta))
    down, up = await run(service, [*llm_turn("One."), update, *llm_turn("Two.")])
    errs = errors(up)
    assert len(errs) == 1, [e.error for e in errs]
    assert named in errs[0].error and "keeping the previous settings" in errs[0].error
    # Not a permanent category: the service still works.
    assert errs[0].category is ErrorCategory.APPLICATION
    # Both replies spoken, both with the settings from before the update
    # (a partly good update is refused whole: no voice change either).
    assert heard(down, "One. Two.") == ["One.", "Two."]
    sent = [m for c in tone_server.connections for m in c.received if m.get("text")]
    assert [(m["voice_id"], m["model"], m.get("speed")) for m in sent] == [
        ("avery", "lightning_v3.1", None),
        ("avery", "lightning_v3.1", None),
    ]


async def test_an_unknown_voice_in_an_update_fails_one_reply_then_the_last_voice_speaks(
    tone_server: LocalWavesServer,
):
    service = make_service(tone_server)
    update = TTSUpdateSettingsFrame(delta=WavesTTSService.Settings(voice="nobody_here"))
    down, up = await run(
        service,
        [*llm_turn("One."), update, *llm_turn("Two."), SleepFrame(0.3), *llm_turn("Three.")],
    )
    errs = errors(up)
    assert len(errs) == 1, [e.error for e in errs]
    assert "nobody_here" in errs[0].error and "Going on with voice 'avery'" in errs[0].error
    assert heard(down, "One. Two. Three.") == ["One.", "Three."]
    sent = [m for c in tone_server.connections for m in c.received if m.get("text")]
    # (Records are per connection, and the replies took turns on two of them.)
    assert sorted((m["text"].strip(), m["voice_id"]) for m in sent) == [
        ("One.", "avery"),
        ("Three.", "avery"),
        ("Two.", "nobody_here"),
    ]
    # The service recovered, so the error does not mark it unusable.
    assert errs[0].category is ErrorCategory.APPLICATION
