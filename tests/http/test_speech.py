"""Whole replies over SSE, at any output rate, with one kept-alive connection."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from pipecat.frames.frames import (
    Frame,
    MetricsFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData, TTSUsageMetricsData
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import run_test

from pipecat_waves import WavesHttpTTSService
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.server.tones import transcribe_tones, words_of
from pipecat_waves.service.resample import QUALITY
from tests.http.helpers import make_http_service, sse_texts
from tests.service.helpers import API_KEY, errors, llm_turn, run

REPLY = "Seven tables remain open tonight. The kitchen shuts at ten. Parking is free."


def _pcm16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize(
    ("pipeline_rate", "wire_rate"), [(8000, 8000), (16000, 16000), (24000, 24000), (48000, 44100)]
)
@pytest.mark.parametrize("odd", [False, True], ids=["even chunks", "odd chunks"])
async def test_a_whole_reply_is_heard_at_any_output_rate(pipeline_rate, wire_rate, odd):
    behaviour = ServerBehaviour(split_odd_bytes=odd)
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    ) as server:
        service = WavesHttpTTSService(api_key=API_KEY, base_url=server.base_url)
        down, up = await run_test(
            service,
            frames_to_send=llm_turn(REPLY),
            pipeline_params=PipelineParams(audio_out_sample_rate=pipeline_rate),
        )
    assert errors(up) == []
    requests = server.http_requests
    # One request per sentence, at the rate Waves offers nearest above the pipeline's.
    assert [r.body["text"].strip() for r in requests] == [
        "Seven tables remain open tonight.",
        "The kitchen shuts at ten.",
        "Parking is free.",
    ]
    assert {r.body["sample_rate"] for r in requests} == {wire_rate}
    frames = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert {f.sample_rate for f in frames} == {pipeline_rate}
    assert len({f.context_id for f in frames}) == 1, "one reply, one context"
    pcm = np.frombuffer(b"".join(f.audio for f in frames), dtype=np.int16)
    if wire_rate == pipeline_rate:
        assert transcribe_tones(pcm.tobytes(), pipeline_rate, words_of(REPLY)) == REPLY.split()
    # What the server sent, resampled in one go: the listener gets all of it,
    # with no trace of where the events (or the requests) were cut.
    tone = ToneBackend()
    sent = b"".join(
        tone.synthesize(r.body["text"], voice_id="avery", speed=1.0, sample_rate=wire_rate).pcm
        for r in requests
    )
    expected = np.frombuffer(sent, dtype=np.int16)
    if wire_rate != pipeline_rate:
        expected = _pcm16(
            soxr.resample(expected.astype(np.float32), wire_rate, pipeline_rate, quality=QUALITY)
        )
    assert len(pcm) == len(expected)
    assert np.abs(pcm.astype(np.int32) - expected.astype(np.int32)).max() <= 1
    started = [f for f in down if isinstance(f, TTSStartedFrame)]
    stopped = [f for f in down if isinstance(f, TTSStoppedFrame)]
    assert len(started) == 1 and len(stopped) == 1


class _FirstAudioProbe(FrameProcessor):
    """Notes how far the server's stream was when the first audio came out."""

    def __init__(self, server: LocalWavesServer) -> None:
        super().__init__()
        self._server = server
        self.at_first_audio: tuple[int, int, bool] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame) and self.at_first_audio is None:
            record = self._server.http_requests[-1]
            self.at_first_audio = (record.chunks_sent, record.chunks_total, record.finished)
        await self.push_frame(frame, direction)


async def test_first_audio_comes_out_before_the_stream_ends():
    # Events at real time: a two-second sentence streams for two seconds.
    behaviour = ServerBehaviour(chunk_interval_ms=20)
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    ) as server:
        from pipecat.pipeline.pipeline import Pipeline

        probe = _FirstAudioProbe(server)
        service = make_http_service(server)
        _, up = await run_test(
            Pipeline([service, probe]), frames_to_send=[TTSSpeakFrame("Seven tables remain.")]
        )
    assert errors(up) == []
    assert probe.at_first_audio is not None
    sent, total, finished = probe.at_first_audio
    assert not finished and sent < total / 2, probe.at_first_audio


async def test_one_connection_carries_every_request():
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True) as server:
        service = make_http_service(server)
        _, up = await run(service, [*llm_turn(REPLY), *llm_turn("Dogs are welcome.")])
    assert errors(up) == []
    peers = {r.peer for r in server.http_requests}
    assert len(server.http_requests) == 4 and len(peers) == 1, peers


async def test_ttfb_and_character_metrics():
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True) as server:
        service = make_http_service(server)
        down, _ = await run_test(
            service,
            frames_to_send=[TTSSpeakFrame("Parking is free.")],
            pipeline_params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
        )
    data = [d for f in down if isinstance(f, MetricsFrame) for d in f.data]
    # The worker reports a zero for every processor at start; then the reply's own.
    ttfb = [d.value for d in data if isinstance(d, TTFBMetricsData) and d.value > 0]
    usage = [d.value for d in data if isinstance(d, TTSUsageMetricsData)]
    assert len(ttfb) == 1
    assert usage == [len(sse_texts(server)[0])]


async def test_every_documented_setting_is_sent_and_nothing_else():
    settings = WavesHttpTTSService.Settings(
        voice="liam",
        model="lightning_v3.1_pro",
        speed=1.25,
        math_notation=True,
        number_pronunciation_language="hi",
        content_filter="reject",  # not documented for HTTP: not sent
    )
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True) as server:
        service = make_http_service(server, settings=settings)
        _, up = await run(service, [TTSSpeakFrame("Parking is free.")])
    assert errors(up) == []
    (request,) = server.http_requests
    assert request.body == {
        "text": "Parking is free.",
        "voice_id": "liam",
        "model": "lightning_v3.1_pro",
        "sample_rate": 16000,
        "language": "en",
        "output_format": "pcm",
        "speed": 1.25,
        "math_notation": True,
        "number_pronunciation_language": "hi",
    }
    assert request.headers["X-Source"] == "pipecat-waves"
