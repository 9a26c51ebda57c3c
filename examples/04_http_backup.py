"""Fail over from the live socket to Waves over HTTP: ``ServiceSwitcher`` with two Waves services.

    python examples/04_http_backup.py         # writes http_backup.wav; -v for every detail

``WavesTTSService`` (one WebSocket) is the primary; ``WavesHttpTTSService``
(one HTTP request per sentence, nothing shared with the socket) is the backup.
When the socket cannot be kept, for ``failover_after_s``, the primary reports
one error that leaves it unusable and Pipecat's ``ServiceSwitcherStrategyFailover``
moves to the backup, which speaks the next lines.

With ``WAVES_API_KEY`` set both talk to Smallest.ai, and the primary speaks
every line (the socket stays up). Without it the example starts two local
servers, one per service, and stops the primary's after the first line, so
the failover happens (the offline voice needs ``pip install "pipecat-waves[voice]"``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

from loguru import logger
from pipecat.frames.frames import EndFrame, Frame, TTSAudioRawFrame, TTSSpeakFrame, TTSStoppedFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.service_switcher import ServiceSwitcher, ServiceSwitcherStrategyFailover
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from pipecat_waves import WavesHttpTTSService, WavesTTSService
from pipecat_waves.server import LocalWavesServer

SAMPLE_RATE = 24000
LINES = [
    "Hello, this is the live socket speaking.",
    "The socket is gone, so the HTTP backup takes over.",
    "Every line still reaches the caller.",
]
#: How long the socket may be unreachable before the switch (the default is 2 s).
FAILOVER_AFTER_S = 0.5


class AudioRecorder(FrameProcessor):
    """Keeps the bot's audio, where a real app would have an output transport."""

    def __init__(self) -> None:
        super().__init__()
        self.audio = bytearray()
        self.lines_done = 0
        self.line_done = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio += frame.audio
        elif isinstance(frame, TTSStoppedFrame):
            self.lines_done += 1
            self.line_done.set()
        await self.push_frame(frame, direction)


async def speak_with_backup(
    output: Path,
    *,
    api_key: str,
    live_base_url: str = "wss://api.smallest.ai",
    http_base_url: str = "https://api.smallest.ai",
    outage: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """Speak the lines into ``output``; return which service spoke each one.

    Args:
        output: WAV file to write.
        api_key: The key both services use.
        live_base_url: Origin of the live socket (the primary).
        http_base_url: Origin of the HTTP endpoint (the backup).
        outage: Called after the first line to take the socket's server away
            (the local demo); None for no outage.
    """
    primary = WavesTTSService(
        api_key=api_key, base_url=live_base_url, failover_after_s=FAILOVER_AFTER_S
    )
    backup = WavesHttpTTSService(api_key=api_key, base_url=http_base_url)
    switcher = ServiceSwitcher(
        services=[primary, backup], strategy_type=ServiceSwitcherStrategyFailover
    )
    spoke: list[str] = []
    unusable = asyncio.Event()
    for service, name in ((primary, "live socket"), (backup, "HTTP backup")):
        service.add_event_handler(
            "on_tts_request", lambda _s, _ctx, _text, name=name: spoke.append(name)
        )

    @primary.event_handler("on_usable_changed")
    async def on_usable_changed(_service, is_usable):
        if not is_usable:
            logger.info("the live socket is unusable: the backup speaks from now on")
            unusable.set()

    recorder = AudioRecorder()
    worker = PipelineWorker(
        Pipeline([switcher, recorder]), params=PipelineParams(audio_out_sample_rate=SAMPLE_RATE)
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)

    async def script() -> None:
        for i, line in enumerate(LINES):
            recorder.line_done.clear()
            await worker.queue_frame(TTSSpeakFrame(line))
            await recorder.line_done.wait()
            if i == 0 and outage is not None:
                await outage()
                # A line asked for while the socket is down would wait for it
                # (or be dropped with the one error); speak once the switch is made.
                await unusable.wait()
        await worker.queue_frame(EndFrame())

    await asyncio.gather(runner.run(), script())
    with wave.open(str(output), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(bytes(recorder.audio))
    return spoke


def quiet_logs(*, verbose: bool) -> None:
    """What happens once (INFO) by default, every frame's detail with ``-v``."""
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if verbose else "INFO")
    if not verbose:
        logger.disable("pipecat_waves.server")


async def main() -> None:
    """Speak through Waves, or through two local servers (one taken down) without a key."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="http_backup.wav", help="WAV file to write")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every detail")
    args = parser.parse_args()
    quiet_logs(verbose=args.verbose)
    output = Path(args.output)
    api_key = os.environ.get("WAVES_API_KEY")
    if api_key:
        spoke = await speak_with_backup(output, api_key=api_key)
    else:
        print("No WAVES_API_KEY: two local servers; the socket's goes away after line 1.")
        async with (
            LocalWavesServer(api_key="local-key") as live,
            LocalWavesServer(api_key="local-key") as http,
        ):
            spoke = await speak_with_backup(
                output,
                api_key="local-key",
                live_base_url=live.ws_base_url,
                http_base_url=http.base_url,
                outage=live.stop,
            )
    for line, who in zip(LINES, spoke, strict=False):
        print(f"{who:>12}: {line}")
    print(f"Wrote {output}")


if __name__ == "__main__":
    asyncio.run(main())
