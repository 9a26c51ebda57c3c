"""``pipecat-waves probe`` and ``serve --like``: arguments, confirmation, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipecat_waves import ServerTraits
from pipecat_waves.cli import main as cli
from pipecat_waves.cli.commands import CliError
from pipecat_waves.probe import ProbeReport, probe_characters
from pipecat_waves.probe.command import behaviour_from_file, run_probe_command
from pipecat_waves.server import LocalWavesServer, ServerBehaviour, ToneBackend

KEY = "probe-cli-key"


def test_probe_without_a_key_or_url_names_both_fixes(monkeypatch, capsys):
    for name in ("WAVES_API_KEY", "SMALLEST_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["probe", "--yes"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: nothing to probe")
    assert "WAVES_API_KEY" in err and "--base-url" in err
    assert len(err.splitlines()) == 1


def test_probe_refuses_plain_text_to_another_machine(capsys):
    code = cli.main(["probe", "--yes", "--api-key", KEY, "--base-url", "ws://example.com"])
    assert code == 1
    err = capsys.readouterr().err
    assert "refusing to send the API key unencrypted" in err
    assert KEY not in err


def test_probe_json_into_a_missing_folder_is_refused_before_connecting(tmp_path, capsys):
    target = tmp_path / "nope" / "probe.json"
    # Port 9 on loopback has no server: the file check must come first.
    args = ["probe", "--yes", "--base-url", "ws://127.0.0.1:9", "--json", str(target)]
    assert cli.main(args) == 1
    assert "folder" in capsys.readouterr().err


async def test_probe_not_confirmed_sends_nothing(monkeypatch, capsys):
    async with LocalWavesServer(KEY, backend=ToneBackend(), record=True) as server:
        monkeypatch.setattr("sys.stdin.isatty", lambda: True)
        with pytest.raises(CliError, match="not confirmed"):
            await run_probe_command(
                api_key=KEY,
                base_url=server.ws_base_url,
                json_path=None,
                assume_yes=False,
                idle_wait_s=0,
                ask=lambda _prompt: "n",
            )
        assert server.connections == []
    assert f"sends {probe_characters()} characters" in capsys.readouterr().err


async def test_probe_without_a_terminal_asks_for_yes(capsys):
    async with LocalWavesServer(KEY, backend=ToneBackend()) as server:
        with pytest.raises(CliError, match="add --yes"):
            await run_probe_command(
                api_key=KEY,
                base_url=server.ws_base_url,
                json_path=None,
                assume_yes=False,
                idle_wait_s=0,
            )


async def test_probe_writes_a_file_that_serve_like_reads(tmp_path):
    target = tmp_path / "probe.json"
    behaviour = ServerBehaviour(complete_delay_ms=0, echo_external_request_id=True)
    async with LocalWavesServer(KEY, backend=ToneBackend(), behaviour=behaviour) as server:
        out = await run_probe_command(
            api_key=KEY,
            base_url=server.ws_base_url,
            json_path=target,
            assume_yes=True,
            idle_wait_s=0,
            settle_s=0.2,
            pause_s=0.5,
            quiet_close_s=0.3,
        )
    report = ProbeReport.from_json(json.loads(target.read_text()))
    assert out.startswith(report.table())
    assert "request_id echo (one-shot)" in out
    assert KEY not in out and KEY not in target.read_text()
    assert f"ServerTraits.from_file({str(target)!r})" in out, "how to use it in a bot"
    assert ServerTraits.from_file(target) == ServerTraits.from_probe(report)
    like = behaviour_from_file(target)
    assert like == ServerBehaviour.from_probe(report)
    assert like.echo_external_request_id is True
    assert like.complete_delay_ms == 0

    args = cli._build_parser().parse_args(
        ["serve", "--no-auth", "--like", str(target), "--complete-backoff-ms", "250"]
    )
    served = cli._serve_behaviour(args)
    assert served.echo_external_request_id is True
    assert served.complete_delay_ms == 250  # an explicit flag wins over the file


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), ("{", "is not JSON"), ('{"a": 1}', "not a probe report")],
)
def test_serve_like_a_bad_file_is_one_error_line(tmp_path, capsys, content, message):
    path = tmp_path / "like.json"
    if content is not None:
        path.write_text(content)
    assert cli.main(["serve", "--no-auth", "--backend", "tone", "--like", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --like") and message in err
    assert len(err.splitlines()) == 1


def test_serve_like_is_the_recorded_behaviour(tmp_path: Path) -> None:
    data = {"findings": [{"point": "p", "observed": "o", "switches": {"error_shape": "nested"}}]}
    path = tmp_path / "like.json"
    path.write_text(json.dumps(data))
    assert behaviour_from_file(path) == ServerBehaviour(error_shape="nested")


@pytest.mark.parametrize("page", ["README.md", "docs/probe.md"])
def test_the_docs_state_the_characters_the_probe_sends(page: str) -> None:
    text = (Path(__file__).resolve().parents[2] / page).read_text()
    assert f"states the characters it sends ({probe_characters()})" in text
