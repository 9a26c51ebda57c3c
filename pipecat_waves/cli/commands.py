"""``pipecat-waves say``, and what the commands share (endpoint, logs, errors).

``say`` and ``voices`` (:mod:`pipecat_waves.cli.voices`) talk to the real
Waves API when an API key is at hand (``--api-key``, ``WAVES_API_KEY`` or
``SMALLEST_API_KEY``) and otherwise start the embedded
:class:`~pipecat_waves.server.LocalWavesServer` on 127.0.0.1, so they work
offline on a fresh install.

Every failure is a :class:`CliError` whose message is one line naming the fix;
the command line prints it and exits non-zero. The API key is never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from loguru import logger

from pipecat_waves.credentials import ApiKeyError, check_transport, clean_api_key
from pipecat_waves.protocol import constants as c
from pipecat_waves.protocol import errors as pe
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.audio import PcmAligner, duration_s
from pipecat_waves.protocol.requests import VoiceParams, build_one_shot
from pipecat_waves.protocol.text import split_at_words, split_sentences

#: Environment variables read for the API key, in this order.
API_KEY_ENVS = ("WAVES_API_KEY", "SMALLEST_API_KEY")

#: Longest wait for the next server frame before giving up on a reply.
RECEIVE_TIMEOUT_S = 30.0
#: Limit on opening a connection.
OPEN_TIMEOUT_S = 10.0


class CliError(Exception):
    """A failure the user can fix; the message is one line that says how."""


# ---------------------------------------------------------------- endpoint


def api_key_from(explicit: str | None) -> str | None:
    """The API key to use: ``explicit``, else the first of :data:`API_KEY_ENVS` set."""
    if explicit:
        return explicit
    for name in API_KEY_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


@dataclass(frozen=True)
class Endpoint:
    """Where requests go.

    Attributes:
        ws_base: ``ws(s)://host[:port]`` origin of the live socket.
        http_base: ``http(s)://host[:port]`` origin of the HTTP endpoints.
        api_key: Bearer token, or None to send no ``Authorization`` header.
        local: The embedded server started by this process.
    """

    ws_base: str
    http_base: str
    api_key: str | None
    local: bool
    base_url_given: bool = False

    @property
    def is_smallest(self) -> bool:
        """Smallest.ai's own service (not a server on this machine or elsewhere)."""
        host = urlsplit(self.ws_base).hostname or ""
        return host == "smallest.ai" or host.endswith(".smallest.ai")

    @property
    def on_this_machine(self) -> bool:
        """A server on this machine: the embedded one or a ``pipecat-waves serve``."""
        from pipecat_waves.service.connection import is_loopback_host

        return self.local or is_loopback_host(urlsplit(self.ws_base).hostname)

    def describe(self) -> str:
        """Where the audio comes from, for people (never shows the key)."""
        if self.local:
            return f"the embedded local Waves-compatible server at {self.ws_base}"
        if self.is_smallest:
            return f"Smallest.ai Waves at {self.ws_base}"
        if self.on_this_machine:
            return f"the local Waves-compatible server at {self.ws_base}"
        return f"the Waves server at {self.ws_base}"

    def auth_headers(self) -> dict[str, str]:
        """Headers every request carries."""
        headers = {"X-Source": "pipecat-waves-cli"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


def _origins(base_url: str) -> tuple[str, str]:
    """Split any of ws/wss/http/https into the (websocket, http) origins."""
    parts = urlsplit(base_url.strip().rstrip("/"))
    secure = parts.scheme in ("wss", "https")
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.netloc:
        raise CliError(
            f"--base-url {base_url!r} is not a URL; give an origin such as wss://api.smallest.ai"
        )
    rest = parts.netloc + parts.path
    return (f"{'wss' if secure else 'ws'}://{rest}", f"{'https' if secure else 'http'}://{rest}")


def make_backend(name: str) -> Any:
    """The embedded server's synthesizer: ``piper`` (real speech) or ``tone`` (tests)."""
    if name == "tone":
        from pipecat_waves.server.backends import ToneBackend

        return ToneBackend()
    from pipecat_waves.server.piper_backend import PiperBackend

    return PiperBackend()


@contextlib.asynccontextmanager
async def open_endpoint(
    api_key: str | None, base_url: str | None, backend: str = "piper"
) -> AsyncIterator[Endpoint]:
    """Pick the endpoint, starting the embedded server when there is no key.

    Args:
        api_key: Key from the command line or environment, or None.
        base_url: Explicit server origin, or None for the default choice.
        backend: Synthesizer of the embedded server (``piper`` or ``tone``).

    Yields:
        The endpoint; an embedded server lives until the block ends.

    Raises:
        CliError: ``base_url`` is malformed, or the offline voice is missing.
    """
    if api_key is not None:
        try:
            api_key = clean_api_key(api_key)
        except ApiKeyError as e:
            raise CliError(f"{e} (--api-key or WAVES_API_KEY)") from None
    if base_url is not None:
        ws_base, http_base = _origins(base_url)
        if api_key is not None:
            parts = urlsplit(base_url.strip())
            try:
                check_transport(parts.scheme, parts.hostname, flag="--base-url")
            except ValueError as e:
                raise CliError(str(e)) from None
        yield Endpoint(ws_base, http_base, api_key, local=False, base_url_given=True)
        return
    if api_key is not None:
        ws_base, http_base = _origins(c.DEFAULT_BASE_URL)
        yield Endpoint(ws_base, http_base, api_key, local=False)
        return

    from pipecat_waves.server import LocalWavesServer

    synthesizer = make_backend(backend)
    if hasattr(synthesizer, "warm_up"):
        try:
            # Loaded before the first request, so no reply pays for it.
            await asyncio.to_thread(synthesizer.warm_up)
        except RuntimeError as e:
            raise CliError(
                f"{e} (or set WAVES_API_KEY to use the Waves API instead of the offline voice)"
            ) from None
    # A throwaway key: the embedded server still authenticates, like the real one.
    local_key = secrets.token_urlsafe(16)
    async with LocalWavesServer(local_key, backend=synthesizer) as server:
        yield Endpoint(server.ws_base_url, server.base_url, local_key, local=True)


#: Log level for each ``-v`` count, after the command's default.
_VERBOSE_LEVELS = {1: "INFO", 2: "DEBUG"}


@contextlib.contextmanager
def command_logs(verbosity: int, *, default_level: str | None = None) -> Iterator[None]:
    """Log at the level a user asked for during a command.

    Without ``-v`` the commands report what matters themselves, in one line,
    so library logs are off (``default_level`` None) or limited to
    ``default_level``; ``-v`` shows what happens once (connections, replies
    that fail), ``-vv`` every detail down to audio chunks.

    Args:
        verbosity: How many times ``-v`` was given.
        default_level: Level shown without ``-v``; None shows nothing.
    """
    level = _VERBOSE_LEVELS.get(min(verbosity, 2), default_level)
    if level is None:
        names = ("pipecat", "pipecat_waves")
        for name in names:
            logger.disable(name)
        try:
            yield
        finally:
            for name in names:
                logger.enable(name)
        return
    logger.remove()
    sink = logger.add(sys.stderr, level=level)
    try:
        yield
    finally:
        logger.remove(sink)
        # loguru's own default, for whoever runs next in-process: the process's
        # stderr, not the one of the moment (a caller may have swapped it, and
        # may close it later).
        logger.add(sys.__stderr__ or sys.stderr)


#: Output formats, by file extension: WAV, or bare PCM16 little-endian mono.
OUTPUT_FORMATS = {".wav": "wav", ".pcm": "pcm", ".raw": "pcm"}


def output_format(path: Path) -> str:
    """The audio format ``path``'s extension asks for.

    Raises:
        CliError: The path is a folder, or names a format this tool cannot write.
    """
    if path.is_dir():
        raise CliError(
            f"cannot write {path}: it is a folder; give a file name such as {path / 'out.wav'}"
        )
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        shown = f"a {suffix} file" if suffix else "a file without an extension"
        raise CliError(
            f"cannot write {shown} ({path}): only WAV is written, or raw PCM16 to .pcm/.raw; "
            f"give a name ending in .wav, e.g. -o {path.with_suffix('.wav').name}"
        )
    if not path.parent.is_dir():
        raise CliError(f"cannot write {path}: folder {path.parent} does not exist")
    return OUTPUT_FORMATS[suffix]


# -------------------------------------------------------------------- say


@dataclass(frozen=True)
class SayRequest:
    """What ``say`` was asked to do, validated by :func:`validate_say`."""

    text: str
    output: Path
    voice: str = "avery"
    model: str = c.DEFAULT_MODEL
    sample_rate: int = 24000
    speed: float | None = None
    language: str | None = None


def validate_say(request: SayRequest) -> None:
    """Check everything that can be checked without the network.

    Raises:
        CliError: Naming the argument at fault and what to give instead.
    """
    if not request.text.strip():
        raise CliError('nothing to say: give the text to speak, e.g. pipecat-waves say "Hello"')
    if request.sample_rate not in c.SAMPLE_RATES:
        rates = ", ".join(map(str, c.SAMPLE_RATES))
        raise CliError(
            f"Waves cannot produce {request.sample_rate} Hz audio; "
            f"use --sample-rate with one of {rates}"
        )
    if request.speed is not None and not c.SPEED_MIN <= request.speed <= c.SPEED_MAX:
        raise CliError(
            f"--speed {request.speed:g} is out of range; use a value from "
            f"{c.SPEED_MIN} to {c.SPEED_MAX} (1.0 is normal pace)"
        )
    if request.model not in c.MODELS:
        raise CliError(
            f"unknown model {request.model!r}; use --model with one of "
            f"{', '.join(sorted(c.MODELS))}"
        )
    if request.language is not None and request.language not in c.LANGUAGES:
        raise CliError(
            f"unknown language {request.language!r}; use --language with one of "
            f"{', '.join(sorted(c.LANGUAGES))}"
        )
    if not request.voice.strip():
        raise CliError("--voice is empty; run 'pipecat-waves voices' to list the voice ids")
    output_format(request.output)


def split_text(text: str, limit: int = c.MAX_FRAGMENT_CHARS) -> list[str]:
    """Cut ``text`` into sentence-sized requests of at most ``limit`` characters.

    The API speaks best from short requests; a sentence longer than ``limit``
    is cut at the last space that fits (or hard, for one enormous word).
    """
    pieces: list[str] = []
    for sentence in split_sentences(text):
        pieces += [p.strip() for p in split_at_words(sentence, limit + 1) if p.strip()]
    return pieces


class Progress:
    """``synthesizing… 1.2 s of audio`` on a terminal, rewritten in place.

    Nothing is written when the stream is not a terminal, so a script's log
    keeps only the final result (or the one-line error).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._live = self._stream.isatty()
        self._shown = False

    def update(self, seconds: float) -> None:
        """Show how much audio has arrived so far."""
        if self._live:
            self._stream.write(f"\rsynthesizing… {seconds:.1f} s of audio")
            self._stream.flush()
            self._shown = True

    def clear(self) -> None:
        """Remove the progress line before anything else is printed."""
        if self._shown:
            self._stream.write("\r\033[K")
            self._stream.flush()
            self._shown = False


def _server_error(error: rs.ServerError, request: SayRequest, endpoint: Endpoint) -> CliError:
    if pe.names(error, pe.Subject.VOICE):
        return CliError(pe.cli_unknown_voice(request.voice))
    if pe.kind_of(error) is pe.ErrorKind.AUTH:
        return bad_key_error(401, endpoint)
    return CliError(f"{server_name(endpoint)} refused the request: {error.message}")


def server_name(endpoint: Endpoint) -> str:
    """Who answered, in a sentence: Smallest.ai, or the server at the URL."""
    if endpoint.is_smallest:
        return "Smallest.ai Waves"
    if endpoint.on_this_machine:
        return f"the local server at {endpoint.ws_base}"
    return f"the Waves server at {endpoint.ws_base}"


def bad_key_error(status: int, endpoint: Endpoint) -> CliError:
    """A refused key, with the fix that fits the server and whether a key was sent."""
    return CliError(
        pe.cli_key_refused(
            status,
            key_given=endpoint.api_key is not None,
            smallest=endpoint.is_smallest,
            server_name=server_name(endpoint),
            envs=API_KEY_ENVS,
        )
    )


def unreachable_error(endpoint: Endpoint, url: str, reason: str) -> CliError:
    if endpoint.on_this_machine and not endpoint.local:
        fix = "start it with 'pipecat-waves serve', or fix --base-url"
    elif endpoint.base_url_given:
        fix = "check the network and --base-url"
    else:
        fix = "check the network"
    name = server_name(endpoint)
    where = name if endpoint.ws_base in name else f"{name} at {url}"
    return CliError(f"cannot reach {where} ({reason}); {fix}")


async def _connect(endpoint: Endpoint) -> Any:
    """Open the live socket, turning every failure into a :class:`CliError`."""
    from pipecat_waves.service.connection import WavesConnectError, live_url, open_socket

    try:
        url = live_url(endpoint.ws_base, None)
    except ValueError as e:
        raise CliError(str(e).replace("base_url", "--base-url")) from None
    origin = endpoint.ws_base
    try:
        return await open_socket(
            url,
            endpoint.api_key,
            extra_headers={"X-Source": "pipecat-waves-cli"},
            open_timeout_s=OPEN_TIMEOUT_S,
        )
    except WavesConnectError as e:
        status = e.status
        if e.auth_rejected and status is not None:
            raise bad_key_error(status, endpoint) from None
        if e.refused:
            raise CliError(pe.cli_rate_limited(server_name(endpoint))) from None
        if status is not None:
            raise CliError(
                f"{server_name(endpoint)} answered HTTP {status} to the WebSocket upgrade; "
                "check --base-url"
            ) from None
        raise unreachable_error(endpoint, origin, e.detail or str(e)) from None


async def check_reachable(endpoint: Endpoint) -> None:
    """Open and close the live socket once, so a refusal is explained up front.

    Raises:
        CliError: The server is unreachable or refuses the key.
    """
    ws = await _connect(endpoint)
    await ws.close()


async def _speak_piece(
    ws: Any, piece: str, params: VoiceParams, request: SayRequest, on_audio: Any, endpoint: Endpoint
) -> bytes:
    """Send one request and collect its audio up to the server's ``complete``."""
    await ws.send(json.dumps(build_one_shot(piece, params)))
    aligner = PcmAligner()
    audio = bytearray()
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT_S)
        except TimeoutError:
            raise CliError(
                f"{server_name(endpoint)} sent nothing for {RECEIVE_TIMEOUT_S:.0f} s; "
                "try again, or check the service status"
            ) from None
        try:
            event = rs.parse_message(raw)
        except rs.ResponseError as e:
            raise CliError(
                f"{server_name(endpoint)} sent a malformed message ({e}); try again"
            ) from None
        if isinstance(event, rs.AudioChunk):
            audio += aligner.feed(event.audio)
            on_audio(len(audio))
        elif isinstance(event, rs.SegmentComplete):
            return bytes(audio)
        elif isinstance(event, rs.ServerError):
            raise _server_error(event, request, endpoint)


