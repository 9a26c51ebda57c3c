"""Any pipeline output rate: ask Waves for an offered rate, resample as the audio streams."""

from __future__ import annotations

import random

import numpy as np
import pytest
import soxr
from pipecat.frames.frames import TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.service.resample import QUALITY, StreamResampler, wire_rate_for
from tests.service.helpers import API_KEY, errors


@pytest.mark.parametrize(
    ("pipeline", "wire"),
    [
        (8000, 8000),
        (16000, 16000),
        (24000, 24000),
        (44100, 44100),
        (48000, 44100),  # above every offered rate: the highest
        (96000, 44100),
        (22050, 24000),  # otherwise the lowest offered rate at or above it
        (11025, 16000),
        (32000, 44100),
    ],
)
def test_wire_rate_keeps_every_frequency_the_pipeline_carries(pipeline, wire):
    assert wire_rate_for(pipeline) == wire


def _speech_like(rate: int, seconds: float = 1.0) -> np.ndarray:
    """Two tones and a sweep: energy across the band, as speech has."""
    t = np.arange(int(rate * seconds)) / rate
    sweep = np.sin(2 * np.pi * (200 + 1500 * t) * t)
    mix = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t) + 0.3 * sweep
    return (mix * 20000).astype(np.int16)


def _pcm16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


def _stream(samples: np.ndarray, resampler: StreamResampler, seed: int) -> np.ndarray:
    """Feed ``samples`` in chunks of random size (one sample up to 150 ms), then flush."""
    rng = random.Random(seed)
    out = bytearray()
    i = 0
    while i < len(samples):
        n = rng.choice([1, 7, rng.randint(1, 6615)])
        out += resampler.feed(samples[i : i + n].tobytes())
        i += n
    out += resampler.flush()
    return np.frombuffer(bytes(out), dtype=np.int16)


@pytest.mark.parametrize(("source", "target"), [(44100, 48000), (8000, 48000), (24000, 22050)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_streaming_matches_resampling_the_whole_reply_at_once(source, target, seed):
    samples = _speech_like(source)
    once = _pcm16(soxr.resample(samples.astype(np.float32), source, target, quality=QUALITY))
    streamed = _stream(samples, StreamResampler(source, target), seed)
    assert len(streamed) == len(once)
    # Within rounding of the integer samples: the chunk edges leave no trace.
    assert np.abs(streamed.astype(np.int32) - once.astype(np.int32)).max() <= 1


def test_resampling_each_chunk_on_its_own_would_click_and_the_check_sees_it():
    # The same comparison catches what a stateless resampler does at chunk edges.
    samples = _speech_like(44100)
    once = _pcm16(soxr.resample(samples.astype(np.float32), 44100, 48000, quality=QUALITY))
    pieces = [samples[i : i + 6615].astype(np.float32) for i in range(0, len(samples), 6615)]
    naive = _pcm16(
        np.concatenate([soxr.resample(p, 44100, 48000, quality=QUALITY) for p in pieces])
    )
    assert len(naive) == len(once)
    error = np.abs(naive.astype(np.int32) - once.astype(np.int32))
    assert error.max() > 100
    # ... right at the chunk edges (every 7200 output samples): clicks.
    assert int(np.argmax(error)) % 7200 in (0, 1, 7198, 7199)


def test_a_new_stream_starts_clean():
    # Each reply has its own resampler: silence after loud audio stays silence.
    loud = StreamResampler(44100, 48000)
    loud.feed(_speech_like(44100, 0.1).tobytes())
    fresh = StreamResampler(44100, 48000)
    silence = fresh.feed(bytes(2 * 4410)) + fresh.flush()
    assert silence and not any(silence)


TEXT = "Seven tables remain open tonight near the window."


@pytest.mark.parametrize(("pipeline_rate", "wire_rate"), [(48000, 44100), (8000, 8000)])
async def test_a_pipeline_at_any_rate_gets_its_audio(pipeline_rate, wire_rate):
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True) as server:
        service = WavesTTSService(api_key=API_KEY, base_url=server.ws_base_url)
        down, up = await run_test(
            service,
            frames_to_send=[TTSSpeakFrame(TEXT)],
            pipeline_params=PipelineParams(audio_out_sample_rate=pipeline_rate),
        )
        asked = {m["sample_rate"] for c in server.connections for m in c.received if "text" in m}
        texts = [s.text for s in server.segments]
    assert errors(up) == []
    assert asked == {wire_rate}
    frames = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert frames and {f.sample_rate for f in frames} == {pipeline_rate}
    pcm = np.frombuffer(b"".join(f.audio for f in frames), dtype=np.int16)
    # What the server sent for the reply, resampled in one go: the listener
    # gets all of it (filter tail included), with no trace of the chunking.
    tone = ToneBackend()
    sent = b"".join(
        tone.synthesize(t, voice_id="avery", speed=1.0, sample_rate=wire_rate).pcm for t in texts
    )
    expected = np.frombuffer(sent, dtype=np.int16)
    if wire_rate != pipeline_rate:
        expected = _pcm16(
            soxr.resample(expected.astype(np.float32), wire_rate, pipeline_rate, quality=QUALITY)
        )
    assert len(pcm) == len(expected)
    assert np.abs(pcm.astype(np.int32) - expected.astype(np.int32)).max() <= 1


@pytest.mark.speech
async def test_piper_speech_at_48_khz_is_understood():
    pytest.importorskip("piper.voice", reason="needs the voice extra")
    from pipecat_waves.server.piper_backend import PiperBackend
    from tests.support.transcribe import transcribe, word_recall

    text = "The quick brown fox jumps over the lazy dog."
    async with LocalWavesServer(api_key=API_KEY, backend=PiperBackend(), record=True) as server:
        service = WavesTTSService(api_key=API_KEY, base_url=server.ws_base_url)
        down, up = await run_test(
            service,
            frames_to_send=[TTSSpeakFrame(text)],
            pipeline_params=PipelineParams(audio_out_sample_rate=48000),
        )
    assert errors(up) == []
    pcm = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    heard = transcribe(pcm, 48000)
    assert word_recall(text, heard) >= 0.8, heard
