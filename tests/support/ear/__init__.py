"""Barge-in heard at the listener's ear: headless Chromium, WebRTC, the web demo's bot.

:func:`record_barge_in` runs one session (:mod:`tests.support.ear.session`)
in a network namespace of its own whose only interface is ``lo``, and returns
what the page recorded: the fake microphone and the bot's remote track on one
clock, the page's clock pairs (AudioContext time to wall clock) and the bot's
own timestamps (wall clock). :mod:`tests.support.ear.analysis` reads it.
Shared by the browser test and the ear-level benchmark.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.ear.session import SessionConfig

__all__ = [
    "ANSWER",
    "CHROMIUM",
    "INTERRUPTED",
    "EarRecording",
    "SessionConfig",
    "record_barge_in",
]

#: Debian's Chromium (``.ci/run`` installs it when missing).
CHROMIUM = "/usr/bin/chromium"
_ROOT = Path(__file__).resolve().parents[3]

#: The bot's first reply in a session: long enough (about 13 s of tones) to be
#: talked over; every word's tone has a pitch of its own (see ``check_vocabulary``).
INTERRUPTED = " ".join(
    ["lighthouse keeper notebook harbour weather morning lantern anchor driftwood breakwater"] * 3
)
#: The answer after the user's turn, to be heard whole.
ANSWER = "river bakery market library violet walnut ships"


@dataclass(frozen=True)
class EarRecording:
    """What one session recorded.

    Attributes:
        mic: The fake microphone as the page captured it (float, ``sample_rate``).
        bot: The bot's remote track as the page played it, same clock.
        sample_rate: The page's AudioContext rate.
        meta: The page's report (clock pairs, events) and the fake microphone's plan.
        bot_events: ``[wall-clock s, kind, detail]`` from the bot's pipeline.
        out: The session's directory (logs, the WAV, the raw results).
    """

    mic: np.ndarray
    bot: np.ndarray
    sample_rate: int
    meta: dict[str, Any]
    bot_events: list[list[Any]]
    out: Path

    def wall_s(self, recording_s: float) -> float:
        """A time on the recording's clock as wall-clock seconds (the bot's clock)."""
        pairs = np.asarray(self.meta["clock"], dtype=np.float64)
        context_s = self.meta["first_frame"] / self.sample_rate + recording_s
        slope, intercept = np.polyfit(pairs[:, 0], pairs[:, 1], 1)
        return float(slope * context_s + intercept) / 1000.0


def _netns_command() -> list[str]:
    """``unshare`` for a new network namespace (and a user namespace when not root)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("the browser test needs util-linux's unshare for a loopback-only netns")
    command = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--map-root-user", "--net"]
    probe = subprocess.run([*command, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise RuntimeError(
            "cannot make a network namespace for the browser test "
            f"({' '.join(command)} failed: {probe.stderr.strip()}); run as root or allow "
            "unprivileged user namespaces"
        )
    return command


def record_barge_in(config: SessionConfig, *, timeout_s: float = 120.0) -> EarRecording:
    """Run one session in a loopback-only network namespace; return its recording.

    Raises:
        RuntimeError: Chromium is missing, no namespace can be made, or the
            session failed (the message carries its last output lines).
    """
    if not Path(config.chromium).exists():
        raise RuntimeError(f"{config.chromium} is missing: apt-get install chromium")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    config_path.write_text(json.dumps(asdict(config)))
    path = os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    done = subprocess.run(
        [*_netns_command(), sys.executable, "-m", "tests.support.ear", str(config_path)],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"the browser session failed ({done.returncode}) in {out}:\n{tail}")
    data = np.load(out / "recording.npz")
    meta = json.loads((out / "meta.json").read_text())
    return EarRecording(
        mic=data["mic"],
        bot=data["bot"],
        sample_rate=int(meta["sample_rate"]),
        meta=meta,
        bot_events=json.loads((out / "bot_events.json").read_text()),
        out=out,
    )
