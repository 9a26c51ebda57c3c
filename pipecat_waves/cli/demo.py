"""A short spoken conversation through ``WavesTTSService``, written to a WAV file.

Run it with ``pipecat-waves demo`` (or ``python -m pipecat_waves.cli.demo``). A
scripted LLM streams four replies token by token, with an LLM's timing, into a
Pipecat pipeline holding :class:`~pipecat_waves.WavesTTSService`; a speaker
stand-in plays the audio at real pace and records it. In the third turn the
user talks over the bot: an ``InterruptionFrame`` cuts the reply 1.2 seconds
into its audio, and the next turn answers at once. The script and the
stand-ins are in :mod:`pipecat_waves.cli.demo_conversation`; this module runs
them, and writes the WAV and the printed report.

With ``WAVES_API_KEY`` (or ``SMALLEST_API_KEY``) set, the voice is Smallest.ai's;
without one the demo starts the embedded local server with an offline Piper
voice, so it runs on a fresh install with no network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pipecat.frames.frames import EndFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.workers.runner import WorkerRunner

from pipecat_waves.cli.commands import (
    CliError,
    Endpoint,
    SayRequest,
    api_key_from,
    command_logs,
    open_endpoint,
    output_format,
    synthesize,
    write_audio,
)
from pipecat_waves.cli.demo_conversation import (
    SAMPLE_RATE,
    SCRIPT,
    TURN_GAP_S,
    Conversation,
    ScriptedLLM,
    Speaker,
    TurnResult,
)
from pipecat_waves.cli.demo_options import add_arguments
from pipecat_waves.cli.interrupt import EXIT_INTERRUPTED, run_interruptible
from pipecat_waves.protocol import errors as pe
from pipecat_waves.service.websocket import WavesTTSService

#: How long the user has been talking when the bot stops: the VAD's reaction time,
#: so in the WAV the barge-in is heard as two voices overlapping briefly.
BARGE_IN_LEAD_S = 0.3
#: The user's voice in the WAV (right channel); any voice id the server knows.
USER_VOICE = "liam"
#: After Ctrl-C, longest wait for the pipeline to stop (the whole exit takes under a second).
STOP_TIMEOUT_S = 0.25


@dataclass
class DemoReport:
    """The outcome of a demo run."""

    turns: list[TurnResult]
    where: str
    local: bool
    output: Path
    wav_seconds: float


def lay_out(turns: Sequence[TurnResult]) -> float:
    """Place every line on the WAV's timeline; return its length in seconds.

    The user speaks, a pause, the bot answers. After an interrupted reply the
    user's next line starts :data:`BARGE_IN_LEAD_S` before the bot stops, as it
    did in the pipeline (the bot stops because the user is talking).
    """
    t = 0.0
    end = 0.0
    for turn in turns:
        turn.user_offset_s = t
        user_s = len(turn.user_audio) / (2 * SAMPLE_RATE)
        turn.offset_s = t + user_s + (TURN_GAP_S if user_s else 0.0)
        bot_end = turn.offset_s + turn.audio_s
        end = max(bot_end, t + user_s)
        t = max(bot_end - BARGE_IN_LEAD_S, 0.0) if turn.interrupted else bot_end + TURN_GAP_S
    return end


def write_conversation(path: Path, turns: Sequence[TurnResult]) -> float:
    """Write the conversation as stereo: the bot on the left, the user on the right.

    Sets each turn's offsets (see :func:`lay_out`) and returns the file's
    length in seconds.
    """
    seconds = lay_out(turns)
    stereo = np.zeros((round(seconds * SAMPLE_RATE) + 1, 2), dtype=np.int16)
    for turn in turns:
        for channel, pcm, offset in (
            (0, turn.audio, turn.offset_s),
            (1, turn.user_audio, turn.user_offset_s),
        ):
            samples = np.frombuffer(bytes(pcm), dtype="<i2")
            first = round(offset * SAMPLE_RATE)
            stereo[first : first + len(samples), channel] = samples
    write_audio(path, stereo.tobytes(), SAMPLE_RATE, channels=2)
    return len(stereo) / SAMPLE_RATE


async def speak_user_lines(endpoint: Endpoint, turns: Sequence[TurnResult], output: Path) -> None:
    """Speak the user's lines in another voice, so the WAV has both sides."""
    for turn in turns:
        request = SayRequest(
            text=turn.script.user, output=output, voice=USER_VOICE, sample_rate=SAMPLE_RATE
        )
        turn.user_audio = await synthesize(endpoint, request)


def format_timeline(turns: Sequence[TurnResult]) -> str:
    """One line per utterance: where it is in the WAV, who speaks, what is said."""
    lines = []
    for turn in turns:
        spoken = (
            (
                turn.user_offset_s,
                len(turn.user_audio) / (2 * SAMPLE_RATE),
                "user",
                turn.script.user,
            ),
            (turn.offset_s, turn.audio_s, "bot", turn.script.bot),
        )
        for start, length, who, text in spoken:
            if length <= 0:
                continue
            shown = text if len(text) <= 48 else text[:47] + "…"
            cut = "  (cut: the user talks over it)" if who == "bot" and turn.interrupted else ""
            lines.append(f"  {start:6.2f}-{start + length:6.2f} s  {who:<4}  {shown}{cut}")
    return "\n".join(lines)


