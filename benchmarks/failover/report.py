"""The failover benchmark's report: its two tables, settings and details."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from benchmarks.failover.config import (
    BLIP,
    OUTAGE,
    SCENARIOS,
    SWITCH_BACK,
    FailoverConfig,
    Scenario,
)
from benchmarks.failover.run import FailoverBench, FailoverRun
from benchmarks.harness import (
    OURS,
    THEIRS,
    describe,
    settings_of,
)

# ----------------------------------------------------------------- report


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    if not values:
        return "n/a"
    med, low, high = (fmt.format(v) for v in (statistics.median(values), min(values), max(values)))
    return med if low == high else f"{med} ({low}-{high})"


def _ratio(ours: float | None, theirs: float | None, higher_is_better: bool) -> str:
    """How many times better ours is (> 1: ours is better; inf is "never")."""
    if ours is None or theirs is None:
        return "n/a"
    if ours == theirs:
        return "1.0x (equal)"
    num, den = (ours, theirs) if higher_is_better else (theirs, ours)
    if math.isinf(num) or den == 0:
        return "∞"
    if math.isinf(den) or num == 0:
        return "0x"
    return f"{num / den:.1f}x"


def _silences(runs: Sequence[FailoverRun]) -> list[float]:
    """Silence per run; a run where no later turn was heard counts as infinite."""
    return [r.silence_s if r.silence_s is not None else math.inf for r in runs]


def _silence_cell(runs: Sequence[FailoverRun]) -> str:
    if not runs:
        return "n/a"
    values = _silences(runs)
    if all(math.isinf(v) for v in values):
        return f"rest of the call (> {min(r.observed_s for r in runs):.1f})"
    cell = _spread([v for v in values if not math.isinf(v)])
    never = sum(math.isinf(v) for v in values)
    return cell + (f"; {never} run{'s' * (never != 1)} never" if never else "")


def _heard_cell(runs: Sequence[FailoverRun], n: int) -> str:
    if not runs:
        return "n/a"
    return _spread([float(r.later_heard) for r in runs], "{:.0f}") + f" of {n - 1}"


def _went_false_cell(runs: Sequence[FailoverRun]) -> str:
    if not runs:
        return "n/a"
    times = [r.unusable_s for r in runs if r.unusable_s is not None]
    if not times:
        return f"never (0/{len(runs)} runs)"
    return f"{len(times)}/{len(runs)} runs, {_spread(times)} s after the kill"


def _usable_again_cell(runs: Sequence[FailoverRun]) -> str:
    if not runs:
        return "n/a"
    times = [r.usable_again_s for r in runs if r.usable_again_s is not None]
    if not times:
        return f"never (0/{len(runs)} runs)"
    return f"{len(times)}/{len(runs)} runs, {_spread(times, '{:.2f}')} s after the restart"


def _errors_cell(runs: Sequence[FailoverRun]) -> str:
    """ErrorFrames of both services, and how many of them the backup's."""
    if not runs:
        return "n/a"
    cell = _spread([float(r.errors) for r in runs], "{:.0f}")
    backup = [float(len(r.backup_errors)) for r in runs]
    return cell + (f" (backup: {_spread(backup, '{:.0f}')})" if any(backup) else "")


