"""First token to first audio on LLM token streams, and the audio gap at the first seam.

Both services side by side in one run, against the same local server (tone
backend, in a child process) with a simulated TTFB: an LLM streams a reply at a
fixed pace per token; we note when its first token enters the pipeline and
when each audio frame leaves the TTS service. From the frames:

* **first audio**: first token in → first audio frame out;
* **worst gap**: the audio frames are played out at real time from the first
  one; the longest the player starves before the reply's last frame. With the
  first clause sent early, that is the seam between the clause and the rest.

Run: ``python benchmarks/bench_first_audio.py`` (``--quick`` for one run per cell).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipecat.frames.frames import (
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    OURS,
    SERVICES,
    THEIRS,
    BenchError,
    ServiceFactory,
    Session,
    expected_reply_audio_s,
    finish,
    in_turn,
    serve,
    settings_of,
)
from pipecat_waves.server import ServerBehaviour

RATE = 24000

#: First sentences of several lengths; each reply goes on with a second sentence.
FIRST_SENTENCES = {
    "short (8 words)": "Hello there, thanks for calling the support line.",
    "medium (15 words)": (
        "Sure, I can check the opening hours of the Riverside branch for you right now."
    ),
    "long (26 words)": (
        "Well, after looking through everything you sent over this morning, I think the best "
        "option is the family plan with two extra lines and unlimited data."
    ),
}
SECOND_SENTENCE = "Is there anything else I can help with today?"
TOKEN_PACES_MS = (15, 30, 60)
SERVER = ServerBehaviour(handshake_delay_ms=100, ttfb_ms=150, chunk_ms=100, chunk_interval_ms=50)


@dataclass
class Cell:
    """One service on one (sentence, pace) pair, over several runs."""

    first_audio_ms: list[float] = field(default_factory=list)
    worst_gap_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def token_stream(text: str, pace_s: float) -> list[Frame | float]:
    """An LLM reply: one frame per word, ``pace_s`` apart (a float is a pause)."""
    words = text.split(" ")
    tokens = [w + " " for w in words[:-1]] + [words[-1]]
    frames: list[Frame | float] = [LLMFullResponseStartFrame()]
    for token in tokens:
        frames += [LLMTextFrame(token), pace_s]
    frames.append(LLMFullResponseEndFrame())
    return frames


def playback_gaps(frames: list[tuple[float, int]]) -> float:
    """Longest starvation (s) of a real-time player fed ``(time out, bytes)`` frames."""
    clock: float | None = None
    worst = 0.0
    for t, n_bytes in frames:
        if clock is None:
            clock = t
        start = max(clock, t)
        worst = max(worst, start - clock)
        clock = start + n_bytes / (2 * RATE)
    return worst


async def one_run(
    factory: ServiceFactory, url: str, text: str, pace_s: float
) -> tuple[float, float]:
    """First audio (ms) and worst playback gap (ms) of one reply."""
    session = Session(factory(url, RATE), RATE)
    await session.start()
    try:
        await asyncio.sleep(0.4)  # both services have their socket open
        stream = token_stream(text, pace_s)
        expected_s = expected_reply_audio_s(text, RATE)
        await session.send(stream)

        def done() -> bool:
            return session.out.audio_bytes >= 0.95 * expected_s * 2 * RATE

        if not await session.out.wait_until(done, 20):
            raise BenchError("the reply's audio did not all come out within 20 s")
    finally:
        await finish(session)
    first_token = next(s.t for s in session.inp.frames if isinstance(s.frame, LLMTextFrame))
    audio = [
        (s.t, len(s.frame.audio))
        for s in session.out.frames
        if isinstance(s.frame, TTSAudioRawFrame)
    ]
    return 1000 * (audio[0][0] - first_token), 1000 * playback_gaps(audio)


async def run_all(runs: int) -> dict[tuple[str, int], dict[str, Cell]]:
    """Every (sentence, pace) cell for both services, alternating who goes first."""
    cells: dict[tuple[str, int], dict[str, Cell]] = {}
    async with serve(SERVER, in_process=False) as server:
        url = server.ws_base_url
        for label, first in FIRST_SENTENCES.items():
            text = f"{first} {SECOND_SENTENCE}"
            for pace_ms in TOKEN_PACES_MS:
                cell = cells[(label, pace_ms)] = {OURS: Cell(), THEIRS: Cell()}
                for i in range(runs):
                    for name, factory in in_turn(SERVICES, i):
                        print(
                            f"  {label}, {pace_ms} ms/token, run {i + 1}: {name}", file=sys.stderr
                        )
                        try:
                            first_ms, gap_ms = await one_run(factory, url, text, pace_ms / 1000)
                        except (BenchError, TimeoutError, RuntimeError, OSError) as e:
                            cell[name].problems.append(f"{type(e).__name__}: {e}")
                            continue
                        cell[name].first_audio_ms.append(first_ms)
                        cell[name].worst_gap_ms.append(gap_ms)
    return cells


#: Token mode: the server gathers tokens into segments, within ``max_buffer_delay_ms``.
TOKEN_MODE_DELAYS_MS = (100, 250, 500, 1000)
TOKEN_MODE_PACE_MS = 30


@dataclass
class TokenCell:
    """Our service in token mode at one buffer delay."""

    first_audio_ms: list[float] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)  # per reply of two sentences
    worst_gap_ms: list[float] = field(default_factory=list)


async def run_token_mode(runs: int) -> dict[tuple[str, int], TokenCell]:
    """Token mode at several buffer delays: first audio, and how many pieces a reply became."""
    from pipecat.services.tts_service import TextAggregationMode

    from benchmarks.harness import API_KEY
    from pipecat_waves import WavesTTSService
    from pipecat_waves.server import LocalWavesServer, ToneBackend

    cells: dict[tuple[str, int], TokenCell] = {}
    # In this process, with records on: the segments are counted.
    async with LocalWavesServer(
        api_key=API_KEY,
        backend=ToneBackend(),
        behaviour=SERVER,
        record=True,
    ) as server:
        url = server.ws_base_url
        for label, first in FIRST_SENTENCES.items():
            text = f"{first} {SECOND_SENTENCE}"
            for delay in TOKEN_MODE_DELAYS_MS:
                cell = cells[(label, delay)] = TokenCell()

                def factory(u: str, rate: int, d: int = delay) -> WavesTTSService:
                    return WavesTTSService(
                        api_key=API_KEY,
                        base_url=u,
                        sample_rate=rate,
                        text_aggregation_mode=TextAggregationMode.TOKEN,
                        max_buffer_delay_ms=d,
                    )

                for i in range(runs):
                    print(f"  token mode, {label}, {delay} ms, run {i + 1}", file=sys.stderr)
                    before = len(server.segments)
                    first_ms, gap_ms = await one_run(factory, url, text, TOKEN_MODE_PACE_MS / 1000)
                    cell.first_audio_ms.append(first_ms)
                    cell.worst_gap_ms.append(gap_ms)
                    cell.segments.append(len(server.segments) - before)
    return cells


def format_token_table(cells: dict[tuple[str, int], TokenCell]) -> str:
    """Markdown: token mode, per buffer delay."""
    lines = [
        "| first sentence | max_buffer_delay_ms | first audio: median (worst) | segments per "
        "reply (2 sentences) | worst gap |",
        "|---|---:|---:|---:|---:|",
    ]
    for (label, delay), cell in cells.items():
        lines.append(
            f"| {label} | {delay} | {_median(cell.first_audio_ms)} ({_worst(cell.first_audio_ms)}) "
            f"| {statistics.median(cell.segments):g} | {_worst(cell.worst_gap_ms)} |"
        )
    return "\n".join(lines)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "n/a"


def _worst(values: list[float]) -> str:
    return f"{max(values):.0f}" if values else "n/a"


def format_table(cells: dict[tuple[str, int], dict[str, Cell]]) -> str:
    """Markdown: first audio (median / worst) and worst gap, both services, and the ratio."""
    lines = [
        "| first sentence | ms/token | first audio, ours: median (worst) | first audio, "
        "built-in: median (worst) | ours / built-in | worst gap ours | worst gap built-in |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (label, pace), by in cells.items():
        ours, theirs = by[OURS], by[THEIRS]
        ratio = "n/a"
        if ours.first_audio_ms and theirs.first_audio_ms:
            mine, other = (
                statistics.median(ours.first_audio_ms),
                statistics.median(theirs.first_audio_ms),
            )
            ratio = f"{mine / other:.2f}"
        lines.append(
            f"| {label} | {pace} | {_median(ours.first_audio_ms)} ({_worst(ours.first_audio_ms)}) "
            f"| {_median(theirs.first_audio_ms)} ({_worst(theirs.first_audio_ms)}) | {ratio} "
            f"| {_worst(ours.worst_gap_ms)} | {_worst(theirs.worst_gap_ms)} |"
        )
    problems = [
        f"{name}, {label}, {pace} ms/token: {p}"
        for (label, pace), by in cells.items()
        for name, cell in by.items()
        for p in cell.problems
    ]
    return "\n".join(lines + (["", *problems] if problems else []))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per cell")
    parser.add_argument("--runs", type=int, default=5, help="runs per cell (default: 5)")
    parser.add_argument(
        "--token-mode", action="store_true", help="also our token mode at several buffer delays"
    )
    args = parser.parse_args(argv)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    runs = 1 if args.quick else args.runs
    cells = asyncio.run(run_all(runs))
    print(
        f"server: {', '.join(f'{k}={v}' for k, v in settings_of(SERVER).items())}; tone backend, "
        f"child process, 127.0.0.1; {RATE} Hz; gap = longest starvation of a real-time "
        "player fed the frames as they came out"
    )
    print(format_table(cells))
    if args.token_mode:
        print(f"\nour token mode, {TOKEN_MODE_PACE_MS} ms/token, server in this process:")
        print(format_token_table(asyncio.run(run_token_mode(runs))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
