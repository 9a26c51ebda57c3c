"""``pipecat-waves dicts``: a round trip with the local server, and one-line errors."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from pipecat_waves.cli import main as cli
from pipecat_waves.protocol.constants import SYNC_PATH
from pipecat_waves.server import LocalWavesServer, ToneBackend
from pipecat_waves.server.tones import transcribe_tones, words_of

SECRET = "sk-local-secret-d1c7"
PAIRS = "# how our words sound\nSQL = sequel\n\nNYC\tNew  York City\n"


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert out == ""
    return lines[0]


async def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(cli.main, list(args))
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    return code, out, err


async def test_round_trip_against_the_local_server(capsys, tmp_path, no_api_key):
    pairs = tmp_path / "words.txt"
    pairs.write_text(PAIRS)
    async with LocalWavesServer(api_key=SECRET, backend=ToneBackend()) as server:
        where = ["--base-url", server.base_url, "--api-key", SECRET]

        code, out, err = await _cli(capsys, "dicts", "create", str(pairs), *where)
        assert code == 0, err
        (dict_id,) = re.findall(r"dictionary (\w+) with 2 words", out)
        assert f'pronunciation_dicts=["{dict_id}"]' in out

        code, out, _ = await _cli(capsys, "dicts", "list", *where)
        assert code == 0
        assert out.splitlines()[0].startswith(f"{dict_id} (2 words, created ")
        assert out.splitlines()[1:] == ["  SQL = sequel", "  NYC = New York City"]

        # What the dictionary does to speech, asked for the way any client would.
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                server.base_url + SYNC_PATH,
                json={
                    "text": "SQL in NYC",
                    "voice_id": "avery",
                    "sample_rate": 16000,
                    "pronunciation_dicts": [dict_id],
                },
                headers={"Authorization": f"Bearer {SECRET}"},
            ) as r,
        ):
            pcm = await r.read()
        vocabulary = words_of("SQL in NYC sequel New York City")
        assert transcribe_tones(pcm, 16000, vocabulary) == "sequel in New York City".split()

        pairs.write_text("SQL\tess queue ell\n")
        code, out, _ = await _cli(capsys, "dicts", "update", dict_id, str(pairs), *where)
        assert code == 0 and f"updated pronunciation dictionary {dict_id}: now 1 word" in out
        code, out, _ = await _cli(capsys, "dicts", "list", *where)
        assert out.splitlines()[1:] == ["  SQL = ess queue ell"]

        code, out, _ = await _cli(capsys, "dicts", "delete", dict_id, *where)
        assert code == 0 and f"deleted pronunciation dictionary {dict_id}" in out
        code, out, _ = await _cli(capsys, "dicts", "list", *where)
        assert code == 0 and "no pronunciation dictionaries" in out


@pytest.mark.parametrize(
    ("content", "fix"),
    [
        ("", "has no pairs"),
        ("# only a comment\n", "has no pairs"),
        ("SQL sequel\n", "line 1: expected 'word = pronunciation'"),
        ("New York = NYC\n", "line 1: put one word before the '='"),
        ("SQL =   \n", "line 1: 'SQL' has no pronunciation"),
        ("SQL = sequel\n\nSQL = squeal\n", "line 3: 'SQL' is already on line 1"),
    ],
)
def test_bad_pairs_files_are_refused_before_any_network(content, fix, capsys, tmp_path):
    pairs = tmp_path / "words.txt"
    pairs.write_text(content)
    code = cli.main(["dicts", "create", str(pairs), "--base-url", "http://127.0.0.1:9"])
    assert code == 1
    line = _error_line(capsys)
    assert line.startswith("error: ") and fix in line


def test_a_missing_file_and_no_server_name_the_fix(capsys, tmp_path, no_api_key):
    code = cli.main(["dicts", "create", str(tmp_path / "nope.txt"), "--base-url", "http://x.test"])
    assert code == 1 and "does not exist" in _error_line(capsys)
    code = cli.main(["dicts", "list"])
    assert code == 1
    line = _error_line(capsys)
    assert "WAVES_API_KEY" in line and "--base-url" in line


async def test_server_refusals_are_one_line_naming_the_fix(capsys, tmp_path, no_api_key):
    pairs = tmp_path / "words.txt"
    pairs.write_text("SQL = sequel\nlong = " + "la " * 100 + "\n")
    async with LocalWavesServer(api_key=SECRET, backend=ToneBackend()) as server:
        where = ["--base-url", server.base_url, "--api-key", SECRET]
        code, _, err = await _cli(capsys, "dicts", "create", str(pairs), *where)
        assert code == 1 and "line 2: 'pronunciation' must be at most" in err
        assert len(err.splitlines()) == 1

        code, _, err = await _cli(capsys, "dicts", "delete", "0123456789abcdef01234567", *where)
        assert code == 1
        assert "no pronunciation dictionary '0123456789abcdef01234567'" in err
        assert "pipecat-waves dicts list" in err

        wrong = ["--base-url", server.base_url, "--api-key", "not-the-key"]
        code, _, err = await _cli(capsys, "dicts", "list", *wrong)
        assert code == 1 and "rejected the API key (HTTP 401)" in err
        assert "not-the-key" not in err

    code, _, err = await _cli(capsys, "dicts", "list", "--base-url", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach" in err and len(err.splitlines()) == 1
