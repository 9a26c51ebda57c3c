"""The HTTP service against the socket service on the same local server.

Both Waves services speak the same known texts (``TTSSpeakFrame``: the whole
text up front, the HTTP service's use) against one local server in a child
process (tone backend, a simulated 150 ms TTFB, so the server's CPU stays out
of the measurement), alternating who goes first:

* **first audio**: the ``TTSSpeakFrame`` going in → the first audio frame
  coming out. *Cold* is a session's first text (the HTTP service opens its
  TCP connection then; the socket service opened its socket at start, and is
  given time to); *warm* is the next one.
* **CPU per audio second**: ``time.process_time()`` of this process around a
  run of replies spoken back to back, divided by the seconds of audio they
  made. Pipecat's own pipeline is in it, the same for both.

Run: ``python benchmarks/bench_http.py`` (``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipecat.frames.frames import TTSSpeakFrame, TTSStoppedFrame
from pipecat.services.tts_service import TTSService

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    API_KEY,
    BenchError,
    ServiceFactory,
    Session,
    finish,
    in_turn,
    serve,
)
from pipecat_waves import WavesHttpTTSService, WavesTTSService
from pipecat_waves.server import ServerBehaviour

RATE = 24000
SOCKET = "WavesTTSService (socket)"
HTTP = "WavesHttpTTSService (SSE)"
SERVER = ServerBehaviour(ttfb_ms=150, complete_delay_ms=0)

FIRST_TEXT = "Your table is booked for eight tonight. We look forward to seeing you."
SECOND_TEXT = "Is there anything else I can help with today?"
CPU_TEXTS = (
    "Thanks for calling today. Our kitchen opens at five and closes at eleven.",
    "The tasting menu has seven courses, and each one comes with a matching wine.",
    "Parking is free after six, and the garage is just around the corner.",
    "We can also seat larger groups in the private room upstairs if you ask ahead.",
)


def _socket(url: str, rate: int) -> TTSService:
    return WavesTTSService(api_key=API_KEY, base_url=url, sample_rate=rate)


def _http(url: str, rate: int) -> TTSService:
    return WavesHttpTTSService(api_key=API_KEY, base_url=url, sample_rate=rate)


SERVICES: dict[str, ServiceFactory] = {SOCKET: _socket, HTTP: _http}


@dataclass
class Result:
    """One service's numbers over every run."""

    cold_ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)
    cpu_ms_per_audio_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _stops(session: Session) -> int:
    return sum(isinstance(s.frame, TTSStoppedFrame) for s in session.out.frames)


async def _speak(session: Session, text: str, timeout_s: float = 20.0) -> float:
    """Speak ``text``; return when its first audio came out (``perf_counter``)."""
    stops = _stops(session)
    audio_before = len(session.out.audio())
    sent = time.perf_counter()
    await session.send([TTSSpeakFrame(text)])
    if not await session.out.wait_until(lambda: _stops(session) > stops, timeout_s):
        raise BenchError(f"no end of speech within {timeout_s:g} s")
    new_audio = session.out.audio()[audio_before:]
    if not new_audio:
        raise BenchError("the text made no audio")
    if session.errors:
        raise BenchError(f"error: {session.errors[0].frame}")
    return 1000 * (new_audio[0].t - sent)


async def first_audio_run(factory: ServiceFactory, url: str) -> tuple[float, float]:
    """Cold and warm first audio (ms) of one fresh session."""
    session = Session(factory(url, RATE), RATE)
    await session.start()
    try:
        await asyncio.sleep(0.4)  # the socket service has its socket open
        cold = await _speak(session, FIRST_TEXT)
        warm = await _speak(session, SECOND_TEXT)
    finally:
        await finish(session)
    return cold, warm


async def cpu_run(factory: ServiceFactory, url: str, replies: int) -> float:
    """CPU milliseconds per second of audio over ``replies`` replies back to back."""
    session = Session(factory(url, RATE), RATE)
    await session.start()
    try:
        await asyncio.sleep(0.4)
        await _speak(session, SECOND_TEXT)  # warm, as a session in use is
        audio_before = sum(len(s.frame.audio) for s in session.out.audio())
        cpu0 = time.process_time()
        for text in (CPU_TEXTS * replies)[:replies]:
            await _speak(session, text)
        cpu = time.process_time() - cpu0
        audio = sum(len(s.frame.audio) for s in session.out.audio()) - audio_before
    finally:
        await finish(session)
    return 1000 * cpu / (audio / (2 * RATE))


def _http_url(ws_url: str) -> str:
    return "http" + ws_url.removeprefix("ws")


async def run(runs: int, replies: int) -> dict[str, Result]:
    """Every measurement for both services."""
    results = {name: Result() for name in SERVICES}
    async with serve(SERVER, in_process=False) as server:
        urls = {SOCKET: server.ws_base_url, HTTP: _http_url(server.ws_base_url)}
        for i in range(runs):
            for name, factory in in_turn(SERVICES, i):
                print(f"  run {i + 1}: {name}", file=sys.stderr)
                try:
                    cold, warm = await first_audio_run(factory, urls[name])
                    results[name].cold_ms.append(cold)
                    results[name].warm_ms.append(warm)
                    results[name].cpu_ms_per_audio_s.append(
                        await cpu_run(factory, urls[name], replies)
                    )
                except (BenchError, TimeoutError, RuntimeError, OSError) as e:
                    results[name].problems.append(f"{type(e).__name__}: {e}")
    return results


def _median_worst(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.0f} ({max(values):.0f})"


def format_table(results: dict[str, Result]) -> str:
    """Markdown: first audio cold and warm (median, worst), CPU per audio second (median)."""
    lines = [
        "| service | first audio, cold: median (worst) ms | first audio, warm: median (worst) "
        "ms | CPU ms per audio s: median (worst) |",
        "|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        cpu = (
            f"{statistics.median(r.cpu_ms_per_audio_s):.1f} ({max(r.cpu_ms_per_audio_s):.1f})"
            if r.cpu_ms_per_audio_s
            else "n/a"
        )
        lines.append(
            f"| {name} | {_median_worst(r.cold_ms)} | {_median_worst(r.warm_ms)} | {cpu} |"
        )
    problems = [f"{name}: {p}" for name, r in results.items() for p in r.problems]
    return "\n".join(lines + (["", *problems] if problems else []))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run, two replies for CPU")
    parser.add_argument("--runs", type=int, default=None, help="runs per service (default 5)")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 5)
    replies = 2 if args.quick else 8
    from loguru import logger

    logger.remove()  # per-chunk debug lines would be measured too
    results = asyncio.run(run(runs, replies))
    print(
        f"Local server in a child process, tone backend, ttfb_ms={SERVER.ttfb_ms:g}, "
        f"{RATE} Hz; {runs} run(s) per service, {replies} replies per CPU run.\n"
    )
    print(format_table(results))
    return 1 if any(r.problems for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
