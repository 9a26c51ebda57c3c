"""Does memory stay flat over a long session? 10,000 replies through one session and one server.

Usage::

    python benchmarks/bench_memory.py              # 10,000 replies
    python benchmarks/bench_memory.py --quick      # 1,000 replies
    python benchmarks/bench_memory.py --replies N --record

One :class:`~pipecat_waves.protocol.session.WavesSession` (the client's whole
bookkeeping) drives one :class:`~pipecat_waves.server.LocalWavesServer` (tone
backend) over real loopback sockets: each reply is a few fragments of one
context, closed, spoken and finished, exactly as the service does it. Time
is virtual where the session waits on a clock (a quiet guard, a keep-alive),
so the run takes seconds, not hours.

Memory is read after a warm-up and again at the end: the interpreter's
allocated memory blocks and live objects (what the process holds, without
tracing overhead), the process's resident set size, and the sizes of the
session's and the server's own containers (which must not grow with the
number of replies). ``--tracemalloc`` adds the traced Python heap (slower).
Server and client share this process, so the figures cover both.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import websockets
from loguru import logger

from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol import session as sn
from pipecat_waves.protocol.requests import VoiceParams
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.service.connection import live_url, open_socket

KEY = "bench-memory-key"
RATE = 8000
WARM_UP = 200
#: Real quiet after which virtual time jumps (loopback frames come far faster).
QUIET_S = 0.01
PARAMS = VoiceParams(voice_id="avery", sample_rate=RATE, word_timestamps=True)
FRAGMENTS = ["Your table is booked. ", "See you at eight."]


def rss_kib() -> int:
    """Resident set size of this process, in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Snapshot:
    replies: int
    heap_kib: float | None
    blocks: int
    objects: int
    rss_kib: int
    session_sizes: dict[str, int]
    server_sizes: dict[str, int]


class Shell:
    """The least I/O around a session that speaks replies over real sockets."""

    def __init__(self, server: LocalWavesServer) -> None:
        self.server = server
        self.session = sn.WavesSession(sn.SessionConfig(sample_rate=RATE))
        self.sockets: dict[int, websockets.ClientConnection] = {}
        self.readers: dict[int, asyncio.Task[None]] = {}
        self.inbox: asyncio.Queue[tuple[int, str | bytes | None]] = asyncio.Queue()
        self.next_id = 1
        self.offset = 0.0  # virtual seconds added to the clock
        self.finished: set[str] = set()
        self.failed: list[str] = []

    def now(self) -> float:
        return time.monotonic() + self.offset

    async def act(self, outputs: list[sn.Output]) -> None:
        for output in outputs:
            if isinstance(output, sn.Send):
                ws = self.sockets.get(output.conn)
                if ws is not None:
                    await ws.send(json.dumps(output.message))
            elif isinstance(output, sn.OpenConnection):
                await self.open()
            elif isinstance(output, sn.CloseConnection | sn.AbortConnection):
                ws = self.sockets.pop(output.conn, None)
                if ws is not None:
                    await ws.close()
            elif isinstance(output, sn.ContextFinished):
                self.finished.add(output.context_id)
            elif isinstance(output, sn.ContextFailed):
                self.failed.append(f"{output.context_id}: {output.error.message}")

    async def open(self) -> None:
        url = live_url(self.server.ws_base_url, 60)
        ws = await open_socket(url, KEY, extra_headers={}, open_timeout_s=5)
        conn = self.next_id
        self.next_id += 1
        self.sockets[conn] = ws
        self.readers[conn] = asyncio.create_task(self.read(conn, ws))
        await self.act(self.session.connection_opened(conn, self.now()))

    async def read(self, conn: int, ws: websockets.ClientConnection) -> None:
        try:
            async for message in ws:
                self.inbox.put_nowait((conn, message))
        except websockets.ConnectionClosed:
            pass
        self.inbox.put_nowait((conn, None))

    async def reply(self, context_id: str) -> None:
        for fragment in FRAGMENTS:
            await self.act(self.session.send_text(context_id, fragment, PARAMS, self.now()))
        await self.act(self.session.close_context(context_id, self.now()))
        while context_id not in self.finished:
            try:
                conn, message = await asyncio.wait_for(self.inbox.get(), QUIET_S)
            except TimeoutError:
                # Nothing arrives: jump the virtual clock to the session's next
                # deadline (a quiet guard, say) instead of waiting for it.
                now = self.now()
                self.offset += max(self.session.next_deadline(now) - now, 0.0)
                await self.act(self.session.poll(self.now()))
                continue
            if message is None:
                self.readers.pop(conn, None)
                self.sockets.pop(conn, None)
                await self.act(self.session.connection_lost(conn, self.now()))
                continue
            event = rs.parse_message(message)
            await self.act(self.session.receive(conn, event, self.now()))
        self.finished.discard(context_id)

    async def close(self) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()
        await asyncio.gather(*self.readers.values(), return_exceptions=True)

    def session_sizes(self) -> dict[str, int]:
        s = self.session
        return {
            "replies": len(s._replies),
            "by_wire": len(s._by_wire),
            "connections": len(s._conns),
            "failed": len(s._failed),
            "gaps": len(s._gaps),
        }


