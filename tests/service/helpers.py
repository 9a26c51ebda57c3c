"""Driving WavesTTSService in real Pipecat pipelines against the local server."""

from __future__ import annotations

from collections.abc import Sequence

from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.tests.utils import SleepFrame, run_test

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.tones import transcribe_tones, words_of

API_KEY = "sk-test-9f8e7d6c5b4a"
RATE = 16000


def make_service(server: LocalWavesServer, **kwargs) -> WavesTTSService:
    """A service pointed at ``server``, with test-friendly timing."""
    kwargs.setdefault("sample_rate", RATE)
    return WavesTTSService(api_key=API_KEY, base_url=server.ws_base_url, **kwargs)


def llm_turn(text: str, token_gap_s: float = 0.0) -> list[Frame]:
    """Frames an LLM produces for ``text``: start, one frame per word, end."""
    tokens = [w + " " for w in text.split(" ")]
    tokens[-1] = tokens[-1].rstrip()
    frames: list[Frame] = [LLMFullResponseStartFrame()]
    for token in tokens:
        frames.append(LLMTextFrame(token))
        if token_gap_s:
            frames.append(SleepFrame(sleep=token_gap_s))
    frames.append(LLMFullResponseEndFrame())
    return frames


async def run(service: WavesTTSService, frames: Sequence[Frame]):
    """Run ``frames`` through a pipeline holding ``service``; return (down, up) frames."""
    down, up = await run_test(service, frames_to_send=list(frames))
    return list(down), list(up)


def audio_of(frames: Sequence[Frame], context_id: str | None = None) -> bytes:
    """Concatenated audio of ``frames`` (of one context if given)."""
    return b"".join(
        f.audio
        for f in frames
        if isinstance(f, TTSAudioRawFrame) and (context_id is None or f.context_id == context_id)
    )


def contexts_in_order(frames: Sequence[Frame]) -> list[str]:
    """Context ids of the audio frames, in order of first appearance."""
    seen: list[str] = []
    for f in frames:
        if isinstance(f, TTSAudioRawFrame) and f.context_id not in seen:
            seen.append(f.context_id)
    return seen


def heard(frames: Sequence[Frame], vocabulary: str, context_id: str | None = None) -> list[str]:
    """Words the listener hears in ``frames``, read back from the tone audio."""
    return transcribe_tones(audio_of(frames, context_id), RATE, words_of(vocabulary))


def split_at_interruption(frames: Sequence[Frame]) -> tuple[list[Frame], list[Frame]]:
    """Frames before and after the first InterruptionFrame."""
    for i, f in enumerate(frames):
        if isinstance(f, InterruptionFrame):
            return list(frames[:i]), list(frames[i + 1 :])
    raise AssertionError("no InterruptionFrame came out of the service")


def errors(frames: Sequence[Frame]) -> list[ErrorFrame]:
    """Error frames among ``frames``."""
    return [f for f in frames if isinstance(f, ErrorFrame)]