async def run_demo(
    output: Path,
    *,
    api_key: str | None,
    base_url: str | None = None,
    voice: str = "avery",
    backend: str = "piper",
) -> DemoReport:
    """Run the scripted conversation and write it to ``output``.

    Raises:
        CliError: The conversation could not be completed; one line says why.
    """
    output_format(output)
    async with open_endpoint(api_key, base_url, backend) as endpoint:
        print(f"Speaking through {endpoint.describe()}", end="")
        offline = "offline Piper voice" if backend == "piper" else "test tones"
        print(f" (no WAVES_API_KEY set: {offline})." if endpoint.local else ".")
        print("", flush=True)
        conversation = Conversation(SCRIPT)
        tts = WavesTTSService(
            api_key=endpoint.api_key or "",
            base_url=endpoint.ws_base,
            sample_rate=SAMPLE_RATE,
            settings=WavesTTSService.Settings(voice=voice),
        )
        pipeline = Pipeline([ScriptedLLM(conversation), tts, Speaker(conversation)])
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(audio_out_sample_rate=SAMPLE_RATE),
            enable_rtvi=False,
        )
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        run = asyncio.create_task(runner.run())
        finished = asyncio.create_task(conversation.done.wait())
        try:
            await asyncio.wait({run, finished}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Ctrl-C: stop the pipeline now (closing its sockets), not after the script.
            finished.cancel()
            await _stop_now(worker, run)
            raise
        if not run.done():
            if conversation.failure is None:
                await worker.queue_frame(EndFrame())
            else:
                await worker.cancel()
        await run
        finished.cancel()
        where = endpoint.describe()
        if conversation.failure is None and conversation.done.is_set():
            await speak_user_lines(endpoint, conversation.turns, output)
    if conversation.failure is not None:
        raise CliError(_with_fix(conversation, voice))
    if not conversation.done.is_set():
        raise CliError("the pipeline stopped before the conversation ended; run with -v to see why")
    seconds = write_conversation(output, conversation.turns)
    return DemoReport(conversation.turns, where, endpoint.local, output, seconds)


async def _stop_now(worker: PipelineWorker, run: asyncio.Task[Any]) -> None:
    """Cancel the pipeline and wait briefly for it; the caller is being cancelled."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(worker.cancel(), STOP_TIMEOUT_S)
    if not run.done():
        run.cancel()
    await asyncio.wait({run}, timeout=STOP_TIMEOUT_S)


def _with_fix(conversation: Conversation, voice: str) -> str:
    """The pipeline's error, with the fix said in this command's own terms."""
    failure = conversation.failure or ""
    if conversation.failed_for_key:
        return pe.cli_key_fix(failure.split(". ")[0])
    if pe.VOICE_FIX in failure:
        return pe.cli_unknown_voice(voice, flag=True)
    return failure


def format_table(turns: Sequence[TurnResult]) -> str:
    """The per-turn table: where it starts in the WAV, TTFB, audio, words, interrupted."""
    header = ("turn", "at (s)", "TTFB (ms)", "audio (s)", "words sent", "interrupted")
    rows = [header]
    for t in turns:
        ttfb = "-" if t.ttfb_ms is None else f"{t.ttfb_ms:.0f}"
        rows.append(
            (
                str(t.number),
                f"{t.offset_s:.2f}",
                ttfb,
                f"{t.audio_s:.2f}",
                str(t.words_sent),
                "yes" if t.interrupted else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo for parsed ``args``; print the transcript and the table.

    Returns:
        The process exit code.
    """
    output = Path(args.output)
    try:
        with command_logs(args.verbose):
            report = run_interruptible(
                run_demo(
                    output,
                    api_key=api_key_from(args.api_key),
                    base_url=args.base_url,
                    voice=args.voice,
                    backend=args.backend,
                )
            )
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    print()
    print(format_table(report.turns))
    print()
    for t in report.turns:
        if t.interrupted:
            stale_ms = 1000 * t.stale_bytes / (2 * SAMPLE_RATE)
            print(
                f"Turn {t.number}: the user talked over the bot {t.audio_s:.2f} s in; "
                f"{stale_ms:.0f} ms of the cut reply arrived afterwards (none should), "
                "and the next turn answered straight away."
            )
    print(
        "TTFB: from the reply's first LLM token to its first audio "
        "(includes waiting for the LLM to write the first clause)."
    )
    print()
    print(f"Timeline of {output} (left channel: bot, right channel: user):")
    print(format_timeline(report.turns))
    print(f"Wrote {report.wav_seconds:.1f} s of stereo audio to {output}.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo from the command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(
        prog="pipecat-waves demo",
        description="Speak a short scripted conversation with one barge-in into a WAV file.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
