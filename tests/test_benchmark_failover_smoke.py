"""The failover benchmark runs end to end, and its switch-back helper works.

Speed and failover quality are not asserted here (they are what the benchmark
measures, on a compressed clock here); structure is: both services measured
in every scenario, turn 1 spoken by the primary before server A goes away,
server A brought back where the scenario says, and both tables complete.
"""

from __future__ import annotations

import asyncio
import math

import pytest
from pipecat.processors.frame_processor import FrameProcessor

from benchmarks.failover.config import BLIP, OUTAGE, SCENARIOS, TURNS, FailoverConfig
from benchmarks.failover.report import format_details, format_settings, format_tables
from benchmarks.failover.run import (
    SwitcherSession,
    WordReader,
    run_benchmark,
    switch_back_when_usable,
)
from benchmarks.harness import OURS, THEIRS, make_ours
from pipecat_waves.server import LocalWavesServer, ToneBackend

RATE = 24000


@pytest.mark.timeout(60)
async def test_failover_benchmark_runs_every_scenario_for_both_services():
    cfg = FailoverConfig.tiny()
    bench = await run_benchmark(cfg)

    assert bench.problems == {OURS: [], THEIRS: []}
    for name in (OURS, THEIRS):
        for scenario in SCENARIOS:
            (run,) = bench.runs(name, scenario)
            where = f"{name}, {scenario.key}"
            # Both servers were up for turn 1: the primary spoke it, whole.
            assert run.heard[0], where
            assert run.turn_servers[0] == "A", where
            assert run.kill_s >= cfg.kill_after_s, where
            if scenario is OUTAGE:
                assert run.restart_s is None, where
            else:
                assert run.restart_s is not None, where
                assert run.restart_s - run.kill_s >= (cfg.blip_s if scenario is BLIP else 0.0), (
                    where
                )
            numbers = [run.kill_s, run.observed_s, run.restart_s or 0.0, run.silence_s or 0.0]
            numbers += [t for t in run.first_audio_s if t is not None]
            assert all(math.isfinite(v) and v >= 0 for v in numbers), (where, numbers)
            assert len(run.heard) == len(run.turn_servers) == len(cfg.turns), where

    tables = format_tables(bench)
    rows = [line for line in tables.splitlines() if line.startswith("| ")]
    headers = [row for row in rows if row.startswith("| Metric")]
    assert len(headers) == 2
    assert all(OURS in h and THEIRS in h for h in headers)
    # 7 rows of failover and blip, 4 of switching back, each measured for both.
    body = [row for row in rows if not row.startswith("| Metric")]
    assert len(body) == 11, tables
    for row in body:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert "n/a" not in cells[1:3], row
    assert format_settings(cfg)
    details = format_details(bench)
    assert all(f"{s.key} run 1" in details for s in SCENARIOS)


def test_word_reader_refuses_a_conversation_it_could_not_tell_apart():
    WordReader(TURNS, RATE)  # the benchmark's own conversation reads back
    with pytest.raises(ValueError, match="two turns"):
        WordReader(["Hello there.", "Hello again."], RATE)


@pytest.mark.timeout(30)
async def test_switch_back_helper_makes_the_recovered_primary_active_again():
    async with (
        LocalWavesServer(api_key="sk-bench-0123456789", backend=ToneBackend()) as server_a,
        LocalWavesServer(api_key="sk-bench-0123456789", backend=ToneBackend()) as server_b,
    ):
        session = SwitcherSession(
            make_ours(server_a.ws_base_url, RATE), make_ours(server_b.ws_base_url, RATE), RATE
        )
        switch_back_when_usable(session.worker, session.primary)
        switched = asyncio.Queue[FrameProcessor]()

        @session.switcher.strategy.event_handler("on_service_switched")
        async def on_switched(strategy, service: FrameProcessor) -> None:
            switched.put_nowait(service)

        await session.start()
        try:
            # The primary gives up: the failover strategy moves to the backup.
            await session.primary.push_error("gave up", force_treat_as_permanent=True)
            assert await asyncio.wait_for(switched.get(), 10) is session.backup
            # It recovers: the helper's frame brings it back.
            await session.primary.set_usable(True)
            assert await asyncio.wait_for(switched.get(), 10) is session.primary
            assert session.switcher.strategy.active_service is session.primary
            assert [role for _, role in session.switches] == ["backup", "primary"]
        finally:
            await session.cancel()
