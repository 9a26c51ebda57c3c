"""Example 04: the live socket's server goes away, the HTTP backup speaks the rest."""

from __future__ import annotations

import wave

from pipecat_waves.server import LocalWavesServer, ToneBackend
from pipecat_waves.server.tones import transcribe_tones, words_of
from tests.demo.conftest import load_example

KEY = "example-key"


async def test_04_the_http_backup_speaks_once_the_socket_is_gone(tmp_path):
    example = load_example("04_http_backup")
    out = tmp_path / "backup.wav"
    async with (
        LocalWavesServer(api_key=KEY, backend=ToneBackend(), record=True) as live,
        LocalWavesServer(api_key=KEY, backend=ToneBackend(), record=True) as http,
    ):
        spoke = await example.speak_with_backup(
            out,
            api_key=KEY,
            live_base_url=live.ws_base_url,
            http_base_url=http.base_url,
            outage=live.stop,
        )
        live_texts = "".join(m.get("text", "") for c in live.connections for m in c.received)
        http_texts = [r.body["text"] for r in http.http_requests]
    assert spoke == ["live socket", "HTTP backup", "HTTP backup"]
    assert example.LINES[0] in live_texts
    assert http_texts == example.LINES[1:]
    with wave.open(str(out), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    every_word = " ".join(example.LINES)
    heard = transcribe_tones(pcm, example.SAMPLE_RATE, words_of(every_word))
    assert heard == every_word.split()


async def test_04_with_waves_up_the_socket_speaks_every_line(tmp_path):
    example = load_example("04_http_backup")
    async with LocalWavesServer(api_key=KEY, backend=ToneBackend(), record=True) as server:
        spoke = await example.speak_with_backup(
            tmp_path / "up.wav",
            api_key=KEY,
            live_base_url=server.ws_base_url,
            http_base_url=server.base_url,
        )
        assert server.http_requests == []
    assert spoke == ["live socket"] * len(example.LINES)
