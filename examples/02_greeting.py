"""Say hello: a ``TTSSpeakFrame`` through ``WavesTTSService`` into a WAV file.

    python examples/02_greeting.py            # writes greeting.wav; -v for every detail

With ``WAVES_API_KEY`` set the voice is Smallest.ai's; without it the example
starts the local Waves-compatible server with its offline voice (needs
``pip install "pipecat-waves[voice]"``), so it runs with no account at all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import wave
from pathlib import Path

from loguru import logger
from pipecat.frames.frames import EndFrame, Frame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer

SAMPLE_RATE = 24000
GREETING = "Hello, and welcome! I am speaking through Smallest dot A I Waves."


class AudioRecorder(FrameProcessor):
    """Keeps the bot's audio, where a real app would have an output transport."""

    def __init__(self) -> None:
        super().__init__()
        self.audio = bytearray()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio += frame.audio
        await self.push_frame(frame, direction)


async def greet(output: Path, *, api_key: str, base_url: str = "wss://api.smallest.ai") -> float:
    """Speak the greeting into ``output``; return its length in seconds."""
    tts = WavesTTSService(
        api_key=api_key,
        base_url=base_url,
        sample_rate=SAMPLE_RATE,
        settings=WavesTTSService.Settings(voice="sophia"),
    )
    recorder = AudioRecorder()
    worker = PipelineWorker(
        Pipeline([tts, recorder]), params=PipelineParams(audio_out_sample_rate=SAMPLE_RATE)
    )
    # Speak, then end: EndFrame waits until the greeting's audio is through.
    await worker.queue_frames([TTSSpeakFrame(GREETING), EndFrame()])
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()

    with wave.open(str(output), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(bytes(recorder.audio))
    return len(recorder.audio) / (2 * SAMPLE_RATE)


def quiet_logs(*, verbose: bool) -> None:
    """What happens once (INFO) by default, every frame's detail with ``-v``.

    The local server stands in for the real API here, so its own log is
    only shown with ``-v``.
    """
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if verbose else "INFO")
    if not verbose:
        logger.disable("pipecat_waves.server")


async def main() -> None:
    """Greet through the Waves API, or through the local server without a key."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="greeting.wav", help="WAV file to write")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every detail")
    args = parser.parse_args()
    quiet_logs(verbose=args.verbose)
    output = Path(args.output)
    api_key = os.environ.get("WAVES_API_KEY")
    if api_key:
        seconds = await greet(output, api_key=api_key)
    else:
        print("No WAVES_API_KEY: using the local server's offline voice.")
        async with LocalWavesServer(api_key="local-key") as server:
            seconds = await greet(output, api_key="local-key", base_url=server.ws_base_url)
    print(f"Wrote {seconds:.1f} s of speech to {output}")


if __name__ == "__main__":
    asyncio.run(main())
