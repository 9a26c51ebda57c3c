"""First reply on a server whose open points are already known, against learning them.

A server that refuses ``complete_backoff_ms`` beside a ``context_id`` refuses
the first reply of a fresh service once: the reply goes out again on a new
context without the field. With ``server_traits`` from a probe report the
field is never sent. Three services on the same local server (tone backend,
in a child process, 100 ms handshake, 150 ms TTFB) behind a relay that adds
40 ms of latency each way (``benchmarks/latency_proxy.py``), alternating who goes
first: ours starting cold, ours given the traits a probe of that server
recorded, and Pipecat's built-in service. Each run is a fresh service whose
first reply streams at 30 ms per token; we time first token in → first
audio out, and count ``ErrorFrame``s.

Run: ``python benchmarks/bench_known_server.py`` (``--runs N``, default 5;
``--one-way-ms``, default 40).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from pipecat.services.tts_service import TTSService

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipecat.frames.frames import LLMTextFrame, TTSAudioRawFrame

from benchmarks.bench_first_audio import RATE, SECOND_SENTENCE, SERVER, token_stream
from benchmarks.harness import (
    API_KEY,
    THEIRS,
    BenchError,
    Session,
    finish,
    in_turn,
    make_theirs,
    overlay,
    serve,
    settings_of,
)
from benchmarks.latency_proxy import latency_proxy
from pipecat_waves import ServerTraits, WavesTTSService
from pipecat_waves.probe.runner import ProbeConfig, run_probe
from pipecat_waves.server import ServerBehaviour

FIRST = "Sure, I can check the opening hours of the Riverside branch for you right now."
TEXT = f"{FIRST} {SECOND_SENTENCE}"
PACE_S = 0.03
COLD = "pipecat-waves, cold"
KNOWN = "pipecat-waves, traits from a probe"
SERVERS = {
    "refuses complete_backoff_ms with a context": ServerBehaviour(
        complete_backoff_with_context="refuse"
    ),
    "documented defaults": ServerBehaviour(),
}

Factory = Callable[[str, int], TTSService]


async def first_reply(factory: Factory, url: str) -> tuple[float, int]:
    """First token → first audio (ms) of a fresh service's first reply, and its ErrorFrames."""
    session = Session(factory(url, RATE), RATE)
    await session.start()
    try:
        await asyncio.sleep(0.4)  # every service has its socket open
        await session.send(token_stream(TEXT, PACE_S))
        if not await session.out.wait_until(lambda: session.out.audio_bytes > 0, 15):
            raise BenchError("no audio within 15 s")
        await asyncio.sleep(0.3)  # an ErrorFrame right after the audio would still count
    finally:
        await finish(session)
    first_token = next(s.t for s in session.inp.frames if isinstance(s.frame, LLMTextFrame))
    first_audio = next(s.t for s in session.out.frames if isinstance(s.frame, TTSAudioRawFrame))
    return 1000 * (first_audio - first_token), len(session.errors)


def factories(traits: ServerTraits) -> dict[str, Factory]:
    def cold(url: str, rate: int) -> TTSService:
        return WavesTTSService(api_key=API_KEY, base_url=url, sample_rate=rate)

    def known(url: str, rate: int) -> TTSService:
        return WavesTTSService(
            api_key=API_KEY, base_url=url, sample_rate=rate, server_traits=traits
        )

    return {COLD: cold, KNOWN: known, THEIRS: make_theirs}


async def main(runs: int, one_way_ms: float) -> None:
    rows: list[str] = []
    for label, switches in SERVERS.items():
        async with (
            serve(overlay(SERVER, switches), in_process=False) as server,
            latency_proxy(server.ws_base_url, one_way_ms) as url,
        ):
            report = await run_probe(ProbeConfig(ws_base=url, api_key=API_KEY, idle_wait_s=0))
            traits = ServerTraits.from_probe(report)
            print(f"{label}: probe gave {traits}", file=sys.stderr)
            times: dict[str, list[float]] = {}
            errors: dict[str, int] = {}
            for i in range(runs):
                for name, factory in in_turn(factories(traits), i):
                    ms, n_errors = await first_reply(factory, url)
                    times.setdefault(name, []).append(ms)
                    errors[name] = errors.get(name, 0) + n_errors
            cells = []
            for name in (COLD, KNOWN, THEIRS):
                t = times[name]
                cells.append(
                    f"{statistics.median(t):.0f} ({min(t):.0f}-{max(t):.0f}), "
                    f"{errors[name]} ErrorFrames"
                )
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\nfirst reply of a fresh service, first token → first audio (ms), {runs} runs")
    print(
        f"server: {settings_of(SERVER)}; {one_way_ms:.0f} ms each way through a relay; "
        f"{PACE_S * 1000:.0f} ms/token\n"
    )
    print(f"| server | {COLD} | {KNOWN} | {THEIRS} |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--one-way-ms", type=float, default=40.0, help="network latency each way")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.one_way_ms))
