"""The API key never shows up in the HTTP service's logs, reprs, errors or frames."""

from __future__ import annotations

import socket

import pytest
from pipecat.frames.frames import InterruptionFrame
from pipecat.tests.utils import SleepFrame

from pipecat_waves import WavesHttpTTSService
from pipecat_waves.credentials import ApiKeyError
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from tests.http.helpers import make_http_service
from tests.service.helpers import API_KEY, errors, heard, llm_turn, run
from tests.service.test_secrets import BAD_KEYS, _assert_absent, _Captured

WRONG_KEY = "sk-wrong-5e6f7a8b9c0d"


async def test_key_is_absent_from_every_log_error_and_frame(caplog: pytest.LogCaptureFixture):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        gone = s.getsockname()[1]
    with _Captured(caplog) as captured:
        behaviour = ServerBehaviour(chunk_interval_ms=10)
        async with LocalWavesServer(
            api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
        ) as server:
            good = make_http_service(server)
            down, up = await run(
                good,
                [
                    *llm_turn("Your code is safe. It stays that way."),
                    SleepFrame(sleep=0.2),
                    InterruptionFrame(),
                    *llm_turn("Your code is safe."),
                ],
            )
            wrong = make_http_service(server, api_key=WRONG_KEY)
            _, up_wrong = await run(wrong, llm_turn("Nobody hears this."))
            headers = [dict(r.headers) for r in server.http_requests]
        unreachable = WavesHttpTTSService(
            api_key=API_KEY, base_url=f"http://127.0.0.1:{gone}", sample_rate=16000
        )
        _, up_gone = await run(unreachable, llm_turn("Nobody hears this."))
    assert heard(down, "Your code is safe.")[-4:] == ["Your", "code", "is", "safe."]
    assert len(errors(up_wrong)) == 1 and len(errors(up_gone)) == 1
    everything = (
        captured.text
        + repr(good)
        + repr(wrong)
        + repr(unreachable)
        + "".join(map(str, [*down, *up, *up_wrong, *up_gone]))
        + "".join(e.error for e in [*errors(up_wrong), *errors(up_gone)])
        + str(headers)
    )
    for key in (API_KEY, WRONG_KEY):
        _assert_absent(key, everything)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unusable_key_is_refused_at_construction_without_repeating_it(
    key: str, caplog: pytest.LogCaptureFixture
):
    with _Captured(caplog) as captured, pytest.raises(ApiKeyError) as info:
        WavesHttpTTSService(api_key=key, base_url="http://127.0.0.1:9")
    _assert_absent(key, str(info.value) + captured.text)