async def synthesize(
    endpoint: Endpoint, request: SayRequest, progress: Progress | None = None
) -> bytes:
    """Speak ``request.text`` over the live socket and return PCM16 mono.

    Long text goes out as one request per sentence, one after the other on
    the same socket; a socket the server closes after a reply is reopened.

    Raises:
        CliError: The server is unreachable, refuses the key, the voice, or
            the request, or stops answering.
    """
    from websockets.exceptions import ConnectionClosed

    params = VoiceParams(
        voice_id=request.voice,
        model=request.model,
        language=request.language,
        sample_rate=request.sample_rate,
        speed=request.speed,
    )
    pcm = bytearray()

    def on_audio(piece_bytes: int) -> None:
        if progress is not None:
            progress.update(duration_s(len(pcm) + piece_bytes, request.sample_rate))

    ws = await _connect(endpoint)
    try:
        for piece in split_text(request.text):
            try:
                pcm += await _speak_piece(ws, piece, params, request, on_audio, endpoint)
            except ConnectionClosed:
                # Some servers close the socket after each reply: one reopen.
                await ws.close()
                ws = await _connect(endpoint)
                try:
                    pcm += await _speak_piece(ws, piece, params, request, on_audio, endpoint)
                except ConnectionClosed as e:
                    raise CliError(
                        f"{server_name(endpoint)} closed the connection "
                        f"({e.rcvd or 'no reason'}); try again"
                    ) from None
    finally:
        await ws.close()
    return bytes(pcm)