def server_sizes(server: LocalWavesServer) -> dict[str, int]:
    state = server._state
    live = server._live
    open_connections = list(live.open) if live is not None else []
    per_connection = sum(
        len(c._contexts) + len(c._context_params) + len(c._jobs) + len(c._synthesis_queues)
        for c in open_connections
    )
    return {
        "connection_records": len(state.connections),
        "segment_records": len(state.segments),
        "open_sockets": len(open_connections),
        "per_socket_entries": per_connection,
        "context_slots": len(state.context_slots),
    }


async def snapshot(replies: int, shell: Shell, server: LocalWavesServer) -> Snapshot:
    # The client is done with a reply once its last word is proven spoken; the
    # server settles that segment a moment later. Let it, so neither side is
    # caught mid-reply.
    await asyncio.sleep(0.1)
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] / 1024 if tracemalloc.is_tracing() else None
    return Snapshot(
        replies,
        heap,
        sys.getallocatedblocks(),
        len(gc.get_objects()),
        rss_kib(),
        shell.session_sizes(),
        server_sizes(server),
    )


async def run(replies: int, record: bool, progress: bool) -> tuple[Snapshot, Snapshot, float]:
    behaviour = ServerBehaviour(chunk_ms=200, ttfb_ms=0)
    async with LocalWavesServer(KEY, backend=ToneBackend(), behaviour=behaviour, record=record) as (
        server
    ):
        shell = Shell(server)
        await shell.act(shell.session.start())
        for i in range(WARM_UP):
            await shell.reply(f"warm-{i}")
        start = await snapshot(0, shell, server)
        began = time.perf_counter()
        for i in range(replies):
            await shell.reply(f"reply-{i}")
            if progress and (i + 1) % 1000 == 0:
                print(f"  {i + 1} replies", file=sys.stderr)
        elapsed = time.perf_counter() - began
        end = await snapshot(replies, shell, server)
        await shell.close()
    if shell.failed:
        raise SystemExit(f"{len(shell.failed)} replies failed, first: {shell.failed[0]}")
    return start, end, elapsed


def report(start: Snapshot, end: Snapshot, elapsed: float, record: bool) -> str:
    lines = [
        f"replies: {end.replies} (after {WARM_UP} warm-up), {elapsed:.1f} s, "
        f"server records {'on (bounded)' if record else 'off'}",
        "",
        "| | start | end | change |",
        "|---|---:|---:|---:|",
    ]
    if start.heap_kib is not None and end.heap_kib is not None:
        lines.append(
            f"| Python heap (tracemalloc) | {start.heap_kib:,.0f} KiB | {end.heap_kib:,.0f} KiB "
            f"| {end.heap_kib - start.heap_kib:+,.0f} KiB |"
        )
    lines += [
        f"| allocated memory blocks | {start.blocks:,} | {end.blocks:,} "
        f"| {end.blocks - start.blocks:+,} |",
        f"| live objects (gc) | {start.objects:,} | {end.objects:,} "
        f"| {end.objects - start.objects:+,} |",
        f"| resident set size | {start.rss_kib:,} KiB | {end.rss_kib:,} KiB "
        f"| {end.rss_kib - start.rss_kib:+,} KiB |",
    ]
    for name in start.session_sizes:
        a, b = start.session_sizes[name], end.session_sizes[name]
        lines.append(f"| session `{name}` | {a} | {b} | {b - a:+} |")
    for name in start.server_sizes:
        a, b = start.server_sizes[name], end.server_sizes[name]
        lines.append(f"| server `{name}` | {a} | {b} | {b - a:+} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 replies")
    parser.add_argument("--record", action="store_true", help="server records on (bounded)")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    replies = 1_000 if args.quick else args.replies
    if args.tracemalloc:
        tracemalloc.start()
    start, end, elapsed = asyncio.run(run(replies, args.record, progress=True))
    print(report(start, end, elapsed, args.record))


if __name__ == "__main__":
    main()
