"""A voice agent you can talk to: your voice → STT → LLM → Waves TTS → your ears.

Speak, and the bot answers in a Waves voice; talk over it and it stops at once
(the reply is cancelled on the open socket, no reconnect) and listens.

It runs under Pipecat's development runner (``pipecat.runner``), like Pipecat's
own examples: by default a local WebRTC page in the browser, no PyAudio and no
system audio packages needed. Install, next to pipecat-waves (see the README)::

    pip install "pipecat-ai[runner,webrtc,silero,openai]"
    export WAVES_API_KEY=...   # Smallest.ai console
    export OPENAI_API_KEY=...  # speech-to-text and the LLM
    python examples/01_voice_agent.py            # then open http://localhost:7860

Other transports, as the runner offers them::

    pip install "pipecat-ai[daily]"      # a Daily room
    python examples/01_voice_agent.py -t daily
    pip install "pipecat-ai[websocket]"  # a phone call through Twilio, 8 kHz audio
    python examples/01_voice_agent.py -t twilio -x your-tunnel.ngrok.io

Logs: what happens once by default; ``-v`` for everything.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from loguru import logger
from pipecat.audio.vad.vad_analyzer import VADAnalyzer
from pipecat.frames.frames import LLMRunFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.runner.types import RunnerArguments, WebSocketRunnerArguments
from pipecat.transports.base_transport import BaseTransport, TransportParams

from pipecat_waves import WavesTTSService

SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your replies are spoken aloud, so keep them "
    "to one or two short sentences, with no lists, markdown or emoji."
)

#: Output rate for browsers (WebRTC, Daily): a rate Waves produces as is.
WEB_RATE = 24000
#: Phone calls carry 8 kHz audio; Waves produces it directly.
TELEPHONY_RATE = 8000


def _daily_params() -> TransportParams:
    from pipecat.transports.daily.transport import DailyParams

    return DailyParams(audio_in_enabled=True, audio_out_enabled=True)


def _telephony_params() -> TransportParams:
    from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams

    # The runner fills in the Twilio serializer and the WAV framing.
    return FastAPIWebsocketParams(audio_in_enabled=True, audio_out_enabled=True)


#: What each transport of the runner needs; imported only when chosen.
TRANSPORT_PARAMS = {
    "webrtc": lambda: TransportParams(audio_in_enabled=True, audio_out_enabled=True),
    "daily": _daily_params,
    "twilio": _telephony_params,
}


def sample_rates(runner_args: RunnerArguments) -> tuple[int, int]:
    """(input, output) rates for the session: 8 kHz on a phone call, else 16/24 kHz."""
    if isinstance(runner_args, WebSocketRunnerArguments):
        return TELEPHONY_RATE, TELEPHONY_RATE
    return 16000, WEB_RATE


def build_pipeline(
    transport: BaseTransport,
    stt: FrameProcessor,
    llm: FrameProcessor,
    tts: FrameProcessor,
    *,
    vad_analyzer: VADAnalyzer | None = None,
    rates: tuple[int, int] = (16000, WEB_RATE),
) -> tuple[PipelineWorker, LLMContext]:
    """Wire a voice agent: transport in → STT → user turn → LLM → TTS → transport out.

    Args:
        transport: Carries the user's audio in and the bot's audio out.
        stt: Speech-to-text.
        llm: The language model.
        tts: Text-to-speech (``WavesTTSService``).
        vad_analyzer: Detects when the user speaks; Silero when None.
        rates: Input and output sample rates of the pipeline. ``WavesTTSService``
            speaks at the output rate (any rate: one Waves does not produce is
            resampled as it streams).

    Returns:
        The pipeline worker to run, and the conversation context it fills.
    """
    if vad_analyzer is None:
        from pipecat.audio.vad.silero import SileroVADAnalyzer

        vad_analyzer = SileroVADAnalyzer()
    context = LLMContext(messages=[{"role": "system", "content": SYSTEM_PROMPT}])
    # The user aggregator runs the VAD: when the user starts speaking while the
    # bot talks, it broadcasts an interruption, and WavesTTSService cancels the
    # reply on the server without reconnecting.
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=vad_analyzer)
    )
    pipeline = Pipeline(
        [
            transport.input(),  # the user's voice
            stt,
            aggregators.user(),  # user turns into the context
            llm,
            tts,  # Waves: persistent sockets, one context per reply
            transport.output(),  # the bot's voice
            aggregators.assistant(),  # what the bot actually said, into the context
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=rates[0],
            audio_out_sample_rate=rates[1],
            enable_metrics=True,  # logs TTFB of every service
        ),
    )
    return worker, context


def _log_level(runner_args: RunnerArguments) -> None:
    """INFO unless ``-v``: the runner's default shows every frame's detail."""
    verbose = getattr(runner_args.cli_args, "verbose", 0) if runner_args.cli_args else 0
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if verbose else "INFO")


async def bot(runner_args: RunnerArguments) -> None:
    """The runner's entry point: one call per session (a browser tab, a room, a call)."""
    _log_level(runner_args)
    missing = [k for k in ("WAVES_API_KEY", "OPENAI_API_KEY") if not os.environ.get(k)]
    if missing:
        logger.error(f"Set {' and '.join(missing)} first (see the top of this file).")
        return

    # Imported here: the runner's extras are only needed to run, not to import this file.
    from pipecat.runner.utils import create_transport
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.services.openai.stt import OpenAISTTService
    from pipecat.workers.runner import WorkerRunner

    transport = await create_transport(runner_args, TRANSPORT_PARAMS)
    stt = OpenAISTTService(api_key=os.environ["OPENAI_API_KEY"])
    llm = OpenAILLMService(
        api_key=os.environ["OPENAI_API_KEY"],
        settings=OpenAILLMService.Settings(model="gpt-4.1-mini"),
    )
    tts = WavesTTSService(
        api_key=os.environ["WAVES_API_KEY"],
        settings=WavesTTSService.Settings(voice="avery"),
    )
    worker, _context = build_pipeline(transport, stt, llm, tts, rates=sample_rates(runner_args))

    @transport.event_handler("on_client_connected")
    async def on_client_connected(_transport: Any, _client: Any) -> None:
        # Let the bot speak first: run the LLM on the system prompt alone.
        await worker.queue_frame(LLMRunFrame())

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport: Any, _client: Any) -> None:
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=runner_args.handle_sigint)
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    try:
        from pipecat.runner.run import main
    except ImportError as e:
        sys.exit(f'{e}. Pipecat\'s runner needs: pip install "pipecat-ai[runner,webrtc]"')
    main()
