"""The barge-in benchmark's report: the table, its ratios, settings and details."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from benchmarks.barge_in.config import INTERRUPTED_REPLY, BenchConfig
from benchmarks.barge_in.run import BenchResult, ServiceResult
from benchmarks.barge_in.sessions import IdleRun
from benchmarks.barge_in.turns import WordsRun
from benchmarks.harness import (
    DOCUMENTED_IDLE_TIMEOUT_S,
    OURS,
    THEIRS,
    THEIRS_KEEPALIVE_S,
    describe,
    expected_audio,
    expected_reply_audio_s,
    seconds,
    settings_of,
    switches_of,
)
from pipecat_waves.server import ServerBehaviour

# ----------------------------------------------------------------- report


def _fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.1f}"
    return f"{med:.1f} ({min(values):.1f}-{max(values):.1f})"


def _advantage(ours: float | None, theirs: float | None, higher_is_better: bool = False) -> str:
    """How many times better ours is (> 1: ours is better)."""
    if ours is None or theirs is None:
        return "n/a"
    better, worse = (ours, theirs) if higher_is_better else (theirs, ours)
    if better == worse:
        return "1.0x (equal)"
    if worse == 0:
        return "∞ (ours 0)" if not higher_is_better else "n/a"
    return f"{better / worse:.1f}x"


def format_table(bench: BenchResult) -> str:
    """The Markdown table of both services and the ratio."""
    ours, theirs = bench.results[OURS], bench.results[THEIRS]
    rows: list[tuple[str, str, str, str]] = []

    def per_run(label: str, metric: str) -> None:
        rows.append(
            (
                label,
                _fmt(ours.values(metric)),
                _fmt(theirs.values(metric)),
                _advantage(ours.median(metric), theirs.median(metric)),
            )
        )

    per_run("1. InterruptionFrame time inside the TTS service (ms)", "interruption_in_service_ms")
    per_run("2. Interrupted audio pushed after the InterruptionFrame (ms)", "stale_audio_ms")
    per_run("3. Barge-in → first audio of the next reply (ms)", "barge_in_to_next_audio_ms")
    per_run(
        "4. Gap between back-to-back replies, documented 4 s complete_backoff_ms (ms)", "gap_ms"
    )
    for held in bench.config.held_completes:
        mine = [r.gap_ms for r in ours.held_back_to_back.get(held.key, [])]
        other = [r.gap_ms for r in theirs.held_back_to_back.get(held.key, [])]
        rows.append(
            (
                f"{held.key}. Gap between back-to-back replies, {held.label} (ms)",
                _fmt(mine) if mine else _failed_cell(ours, held.label),
                _fmt(other) if other else _failed_cell(theirs, held.label),
                _advantage(
                    statistics.median(mine) if mine else None,
                    statistics.median(other) if other else None,
                ),
            )
        )

    def cpu(r: ServiceResult) -> float | None:
        return r.cpu.cpu_ms_per_audio_s if r.cpu else None

    rows.append(
        (
            "5. Client CPU per second of audio (ms)",
            f"{cpu(ours):.1f}" if cpu(ours) is not None else "n/a",
            f"{cpu(theirs):.1f}" if cpu(theirs) is not None else "n/a",
            _advantage(cpu(ours), cpu(theirs)),
        )
    )

    def sessions(r: ServiceResult) -> str:
        n = r.max_sessions
        if n is None:
            return "none kept up" if r.load else "n/a"
        # Never fell behind: the limit lies above the largest N tried.
        return f">={n}" if n == max(s.sessions for s in r.load) else str(n)

    rows.append(
        (
            "6. Concurrent sessions per process keeping real time",
            sessions(ours),
            sessions(theirs),
            _advantage(
                float(ours.max_sessions or 0),
                float(theirs.max_sessions or 0),
                higher_is_better=True,
            )
            + (" (limit not reached)" if ">=" in sessions(ours) + sessions(theirs) else ""),
        )
    )

    def echo_values(r: ServiceResult) -> list[float]:
        return [run.barge_in_to_next_audio_ms for run in r.echo_barge_in]

    echo_ours, echo_theirs = echo_values(ours), echo_values(theirs)
    rows.append(
        (
            "7. Barge-in → first audio of the next reply, echoing server whose cancel "
            "leaves the segment in flight (ms)",
            _fmt(echo_ours),
            _fmt(echo_theirs),
            _advantage(
                statistics.median(echo_ours) if echo_ours else None,
                statistics.median(echo_theirs) if echo_theirs else None,
            ),
        )
    )

    for i, seg in enumerate(bench.config.segmentations):
        w_ours, w_theirs = _words_for(ours, seg.label), _words_for(theirs, seg.label)
        rows.append(
            (
                f"8{'abcdefgh'[i]}. Words spoken/written, two replies back to back, {seg.label}",
                _words_cell(w_ours),
                _words_cell(w_theirs),
                _advantage(
                    None if w_ours is None else float(w_ours.spoken),
                    None if w_theirs is None else float(w_theirs.spoken),
                    higher_is_better=True,
                ),
            )
        )

    for letter, ping in (("a", True), ("b", False)):
        i_ours, i_theirs = _idle_for(ours, ping), _idle_for(theirs, ping)
        answered = "answered" if ping else "refused"
        rows.append(
            (
                f"9{letter}. ErrorFrames per idle hour (60 s timeout), pings {answered}",
                _idle_cell(i_ours),
                _idle_cell(i_theirs),
                _advantage(
                    None if i_ours is None else i_ours.errors_per_hour,
                    None if i_theirs is None else i_theirs.errors_per_hour,
                ),
            )
        )
    for letter, ping in (("c", True), ("d", False)):
        i_ours, i_theirs = _idle_for(ours, ping), _idle_for(theirs, ping)
        answered = "answered" if ping else "refused"
        rows.append(
            (
                f"9{letter}. Words spoken/written of a reply right after the idle period, "
                f"pings {answered}",
                _after_idle_cell(i_ours),
                _after_idle_cell(i_theirs),
                _advantage(
                    None if i_ours is None else float(i_ours.reply_spoken),
                    None if i_theirs is None else float(i_theirs.reply_spoken),
                    higher_is_better=True,
                ),
            )
        )

    header = ("Metric", OURS, THEIRS, "ours better by")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:", "---:", "---:"]) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _words_for(r: ServiceResult, label: str) -> WordsRun | None:
    return next((w for w in r.words if w.segmentation == label), None)


def _words_cell(w: WordsRun | None) -> str:
    if w is None:
        return "n/a"
    extra = f" (+{w.extra} extra)" if w.extra else ""
    return f"{w.spoken}/{w.written}{extra}, {w.errors} ErrorFrame{'s' * (w.errors != 1)}"


def _idle_for(r: ServiceResult, ping: bool) -> IdleRun | None:
    return next((i for i in r.idle if i.ping_supported == ping), None)


def _idle_cell(i: IdleRun | None) -> str:
    if i is None:
        return "n/a"
    periods = i.idle_s / i.timeout_s
    return f"{i.errors_per_hour:.0f} ({i.errors} in {periods:.0f} timeouts)"


def _after_idle_cell(i: IdleRun | None) -> str:
    if i is None:
        return "n/a"
    return (
        f"{i.reply_spoken}/{i.reply_written}, "
        f"{i.reply_errors} ErrorFrame{'s' * (i.reply_errors != 1)}"
    )


def format_settings(cfg: BenchConfig) -> str:
    """The settings a run used, for the report."""
    where = "in this process" if cfg.server_in_process else "a child process"
    return "\n".join(
        [
            f"sample rate {cfg.sample_rate} Hz, tone backend, server in {where}, 127.0.0.1",
            f"metrics 1-5 server: {_switches(cfg.latency_server)}",
            "metric 4 servers:   as metrics 1-5 (completes held 4 s unless the client asks "
            "otherwise), plus per sub-row: "
            + "; ".join(f"{h.key} {_changes(h.switches)}" for h in cfg.held_completes),
            f"metric 6 server:    {_switches(cfg.load_server)}",
            f"metric 7 server:    {_switches(cfg.echo_server, shown=_ECHO_SHOWN)}",
            f"metric 8 servers:   {_switches(cfg.words_server)}, plus per sub-row: "
            + "; ".join(
                (_changes(seg.switches) or "nothing")
                + (f" and a {1000 * cfg.token_pause_s:.0f} ms token pause" * seg.token_pause)
                for seg in cfg.segmentations
            ),
            f"metric 9 servers:   {_switches(cfg.idle_server)}, "
            f"idle_timeout_s={cfg.idle_timeout_s}, ping_supported=True / False; "
            f"{cfg.idle_periods} timeouts idle; Pipecat's keep-alive scaled "
            f"{THEIRS_KEEPALIVE_S:g} s -> "
            f"{THEIRS_KEEPALIVE_S * cfg.idle_timeout_s / DOCUMENTED_IDLE_TIMEOUT_S:g} s",
            f"runs per latency metric: {cfg.runs} (median, min-max in brackets); "
            f"CPU: {cfg.cpu_replies} replies back to back; load: "
            f"{', '.join(map(str, cfg.load_steps))} sessions x {cfg.load_trials} trial(s), "
            f"replies started over {cfg.load_stagger_s:g} s, "
            f"{expected_reply_audio_s(cfg.load_reply, cfg.sample_rate):.1f} s of audio each, "
            f"slack {1000 * cfg.keep_up_slack_s:.0f} ms",
        ]
    )


def _failed_cell(r: ServiceResult, label: str) -> str:
    """What a service got instead of a measurement, from its recorded problems."""
    why = [p for p in r.problems if label in p]
    return "failed (see details)" if why else "n/a"


#: Metric 7 measures a server whose ``cancel_request`` leaves the segment in
#: flight: the default, named anyway.
_ECHO_SHOWN = ("echo_external_request_id", "cancel_stops_inflight")


def _changes(behaviour: ServerBehaviour) -> str:
    """The switches ``behaviour`` sets away from their defaults (a sub-row's overlay)."""
    return describe(switches_of(behaviour))


def _switches(behaviour: ServerBehaviour, shown: tuple[str, ...] = ()) -> str:
    return describe(settings_of(behaviour, shown))


def _first_segment_s(sample_rate: int) -> float:
    """Audio of the interrupted reply's first sentence (its first segment)."""
    first = INTERRUPTED_REPLY.split(". ")[0] + "."
    return seconds(len(expected_audio(first, sample_rate)), sample_rate)


def format_details(bench: BenchResult) -> str:
    """Supporting numbers: load steps, CPU spans, problems."""
    lines: list[str] = []
    for r in bench.results.values():
        lines.append(f"{r.service}:")
        if r.cpu:
            lines.append(
                f"  CPU: {r.cpu.cpu_s:.2f} s CPU for {r.cpu.audio_s:.1f} s of audio "
                f"over {r.cpu.wall_s:.1f} s wall; idle {r.cpu.idle_cpu_ms_per_s:.1f} ms CPU/s"
            )
        steps = ", ".join(
            f"N={s.sessions}: {'ok' if s.kept_up else 'behind'} "
            f"(worst lag {s.worst_lag_ms:.0f} ms, first audio "
            f"{s.first_audio_median_ms:.0f}/{s.first_audio_max_ms:.0f} ms median/max"
            + (f", {s.incomplete} incomplete" if s.incomplete else "")
            + ")"
            for s in r.load
        )
        lines.append(f"  load: {steps or 'n/a'}")
        for metric, label in (
            ("stale_by_label_ms", "after the interruption, labelled with the interrupted context"),
            ("pushed_while_held_ms", "pushed while the InterruptionFrame was inside"),
            ("heard_before_ms", "of the interrupted reply before the barge-in"),
            ("reply_a_audio_ms", "of reply A before reply B (back to back)"),
        ):
            values = r.values(metric)
            if values:
                lines.append(f"  audio {label} (ms): {_fmt(values)}")
        if r.echo_barge_in:
            echo = r.echo_barge_in
            lines.append(
                "  metric 7 (echoing server): interrupted audio after the InterruptionFrame "
                f"(ms) {_fmt([x.stale_audio_ms for x in echo])}; InterruptionFrame inside "
                f"the service (ms) {_fmt([x.interruption_in_service_ms for x in echo])}; "
                f"audio of the interrupted reply before the barge-in (ms) "
                f"{_fmt([x.heard_before_ms for x in echo])}, of a first segment of "
                f"{1000 * _first_segment_s(bench.config.sample_rate):.0f} ms, so its rest "
                "was still streaming at real time when the user barged in"
            )
        for w in r.words:
            lines.append(
                f"  metric 8, {w.segmentation}: reply A {w.spoken_a}/{w.written_a}, "
                f"reply B {w.spoken_b}/{w.written - w.written_a}, {w.extra} extra tones"
                + (f" ({', '.join(w.extra_heard)})" if w.extra_heard else "")
                + f", last audio {w.wall_s:.1f} s after the first LLM frame"
                + "".join(f"\n    ErrorFrame: {m}" for m in w.error_messages[:5])
            )
        for i in r.idle:
            lines.append(
                f"  metric 9, pings {'answered' if i.ping_supported else 'refused'}: "
                f"{i.errors} ErrorFrames in {i.idle_s:.1f} s idle at a {i.timeout_s:g} s timeout "
                f"(and {i.startup_errors} in the first quarter period, not counted); "
                f"{i.sockets_opened} sockets opened in that time"
                + "".join(f"\n    {n} x ErrorFrame: {m}" for m, n in i.error_messages.items())
                + f"\n    reply after the idle period: {i.reply_spoken}/{i.reply_written} words"
                + "".join(f"\n    ErrorFrame during the reply: {m}" for m in i.reply_error_messages)
            )
        for p in r.problems:
            lines.append(f"  problem: {p}")
    return "\n".join(lines)


def to_json(bench: BenchResult) -> dict[str, Any]:
    """Everything, per run, for ``--json``."""
    return {
        "config": asdict(bench.config),
        "wall_s": bench.wall_s,
        "results": {name: asdict(r) for name, r in bench.results.items()},
        "table": format_table(bench),
    }
