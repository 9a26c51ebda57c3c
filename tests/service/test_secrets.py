"""The API key never shows up in logs, reprs, errors, frames or command output."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from loguru import logger

from pipecat_waves import WavesTTSService
from pipecat_waves.cli import main as cli
from pipecat_waves.credentials import ApiKeyError, clean_api_key, scrub
from pipecat_waves.log import logger as package_logger
from pipecat_waves.protocol.constants import LIVE_PATH
from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.service.connection import WavesConnectError, open_socket
from tests.service.helpers import API_KEY, heard, llm_turn, make_service, run

#: Keys as they arrive from a careless copy-paste: each is unusable as given.
BAD_KEYS = [
    pytest.param("sk-live-4a5b6c key-7d8e9f", id="inner space"),
    pytest.param("sk-live-4a5b6c\tkey-7d8e9f", id="inner tab"),
    pytest.param("sk-live-4a5b6c\nkey-7d8e9f", id="inner newline"),
    pytest.param("sk-live-4a5b6c\x07key-7d8e9f", id="control character"),
    pytest.param("sk-live-4a5b6c\x7fkey-7d8e9f", id="delete character"),
    pytest.param("sk-live-4a5b6c\u00e9key-7d8e9f", id="non-ASCII letter"),
    pytest.param("sk-live-4a5b6c\u200bkey-7d8e9f", id="zero-width space"),
    pytest.param("sk-live-4a5b6c\u00a0key-7d8e9f", id="no-break space"),
]


def _fragments(key: str) -> list[str]:
    """Pieces of ``key`` long enough that finding one means the key leaked."""
    return [key, key.strip(), *[part for part in key.split() if len(part) >= 6]]


def _assert_absent(key: str, text: str) -> None:
    for fragment in _fragments(key):
        assert fragment not in text, f"key text {fragment!r} leaked"
    assert repr(key)[1:-1] not in text


class _Captured:
    """Everything logged through loguru and stdlib logging while it is active."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog
        self.lines: list[str] = []

    def __enter__(self) -> _Captured:
        self._caplog.set_level(logging.DEBUG)
        self._sink = logger.add(self.lines.append, level="TRACE", format="{message} {exception}")
        return self

    def __exit__(self, *exc: object) -> None:
        logger.remove(self._sink)

    @property
    def text(self) -> str:
        return self._caplog.text + "".join(self.lines)


async def test_key_is_absent_from_every_log_even_at_debug(caplog: pytest.LogCaptureFixture):
    with _Captured(caplog) as captured:
        async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
            service = make_service(server)
            down, up = await run(service, llm_turn("Your code is safe."))
    assert heard(down, "Your code is safe.") == ["Your", "code", "is", "safe."]
    # The handshake headers were logged (websockets logs them at debug) ...
    assert "Bearer ***" in caplog.text
    # ... but never the key itself, there or anywhere else.
    everything = captured.text + repr(service) + "".join(map(str, up))
    assert API_KEY not in everything


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unusable_key_is_refused_at_construction_without_repeating_it(
    key: str, caplog: pytest.LogCaptureFixture
):
    with _Captured(caplog) as captured, pytest.raises(ApiKeyError) as info:
        WavesTTSService(api_key=key, base_url="ws://127.0.0.1:9")
    message = str(info.value)
    assert "api_key has a" in message and "Smallest.ai console" in message
    _assert_absent(key, message + captured.text)


@pytest.mark.parametrize("key", ["", "   ", "\n"])
def test_empty_key_is_refused(key: str):
    with pytest.raises(ApiKeyError, match="api_key is empty"):
        clean_api_key(key)


async def test_key_pasted_with_a_trailing_newline_works_and_is_never_shown(
    caplog: pytest.LogCaptureFixture,
):
    with _Captured(caplog) as captured:
        async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
            service = WavesTTSService(
                api_key=f"  {API_KEY}\r\n", base_url=server.ws_base_url, sample_rate=16000
            )
            down, up = await run(service, llm_turn("Trimmed keys work."))
    assert heard(down, "Trimmed keys work.") == ["Trimmed", "keys", "work."]
    assert not [f for f in up if "error" in type(f).__name__.lower()]
    _assert_absent(API_KEY, captured.text + "".join(map(str, up)))


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_a_library_error_quoting_the_key_is_scrubbed(key: str):
    # Below the service's check, a bad header makes websockets quote it back.
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        with pytest.raises(WavesConnectError) as info:
            await open_socket(
                server.ws_base_url + LIVE_PATH, key, extra_headers={}, open_timeout_s=5
            )
    _assert_absent(key, str(info.value) + info.value.detail)