def _count(runs: Sequence[FailoverRun], pick: Callable[[FailoverRun], float]) -> float | None:
    return _median([pick(r) for r in runs])


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_tables(bench: FailoverBench) -> str:
    """Two Markdown tables: the failover (and blip), and the switch back."""
    n = len(bench.config.turns)
    out = {s: bench.runs(OURS, s) for s in SCENARIOS}
    theirs = {s: bench.runs(THEIRS, s) for s in SCENARIOS}
    header = ("Metric", OURS, THEIRS, "ours better by")

    def heard_row(label: str, s: Scenario) -> list[str]:
        return [
            label,
            _heard_cell(out[s], n),
            _heard_cell(theirs[s], n),
            _ratio(
                _count(out[s], lambda r: r.later_heard),
                _count(theirs[s], lambda r: r.later_heard),
                higher_is_better=True,
            ),
        ]

    def errors_row(label: str, s: Scenario) -> list[str]:
        return [
            label,
            _errors_cell(out[s]),
            _errors_cell(theirs[s]),
            _ratio(
                _count(out[s], lambda r: r.errors),
                _count(theirs[s], lambda r: r.errors),
                higher_is_better=False,
            ),
        ]

    def failovers(runs: Sequence[FailoverRun]) -> str:
        if not runs:
            return "n/a"
        return f"{sum(r.unusable_s is not None for r in runs)}/{len(runs)} runs"

    later = f"2-{n}"
    first_table = _table(
        header,
        [
            heard_row(f"Outage: turns {later} heard whole", OUTAGE),
            [
                "Outage: silence from the kill to the first audio of a later turn (s)",
                _silence_cell(out[OUTAGE]),
                _silence_cell(theirs[OUTAGE]),
                _ratio(
                    _median(_silences(out[OUTAGE])),
                    _median(_silences(theirs[OUTAGE])),
                    higher_is_better=False,
                ),
            ],
            errors_row("Outage: ErrorFrames (primary + backup)", OUTAGE),
            [
                "Outage: primary's is_usable went false",
                _went_false_cell(out[OUTAGE]),
                _went_false_cell(theirs[OUTAGE]),
                "",
            ],
            heard_row(f"Blip ({bench.config.blip_s:g} s): turns {later} heard whole", BLIP),
            errors_row(f"Blip ({bench.config.blip_s:g} s): ErrorFrames", BLIP),
            [
                f"Blip ({bench.config.blip_s:g} s): failed over (is_usable went false)",
                failovers(out[BLIP]),
                failovers(theirs[BLIP]),
                "",
            ],
        ],
    )

    def back_turns(runs: Sequence[FailoverRun]) -> str:
        after = range(bench.config.back_after_turn, n)
        if not runs or not after:
            return "n/a"
        spoken = [float(sum(r.heard[k] and r.turn_servers[k] == "A'" for k in after)) for r in runs]
        return _spread(spoken, "{:.0f}") + f" of {len(after)}"

    turns_back = f"{bench.config.back_after_turn + 1}-{n}"
    second_table = _table(
        header,
        [
            heard_row(f"Turns {later} heard whole", SWITCH_BACK),
            [
                "on_usable_changed(True) fired after server A came back",
                _usable_again_cell(out[SWITCH_BACK]),
                _usable_again_cell(theirs[SWITCH_BACK]),
                "",
            ],
            [
                f"Turns {turns_back} spoken whole by server A (the primary's) after it came back",
                back_turns(out[SWITCH_BACK]),
                back_turns(theirs[SWITCH_BACK]),
                "",
            ],
            errors_row("ErrorFrames (primary + backup)", SWITCH_BACK),
        ],
    )
    return (
        f"Failover, primary's server killed after turn 1 of {n}:\n\n{first_table}\n\n"
        f"Switching back, server A back after turn {bench.config.back_after_turn}:\n\n"
        f"{second_table}"
    )


def format_settings(cfg: FailoverConfig) -> str:
    """The settings a run used, for the report."""
    switches = describe(settings_of(cfg.server))
    return "\n".join(
        [
            f"{len(cfg.turns)} turns {cfg.turn_gap_s:g} s apart, sample rate {cfg.sample_rate} Hz, "
            f"tone backend, two in-process servers per service on 127.0.0.1 ({switches})",
            f"server A goes away {cfg.kill_after_s:g} s after turn 1 was sent "
            f"(turn 2 follows {cfg.turn_gap_s - cfg.kill_after_s:g} s later); "
            f"switch back: A returns {cfg.back_delay_s:g} s after turn {cfg.back_after_turn} "
            f"was sent; blip: A refuses for {cfg.blip_s:g} s",
            f"after the last turn: up to {cfg.tail_s:g} s for turns not yet heard; "
            f"{cfg.runs} run(s) per scenario and service (median, min-max in brackets)",
        ]
    )


def format_details(bench: FailoverBench) -> str:
    """Per run: turns heard, first audio, servers, errors, switches."""
    lines: list[str] = []
    for name in bench.results:
        lines.append(f"{name}:")
        for scenario in SCENARIOS:
            for i, r in enumerate(bench.runs(name, scenario), 1):
                turns = " ".join(
                    f"{k + 1}:{'ok' if ok else 'LOST'}"
                    + (f"@{t:.2f}s" if t is not None else "")
                    + f"[{srv}]"
                    for k, (ok, t, srv) in enumerate(
                        zip(r.heard, r.first_audio_s, r.turn_servers, strict=True)
                    )
                )
                lines.append(
                    f"  {scenario.key} run {i}: kill at {r.kill_s:.2f} s"
                    + (f", back at {r.restart_s:.2f} s" if r.restart_s is not None else "")
                    + f"; turns (first audio after send, servers) {turns}"
                )
                lines.append(
                    "    switches (s from the kill): "
                    + (", ".join(f"{role}@{t:.2f}" for t, role in r.switches) or "none")
                    + f"; ErrorFrames past the switcher: {r.edge_errors}"
                    + (f"; {r.unknown_tones} unknown tones" if r.unknown_tones else "")
                )
                for role, messages in (("primary", r.primary_errors), ("backup", r.backup_errors)):
                    for message, count in _tally(messages):
                        lines.append(f"    {role} ErrorFrame x{count}: {message[:160]}")
        for problem in bench.problems[name]:
            lines.append(f"  problem: {problem}")
    return "\n".join(lines)


def _tally(messages: Sequence[str]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for m in messages:
        counts[m] = counts.get(m, 0) + 1
    return list(counts.items())
