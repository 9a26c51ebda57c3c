"""How fast the local Waves server speaks, and how many sockets it holds.

Usage::

    python benchmarks/bench_local_server.py [--sockets 1000]

Prints, for the Piper voice: time to first audio chunk (TTFB) over the live
socket, real-time factor (synthesis time / audio time), and the number of
concurrent live sockets one server process holds while every one of them still
answers a ping. Server and client share this process (loopback only).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time

import websockets
from loguru import logger

from pipecat_waves.protocol.constants import LIVE_PATH
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.server.piper_backend import PiperBackend

KEY = "bench-key"
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Your table for four is booked for eight o'clock tonight.",
    "I can also send you a reminder an hour before you arrive.",
]


async def one_shot(url: str, text: str, rate: int) -> tuple[float, float, float]:
    """Return (ttfb_s, total_s, audio_s) for one sentence over a fresh socket."""
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
        start = time.perf_counter()
        await ws.send(json.dumps({"text": text, "voice_id": "avery", "sample_rate": rate}))
        ttfb = None
        audio = 0
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("status") == "chunk":
                ttfb = ttfb or time.perf_counter() - start
                audio += len(base64.b64decode(msg["data"]["audio"]))
            elif msg.get("status") == "complete":
                break
        total = time.perf_counter() - start
    return ttfb or total, total, audio / (2 * rate)


async def piper_figures(rate: int) -> None:
    backend = PiperBackend()
    backend.warm_up()
    async with LocalWavesServer(KEY, backend=backend) as server:
        url = server.ws_base_url + LIVE_PATH
        runs = [await one_shot(url, s, rate) for s in SENTENCES * 3]
    ttfb = statistics.median(r[0] for r in runs) * 1000
    rtf = sum(r[1] for r in runs) / sum(r[2] for r in runs)
    audio = statistics.median(r[2] for r in runs)
    print(f"| Piper, {rate} Hz | {ttfb:.0f} ms | {rtf:.3f} | {audio:.2f} s of audio per sentence |")


async def socket_capacity(target: int) -> None:
    async with LocalWavesServer(
        KEY, backend=ToneBackend(), behaviour=ServerBehaviour(idle_timeout_s=120)
    ) as server:
        url = server.ws_base_url + LIVE_PATH
        sockets = []
        started = time.perf_counter()
        for _ in range(target):
            sockets.append(
                await websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"})
            )
        opened = time.perf_counter() - started

        async def ping(ws: websockets.ClientConnection) -> float:
            t = time.perf_counter()
            await ws.send('{"type":"ping"}')
            assert json.loads(await ws.recv()) == {"type": "pong"}
            return time.perf_counter() - t

        t = time.perf_counter()
        rtts = await asyncio.gather(*(ping(ws) for ws in sockets))
        all_pings = time.perf_counter() - t
        await asyncio.gather(*(ws.close() for ws in sockets))
    print(
        f"| {target} sockets | opened in {opened:.1f} s | every socket pinged at once: "
        f"all {len(rtts)} pongs in {all_pings * 1000:.0f} ms "
        f"(median {statistics.median(rtts) * 1000:.0f} ms) |"
    )


async def main() -> None:
    logger.remove()  # the server logs every chunk at debug level
    logger.add(sys.stderr, level="WARNING")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=1000)
    args = parser.parse_args()
    print("| measure | TTFB | real-time factor | note |\n|---|---|---|---|")
    for rate in (24000, 44100):
        await piper_figures(rate)
    print()
    await socket_capacity(args.sockets)


if __name__ == "__main__":
    asyncio.run(main())
