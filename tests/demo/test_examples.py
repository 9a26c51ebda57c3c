"""Every example runs: 02 and 03 against the local server, 01 with stand-ins for its extras."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import wave

import pytest
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMRunFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.types import SmallWebRTCRunnerArguments, WebSocketRunnerArguments
from pipecat.transports.base_transport import BaseTransport
from pipecat.workers.runner import WorkerRunner

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer, ToneBackend
from pipecat_waves.server.tones import transcribe_tones, words_of
from tests.demo.conftest import EXAMPLES, load_example

KEY = "example-key"


async def test_02_greeting_speaks_into_a_wav(tmp_path):
    example = load_example("02_greeting")
    out = tmp_path / "greeting.wav"
    async with LocalWavesServer(api_key=KEY, backend=ToneBackend(), record=True) as server:
        seconds = await example.greet(out, api_key=KEY, base_url=server.ws_base_url)
    with wave.open(str(out), "rb") as wav:
        rate = wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    assert rate == example.SAMPLE_RATE and seconds > 0.5
    assert transcribe_tones(pcm, rate, words_of(example.GREETING)) == example.GREETING.split()


async def test_03_switches_voice_per_line_on_one_socket(tmp_path):
    example = load_example("03_switch_voice")
    out = tmp_path / "voices.wav"
    async with LocalWavesServer(api_key=KEY, backend=ToneBackend(), record=True) as server:
        seconds = await example.switch_voices(out, api_key=KEY, base_url=server.ws_base_url)
    # No connection per line: the lines share a small pool of warm sockets
    # (one carries the line playing, another prepares the next).
    assert len(server.connections) <= 4
    sent = [m for c in server.connections for m in c.received if m.get("text")]
    assert sorted((m["voice_id"], m["text"].strip()) for m in sent) == sorted(example.LINES)
    with wave.open(str(out), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    all_text = " ".join(line for _, line in example.LINES)
    assert transcribe_tones(pcm, example.SAMPLE_RATE, words_of(all_text)) == all_text.split()
    assert seconds > 1.0


class _Passthrough(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class _Speaker(_Passthrough):
    """Output transport stand-in: keeps the audio."""

    def __init__(self) -> None:
        super().__init__()
        self.audio = bytearray()
        self.spoken = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, TTSAudioRawFrame):
            self.audio += frame.audio
        elif isinstance(frame, TTSStoppedFrame):
            self.spoken.set()
        await super().process_frame(frame, direction)


class _Transport(BaseTransport):
    def __init__(self) -> None:
        super().__init__()
        self._in = _Passthrough()
        self._out = _Speaker()

    def input(self) -> FrameProcessor:
        return self._in

    def output(self) -> FrameProcessor:
        return self._out


class _LLM(FrameProcessor):
    """Answers every context with a fixed reply, as a streaming LLM would."""

    REPLY = "Hello! How can I help you today?"

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self.push_frame(LLMFullResponseStartFrame())
            for word in self.REPLY.split(" "):
                await self.push_frame(LLMTextFrame(word + " "))
            await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)


def test_01_speaks_8_khz_on_a_phone_call_and_24_khz_in_the_browser():
    example = load_example("01_voice_agent")
    call = WebSocketRunnerArguments(websocket=None)
    browser = SmallWebRTCRunnerArguments(webrtc_connection=None)
    assert example.sample_rates(call) == (8000, 8000)
    assert example.sample_rates(browser) == (16000, 24000)
    assert set(example.TRANSPORT_PARAMS) == {"webrtc", "daily", "twilio"}


@pytest.mark.parametrize("rates", [(16000, 24000), (8000, 8000)], ids=["browser", "twilio"])
async def test_01_voice_agent_pipeline_speaks_the_llm_reply_and_records_it(rates):
    example = load_example("01_voice_agent")
    transport = _Transport()
    async with LocalWavesServer(api_key=KEY, backend=ToneBackend(), record=True) as server:
        tts = WavesTTSService(api_key=KEY, base_url=server.ws_base_url)
        worker, context = example.build_pipeline(
            transport, _Passthrough(), _LLM(), tts, rates=rates
        )
        speaker = transport._out
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)

        @worker.event_handler("on_pipeline_started")
        async def _kick(_worker, _frame):
            await worker.queue_frame(LLMRunFrame())

        async def end_when_spoken() -> None:
            await speaker.spoken.wait()
            # A graceful end lets the assistant aggregator store the reply.
            await worker.queue_frame(EndFrame())

        await asyncio.wait_for(asyncio.gather(runner.run(), end_when_spoken()), 20)
        asked = {m["sample_rate"] for c in server.connections for m in c.received if "text" in m}
    assert asked == {rates[1]}  # a rate Waves produces as is: no resampling
    heard = transcribe_tones(bytes(speaker.audio), rates[1], words_of(_LLM.REPLY))
    assert heard == _LLM.REPLY.split()
    assistant = [m for m in context.get_messages() if m.get("role") == "assistant"]
    assert _LLM.REPLY.strip() in str(assistant[0]["content"]).strip()
    assert context.get_messages()[0]["content"] == example.SYSTEM_PROMPT


@pytest.mark.speech
@pytest.mark.parametrize("name", ["02_greeting", "03_switch_voice"])
def test_examples_are_quiet_by_default_and_detailed_with_v(name, tmp_path, no_api_key):
    pytest.importorskip("piper.voice", reason="the examples' offline voice needs the voice extra")
    script = str(EXAMPLES / f"{name}.py")

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, script, str(tmp_path / "out.wav"), *flags],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    quiet, verbose = run(), run("-v")
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr
    assert "Wrote" in quiet.stdout
    levels = [line.split("|")[1].strip() for line in quiet.stderr.splitlines() if "|" in line]
    assert levels and set(levels) == {"INFO"}, quiet.stderr  # what happens once, no detail
    assert len(levels) <= 5, quiet.stderr
    assert "live connection" not in quiet.stderr  # the stand-in server keeps to itself
    assert verbose.stderr.count("| DEBUG") > 20