def test_the_package_logger_scrubs_known_keys_whatever_logged_them():
    with pytest.raises(ApiKeyError):
        clean_api_key("sk-remembered-0a1b2c key")
    lines: list[str] = []
    sink = logger.add(lines.append, format="{message} {exception}")
    try:
        package_logger.warning("server said: sk-remembered-0a1b2c key is wrong")
        try:
            raise RuntimeError("invalid header: Bearer sk-remembered-0a1b2c key")
        except RuntimeError:
            package_logger.exception("connect failed")
    finally:
        logger.remove(sink)
    text = "".join(lines)
    assert "connect failed" in text and "***" in text
    assert "sk-remembered-0a1b2c" not in text


def test_scrub_replaces_escaped_forms_and_any_bearer_token():
    key = "sk-\u00e9\n-abcdef"
    for form in (key, repr(key)[1:-1], key.encode("unicode_escape").decode()):
        assert scrub(f"bad header: {form}!", key) == "bad header: ***!"
    assert scrub("Authorization: Bearer anything-at-all") == "Authorization: Bearer ***"


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize("command", ["say", "voices"])
async def test_cli_never_prints_a_bad_key(key: str, command: str, capsys, tmp_path, monkeypatch):
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        args = [command, "--base-url", server.ws_base_url, "--api-key", key, "--verbose"]
        if command == "say":
            args[1:1] = ["hi", "-o", str(tmp_path / "x.wav")]
        code = await asyncio.to_thread(cli.main, args)
    out, err = capsys.readouterr()
    assert code == 1
    assert "api_key has a" in err and "--api-key or WAVES_API_KEY" in err
    _assert_absent(key, out + err)


async def test_cli_never_prints_a_bad_key_from_the_environment(capsys, tmp_path, monkeypatch):
    key = "sk-env-1f2e3d\u00e9c4b5a6"
    monkeypatch.setenv("WAVES_API_KEY", key)
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        code = await asyncio.to_thread(
            cli.main, ["voices", "--base-url", server.base_url, "--verbose"]
        )
    out, err = capsys.readouterr()
    assert code == 1
    _assert_absent(key, out + err)


def test_voices_refuses_to_send_the_key_over_plain_http_to_another_host(capsys):
    # 192.0.2.1 is a documentation address: nothing is ever listening there,
    # and the refusal must come before any attempt to connect.
    code = cli.main(["voices", "--base-url", "http://192.0.2.1", "--api-key", API_KEY])
    out, err = capsys.readouterr()
    assert code == 1
    assert "https://" in err and "unencrypted" in err
    assert API_KEY not in out + err


def test_service_refuses_plain_ws_to_another_host():
    with pytest.raises(ValueError, match="unencrypted") as info:
        WavesTTSService(api_key=API_KEY, base_url="ws://192.0.2.1")
    assert API_KEY not in str(info.value)


async def test_server_records_never_keep_the_authorization_header():
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True) as server:
        await run(make_service(server), llm_turn("Hello."))
        records = server.connections
    assert records, "the service connected"
    for record in records:
        assert "Authorization" not in record.headers
        assert API_KEY not in repr(record)


async def test_a_redirect_is_not_followed_with_the_key():
    """A server answering the upgrade with a redirect never gets a second request."""
    hits: list[str] = []

    async def target(request: web.Request) -> web.Response:
        hits.append(request.headers.get("Authorization", ""))
        return web.Response(status=400)

    target_app = web.Application()
    target_app.router.add_get(LIVE_PATH, target)
    target_runner = web.AppRunner(target_app)
    await target_runner.setup()
    target_site = web.TCPSite(target_runner, "127.0.0.1", 0)
    await target_site.start()
    target_port = target_runner.addresses[0][1]

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"ws://127.0.0.1:{target_port}{LIVE_PATH}")

    app = web.Application()
    app.router.add_get(LIVE_PATH, redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with pytest.raises(WavesConnectError) as info:
            await open_socket(
                f"ws://127.0.0.1:{port}{LIVE_PATH}", API_KEY, extra_headers={}, open_timeout_s=5
            )
    finally:
        await runner.cleanup()
        await target_runner.cleanup()
    assert info.value.permanent and info.value.status == 302
    assert "redirect" in str(info.value)
    assert hits == []


def test_a_base_url_holding_credentials_is_refused_without_repeating_them():
    with pytest.raises(ValueError, match="must not hold credentials") as info:
        WavesTTSService(api_key=API_KEY, base_url="wss://user:sk-in-url-998877@api.smallest.ai")
    assert "sk-in-url-998877" not in str(info.value)


async def test_open_socket_itself_refuses_plain_text_to_another_host():
    with pytest.raises(WavesConnectError, match="unencrypted") as info:
        await open_socket(f"ws://192.0.2.1{LIVE_PATH}", API_KEY, extra_headers={}, open_timeout_s=5)
    assert info.value.permanent