def write_audio(path: Path, pcm: bytes, sample_rate: int, *, channels: int = 1) -> None:
    """Write PCM16 as the format ``path``'s extension names (WAV, or raw PCM).

    Raises:
        CliError: The file cannot be written, or its extension names no format
            this tool writes.
    """
    fmt = output_format(path)
    frame = c.BYTES_PER_SAMPLE * channels
    data = pcm[: len(pcm) - len(pcm) % frame]
    try:
        # The file is opened here, not by ``wave``: a failed open then leaves
        # no half-built writer behind to fail again when collected.
        with path.open("wb") as file:
            if fmt == "pcm":
                file.write(data)
                return
            with wave.open(file, "wb") as wav:
                wav.setnchannels(channels)
                wav.setsampwidth(c.BYTES_PER_SAMPLE)
                wav.setframerate(sample_rate)
                wav.writeframes(data)
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}") from None


async def run_say(
    request: SayRequest,
    *,
    api_key: str | None,
    base_url: str | None,
    backend: str = "piper",
    progress: Progress | None = None,
) -> str:
    """Validate, synthesize and write the WAV; return the one-line summary.

    Raises:
        CliError: Anything went wrong; the message names the fix.
    """
    validate_say(request)
    async with open_endpoint(api_key, base_url, backend) as endpoint:
        try:
            pcm = await synthesize(endpoint, request, progress)
        finally:
            if progress is not None:
                progress.clear()
        where = endpoint.describe()
    if not pcm:
        raise CliError(f"{server_name(endpoint)} returned no audio for this text; try other text")
    write_audio(request.output, pcm, request.sample_rate)
    seconds = duration_s(len(pcm), request.sample_rate)
    note = " (no WAVES_API_KEY set: offline voice)" if endpoint.local else ""
    return (
        f"wrote {request.output}: {seconds:.1f} s of {request.sample_rate} Hz audio, "
        f"voice {request.voice}, from {where}{note}"
    )
