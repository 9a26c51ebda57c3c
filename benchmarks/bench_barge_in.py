#!/usr/bin/env python
"""Barge-in, turn-taking and load benchmark: WavesTTSService vs. SmallestTTSService.

Both services run in real Pipecat pipelines, one after the other, against the
same local Waves-compatible server (tone backend, simulated handshake and
time to first byte). Each pipeline is ``[in-recorder, TTS service,
out-recorder]``; the recorders stamp every downstream frame with
``time.perf_counter()``, so every number is measured at the service's edges.

Usage::

    python benchmarks/bench_barge_in.py [--quick] [--json out.json]

See ``benchmarks/README.md`` for what each number means. The pieces live in
``benchmarks/harness.py`` (servers, services, sessions) and
``benchmarks/barge_in/`` (settings, scenarios, the run, the report).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from loguru import logger

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.barge_in.config import BenchConfig
from benchmarks.barge_in.report import format_details, format_settings, format_table, to_json
from benchmarks.barge_in.run import run_benchmark
from benchmarks.harness import serve_forever

# ------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and sessions (~1 min)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # child-process server
    args = parser.parse_args(argv)
    # Debug logging costs CPU per frame and would be measured; warnings stay.
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    if args.serve:
        asyncio.run(serve_forever(json.loads(args.serve)))
        return 0
    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    print(format_settings(cfg), flush=True)
    bench = asyncio.run(
        run_benchmark(cfg, progress=lambda m: print(f"  … {m}", file=sys.stderr, flush=True))
    )
    print()
    print(format_table(bench))
    print()
    print(format_details(bench))
    print(f"\nfinished in {bench.wall_s:.0f} s on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(to_json(bench), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
