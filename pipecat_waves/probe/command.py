"""``pipecat-waves probe``: run the probe against a server and print its table.

The probe costs synthesis on a real account, so the command says up front
how many characters it will send and waits for a yes (unless ``--yes``).
Every failure is a :class:`~pipecat_waves.cli.commands.CliError` naming the fix.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipecat_waves.cli.commands import (
    API_KEY_ENVS,
    CliError,
    Endpoint,
    check_reachable,
    open_endpoint,
)
from pipecat_waves.probe.findings import ProbeReport
from pipecat_waves.probe.runner import ProbeConfig, probe_characters, run_probe
from pipecat_waves.server.behaviour import ServerBehaviour


def check_json_path(path: Path | None) -> None:
    """Refuse an unwritable ``--json`` before any character is spent.

    Raises:
        CliError: The path is a folder, or its folder does not exist.
    """
    if path is None:
        return
    if path.is_dir():
        raise CliError(f"--json {path} is a folder; give a file name such as {path / 'probe.json'}")
    if not path.parent.is_dir():
        raise CliError(f"--json {path}: folder {path.parent} does not exist")


def announce(endpoint: Endpoint, idle_wait_s: float) -> str:
    """What the probe will do and cost, said before it starts."""
    wait = f"up to {idle_wait_s + 30:.0f} s" if idle_wait_s > 0 else "about 30 s"
    return (
        f"The probe sends {probe_characters()} characters for synthesis to "
        f"{endpoint.describe()} in about 30 short requests, and takes {wait}."
    )


def confirm(ask: Callable[[str], str] = input) -> bool:
    """Ask on the terminal whether to go on.

    Raises:
        CliError: There is no terminal to ask on.
    """
    if not sys.stdin.isatty():
        raise CliError("cannot ask for confirmation without a terminal; add --yes to run the probe")
    try:
        answer = ask("Continue? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


async def run_probe_command(
    *,
    api_key: str | None,
    base_url: str | None,
    json_path: Path | None,
    assume_yes: bool,
    idle_wait_s: float,
    ask: Callable[[str], str] = input,
    **waits: float,
) -> str:
    """Probe the server; write ``--json``; return the table and a summary.

    ``waits`` overrides :class:`~pipecat_waves.probe.ProbeConfig`'s waits
    (``settle_s``, ``pause_s``, ``quiet_close_s``), for a server on loopback.

    Raises:
        CliError: No server was named, the user said no, the server cannot
            be reached or refuses the key, or the JSON file cannot be written.
    """
    if api_key is None and base_url is None:
        envs = " or ".join(API_KEY_ENVS)
        raise CliError(
            f"nothing to probe: set {envs} (or pass --api-key) to probe Smallest.ai Waves, "
            "or give --base-url ws://127.0.0.1:8765 to probe a 'pipecat-waves serve'"
        )
    if idle_wait_s < 0:
        raise CliError("--idle-wait must be 0 (skip) or more seconds")
    check_json_path(json_path)
    async with open_endpoint(api_key, base_url, backend="tone") as endpoint:
        print(announce(endpoint, idle_wait_s), file=sys.stderr, flush=True)
        if not assume_yes and not confirm(ask):
            raise CliError("probe not run (not confirmed); add --yes to skip the question")
        await check_reachable(endpoint)
        config = ProbeConfig(endpoint.ws_base, endpoint.api_key, idle_wait_s=idle_wait_s, **waits)
        try:
            report = await run_probe(config)
        except Exception as e:
            raise CliError(f"the probe stopped: {type(e).__name__}: {e}; try again") from None
    if json_path is not None:
        write_report(json_path, report)
    written = (
        f"; wrote {json_path} (use it with 'pipecat-waves serve --like', or in a bot with "
        f"WavesTTSService(server_traits=ServerTraits.from_file({str(json_path)!r})))"
        if json_path
        else ""
    )
    return f"{report.table()}\n\n{report.characters} characters sent{written}"


def write_report(path: Path, report: ProbeReport) -> None:
    """Write the report as JSON.

    Raises:
        CliError: The file cannot be written.
    """
    try:
        path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}") from None


def behaviour_from_file(path: Path) -> ServerBehaviour:
    """The server behaviour a ``probe --json`` file recorded.

    Raises:
        CliError: The file is missing, not JSON, or not a probe report.
    """
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(
            f"--like {path}: no such file; write one with 'pipecat-waves probe --json'"
        ) from None
    except OSError as e:
        raise CliError(f"--like {path}: cannot read it ({e.strerror or e})") from None
    except ValueError:
        raise CliError(
            f"--like {path} is not JSON; give a file written by 'pipecat-waves probe --json'"
        ) from None
    try:
        return ServerBehaviour.from_probe(data)
    except ValueError as e:
        raise CliError(
            f"--like {path}: {e}; give a file written by 'pipecat-waves probe --json'"
        ) from None
