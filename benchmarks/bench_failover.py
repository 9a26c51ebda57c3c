#!/usr/bin/env python
"""Failover benchmark: a primary TTS whose server dies, a backup, a real ServiceSwitcher.

Each run is a 6-turn conversation (one LLM reply every 4 s) spoken through
``ServiceSwitcher(services=[primary, backup], strategy_type=ServiceSwitcherStrategyFailover)``
in a real Pipecat pipeline ``[in-recorder, switcher, out-recorder]``. The
primary talks to local server A, the backup ("of the same kind") to local
server B; both are ``LocalWavesServer`` with the tone backend, so every word
that reaches the output is read back from the audio. After turn 1, server A
goes away:

* **outage**: A is stopped for good (``LocalWavesServer.stop()``: every open
  socket closed with 1001 "going away", new connections refused);
* **switch back**: as the outage, but A comes back on the same port after
  turn 4; an app handler on the primary's ``on_usable_changed`` switches back
  (:func:`switch_back_when_usable`, written as a user would);
* **blip**: A closes every socket and refuses connections for 0.5 s, then
  comes back on the same port: a service that rides out blips does not fail
  over.

Ours (two ``WavesTTSService``) and Pipecat's (two ``SmallestTTSService``) run
side by side, each with its own pair of servers.

Usage::

    python benchmarks/bench_failover.py [--runs N] [--quick]

What the tables count, per service and scenario (median of the runs, min-max):

* **turns 2-6 heard whole**: every word of the turn read back from the
  output audio, in order (by content, whichever service spoke it);
* **silence**: from server A going away to the first word of any later turn
  leaving the pipeline ("rest of the call" if none did);
* **ErrorFrames**: reported by the primary and the backup (counted at the
  services: the switcher keeps most of them from the rest of the pipeline);
* **is_usable went false**: the primary's ``on_usable_changed(False)``, from
  the kill; **on_usable_changed(True)**: from server A accepting again;
* **turns spoken by server A after it came back**: from server A's records.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.failover.config import FailoverConfig
from benchmarks.failover.report import format_details, format_settings, format_tables
from benchmarks.failover.run import run_benchmark

# ------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs per scenario and service")
    parser.add_argument("--quick", action="store_true", help="one run, scenarios at once (~40 s)")
    args = parser.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    cfg = FailoverConfig.quick() if args.quick else FailoverConfig()
    if args.runs is not None:
        cfg.runs = args.runs
    print(format_settings(cfg), flush=True)
    bench = asyncio.run(
        run_benchmark(cfg, progress=lambda m: print(f"  … {m}", file=sys.stderr, flush=True))
    )
    print()
    print(format_tables(bench))
    print()
    print(format_details(bench))
    print(f"\nfinished in {bench.wall_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
