"""The user's voice in Pipecat's evals harness: CachingTTSService around the HTTP service."""

from __future__ import annotations

from pipecat.evals.tts import CachingTTSService, tts_cache_key
from pipecat.frames.frames import ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test

from pipecat_waves import WavesHttpTTSService
from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.server.tones import transcribe_tones, words_of
from tests.service.helpers import API_KEY, errors

UTTERANCE = "I would like a table for two tonight."
RATE = 16000


def _caching(server: LocalWavesServer, cache_dir, **kwargs) -> CachingTTSService:
    inner = WavesHttpTTSService(api_key=kwargs.pop("api_key", API_KEY), base_url=server.base_url)
    key = tts_cache_key({"service": "waves", "voice": "avery", "model": "lightning_v3.1"})
    return CachingTTSService(inner, cache_key=key, cache_dir=cache_dir)


async def _speak(service: CachingTTSService):
    down, up = await run_test(
        service,
        frames_to_send=[TTSSpeakFrame(UTTERANCE)],
        pipeline_params=PipelineParams(audio_out_sample_rate=RATE),
    )
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    return audio, up


async def test_synthesized_once_then_served_from_the_cache(tmp_path):
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True) as server:
        first, up1 = await _speak(_caching(server, tmp_path))
        second, up2 = await _speak(_caching(server, tmp_path))
        requests = server.http_requests
    assert errors(up1) == [] and errors(up2) == []
    assert len(requests) == 1 and requests[0].body["sample_rate"] == RATE
    assert transcribe_tones(first, RATE, words_of(UTTERANCE)) == UTTERANCE.split()
    assert second == first
    assert len(list(tmp_path.glob("*.wav"))) == 1


async def test_a_failure_reaches_the_harness_once_and_nothing_is_cached(tmp_path):
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True) as server:
        audio, up = await _speak(_caching(server, tmp_path, api_key="sk-wrong-0000"))
    failures = [e for e in errors(up) if "API key" in e.error]
    assert audio == b"" and len(failures) == 1
    assert all(isinstance(e, ErrorFrame) for e in failures)
    assert list(tmp_path.glob("*.wav")) == []
