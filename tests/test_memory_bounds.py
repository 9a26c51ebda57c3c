"""Long sessions hold flat memory: the memory benchmark's core, run small.

The figures (heap, RSS) are for the benchmark to report; here the containers
that would grow with every reply are checked to be the same size after 60
replies as after the warm-up.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_memory import run
from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.server.records import RECORD_LIMIT


@pytest.mark.timeout(120)
async def test_session_and_server_hold_nothing_per_reply():
    start, end, _ = await run(60, record=False, progress=False)
    assert end.session_sizes == start.session_sizes
    assert end.server_sizes == start.server_sizes
    assert end.server_sizes["segment_records"] == 0, "records are off unless asked for"


async def test_server_records_are_off_by_default_and_bounded_when_on():
    async with LocalWavesServer(api_key=None, backend=ToneBackend()) as server:
        assert server._state.record is False
    async with LocalWavesServer(api_key=None, backend=ToneBackend(), record=True) as server:
        state = server._state
        assert state.connections.maxlen == state.segments.maxlen == RECORD_LIMIT
