"""A voice agent you can talk to: microphone → STT → LLM → Waves TTS → speakers.

Speak, and the bot answers in a Waves voice; talk over it and it stops at once
(the reply is cancelled on the open socket, no reconnect) and listens.

Needs your own keys and Pipecat's local-audio extra:

    pip install pipecat-waves "pipecat-ai[local]"
    export WAVES_API_KEY=...   # Smallest.ai console
    export OPENAI_API_KEY=...  # speech-to-text and the LLM
    python examples/01_voice_agent.py

Use headphones, or the bot will hear itself and interrupt its own replies.
"""

from __future__ import annotations

import asyncio
import os
import sys

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
from pipecat.transports.base_transport import BaseTransport

from pipecat_waves import WavesTTSService

SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your replies are spoken aloud, so keep them "
    "to one or two short sentences, with no lists, markdown or emoji."
)


def build_pipeline(
    transport: BaseTransport,
    stt: FrameProcessor,
    llm: FrameProcessor,
    tts: FrameProcessor,
    *,
    vad_analyzer: VADAnalyzer | None = None,
) -> tuple[PipelineWorker, LLMContext]:
    """Wire a voice agent: transport in → STT → user turn → LLM → TTS → transport out.

    Args:
        transport: Carries the user's audio in and the bot's audio out.
        stt: Speech-to-text.
        llm: The language model.
        tts: Text-to-speech (``WavesTTSService``).
        vad_analyzer: Detects when the user speaks; Silero when None.

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
            transport.input(),  # microphone
            stt,
            aggregators.user(),  # user turns into the context
            llm,
            tts,  # Waves: one persistent socket, one context per reply
            transport.output(),  # speakers
            aggregators.assistant(),  # what the bot actually said, into the context
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=16000,
            audio_out_sample_rate=24000,  # one of the rates Waves produces
            enable_metrics=True,  # logs TTFB of every service
        ),
    )
    return worker, context


async def main() -> None:
    """Run the agent on this computer's microphone and speakers."""
    missing = [k for k in ("WAVES_API_KEY", "OPENAI_API_KEY") if not os.environ.get(k)]
    if missing:
        sys.exit(f"Set {' and '.join(missing)} first (see the top of this file).")

    # Optional extras are imported here, so the module imports without them.
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.services.openai.stt import OpenAISTTService
    from pipecat.transports.local.audio import LocalAudioTransport, LocalAudioTransportParams
    from pipecat.workers.runner import WorkerRunner

    transport = LocalAudioTransport(
        LocalAudioTransportParams(audio_in_enabled=True, audio_out_enabled=True)
    )
    stt = OpenAISTTService(api_key=os.environ["OPENAI_API_KEY"])
    llm = OpenAILLMService(
        api_key=os.environ["OPENAI_API_KEY"],
        settings=OpenAILLMService.Settings(model="gpt-4.1-mini"),
    )
    tts = WavesTTSService(
        api_key=os.environ["WAVES_API_KEY"],
        settings=WavesTTSService.Settings(voice="avery"),
    )
    worker, _context = build_pipeline(transport, stt, llm, tts)

    # Let the bot speak first: run the LLM on the system prompt alone.
    await worker.queue_frame(LLMRunFrame())
    runner = WorkerRunner()
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    asyncio.run(main())
