#!/usr/bin/env python
"""Barge-in at the listener's ear: WavesTTSService vs. SmallestTTSService in real Chromium.

Each run is one session of the browser test's harness (``tests/support/ear``):
headless Chromium and the web demo's bot in a loopback-only network namespace,
a fake microphone saying "Hey there, wait a moment." into the bot's first
reply, and the page recording the microphone and the bot's track on one clock.
The bot speaks through each service in turn, against the local server (tone
backend) with an upgrade delay standing in for TLS and a round trip to a cloud
API. From the user's speech onset to the bot's last audible sound, split into
VAD time, service time (VAD → last audio handed to WebRTC) and transport time
(→ last audible sound in the browser). Needs root (or user namespaces) and
Debian's ``chromium``.

Usage::

    python benchmarks/bench_ear.py [--runs 5] [--handshake-ms 250] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import OURS, THEIRS
from pipecat_waves.server.tones import words_of
from tests.support.ear import ANSWER, INTERRUPTED, SessionConfig, record_barge_in
from tests.support.ear.analysis import read_barge_in
from tests.support.ear.mic import PHRASE
from tests.support.ear.timing import EarTiming, split_timing

#: The session's service name for each row.
SERVICES = {OURS: "ours", THEIRS: "theirs"}
COLUMNS = ("ear_ms", "vad_ms", "service_ms", "transport_ms")
HEADERS = {
    "ear_ms": "onset → silent at ear (ms)",
    "vad_ms": "VAD (ms)",
    "service_ms": "service (ms)",
    "transport_ms": "transport (ms)",
}


def one_run(service: str, handshake_ms: float, out: Path) -> dict[str, object]:
    """One session; its timing and what was heard after the barge-in."""
    config = SessionConfig(
        out=str(out),
        replies=[INTERRUPTED, ANSWER],
        phrase=PHRASE,
        service=service,
        server={"handshake_delay_ms": handshake_ms},
    )
    recording = record_barge_in(config)
    heard = read_barge_in(
        recording.mic, recording.bot, recording.sample_rate, config.replies, recording.meta["holes"]
    )
    timing: EarTiming = split_timing(recording, heard)
    after = [t.word for t in heard.after]
    return asdict(timing) | {
        "answer_whole": after == words_of(ANSWER),
        "stale_words": sum(1 for w in after if w in set(words_of(INTERRUPTED))),
    }


def summary(values: list[float]) -> str:
    """Median (min-max)."""
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def format_table(results: dict[str, list[dict[str, object]]]) -> str:
    """One Markdown row per service: medians with min-max, and the checks."""
    head = ["service", *(HEADERS[c] for c in COLUMNS), "answer heard whole", "stale words heard"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in results.items():
        cells = [name]
        cells += [summary([float(r[c]) for r in runs]) for c in COLUMNS]  # type: ignore[arg-type]
        cells.append(f"{sum(bool(r['answer_whole']) for r in runs)}/{len(runs)}")
        cells.append(str(sum(int(r["stale_words"]) for r in runs)))  # type: ignore[call-overload]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="sessions per service (default: 5)")
    parser.add_argument(
        "--handshake-ms",
        type=float,
        default=250.0,
        help="the local server's upgrade delay (default: %(default)g)",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    args = parser.parse_args(argv)
    print(
        f"{args.runs} runs per service; server: tone backend, "
        f"handshake_delay_ms={args.handshake_ms:g}; phrase {PHRASE!r}",
        flush=True,
    )
    results: dict[str, list[dict[str, object]]] = {name: [] for name in SERVICES}
    with tempfile.TemporaryDirectory(prefix="bench-ear-") as tmp:
        for run in range(args.runs):
            # Alternate who goes first, so neither always runs on a quiet machine.
            order = list(SERVICES.items()) if run % 2 == 0 else list(SERVICES.items())[::-1]
            for name, service in order:
                result = one_run(service, args.handshake_ms, Path(tmp) / f"{service}-{run}")
                results[name].append(result)
                print(f"  … run {run + 1} {name}: {result}", file=sys.stderr, flush=True)
    print()
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
