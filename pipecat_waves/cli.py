"""Command line of pipecat-waves.

``pipecat-waves say "text" -o out.wav`` speaks text into a WAV file,
``pipecat-waves voices`` lists the voices, ``pipecat-waves demo`` runs a short
spoken conversation with a barge-in, and ``pipecat-waves serve`` runs the local
Waves-compatible server. ``say``, ``voices`` and ``demo`` use the Waves API when
``WAVES_API_KEY`` (or ``SMALLEST_API_KEY``) is set, and an embedded local server
with an offline voice otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn

from loguru import logger

from pipecat_waves.commands import CliError, api_key_from, quiet_logs
from pipecat_waves.credentials import scrub
from pipecat_waves.demo_options import add_arguments as add_demo_arguments
from pipecat_waves.protocol.constants import (
    DEFAULT_MODEL,
    MODELS,
    SAMPLE_RATES,
    SPEED_MAX,
    SPEED_MIN,
)
from pipecat_waves.server.backends import SpeechBackend

#: Environment variable read when ``--api-key`` is not given.
API_KEY_ENV = "WAVES_API_KEY"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line that points at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pipecat-waves",
        description="Smallest.ai Waves text-to-speech for Pipecat: try it, and test against it.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_say(commands)
    _add_voices(commands)
    demo = commands.add_parser(
        "demo", help="speak a short conversation with a barge-in into a WAV file"
    )
    add_demo_arguments(demo)
    serve = commands.add_parser("serve", help="run the local Waves-compatible TTS server")
    serve.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    serve.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    serve.add_argument(
        "--api-key", help=f"bearer token clients must send (default: ${API_KEY_ENV})"
    )
    serve.add_argument("--no-auth", action="store_true", help="accept every client without a key")
    serve.add_argument(
        "--backend",
        choices=("piper", "tone"),
        default="piper",
        help="piper: real offline speech; tone: instant test tones (default: %(default)s)",
    )
    return parser


def _add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key",
        help="Waves API key (default: $WAVES_API_KEY, then $SMALLEST_API_KEY); "
        "without one an embedded local server is used",
    )
    parser.add_argument(
        "--base-url",
        help="server origin, e.g. ws://127.0.0.1:8765 for 'pipecat-waves serve' "
        "(default: wss://api.smallest.ai with a key, else the embedded server)",
    )
    parser.add_argument("--verbose", action="store_true", help="show library logs")


def _add_say(commands: Any) -> None:
    say = commands.add_parser("say", help="speak text into a WAV file")
    say.add_argument("text", help="what to say")
    say.add_argument("-o", "--output", default="say.wav", help="WAV file (default: %(default)s)")
    say.add_argument("--voice", default="avery", help="voice id (default: %(default)s)")
    say.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"{' or '.join(sorted(MODELS))} (default: %(default)s)",
    )
    say.add_argument(
        "--sample-rate",
        type=int,
        default=24000,
        help=f"one of {', '.join(map(str, SAMPLE_RATES))} Hz (default: %(default)s)",
    )
    say.add_argument("--speed", type=float, help=f"{SPEED_MIN} to {SPEED_MAX}; 1.0 is normal pace")
    say.add_argument("--language", help="language code such as en, hi, es (default: the voice's)")
    _add_endpoint_options(say)
    # The embedded server's synthesizer; "tone" makes tests instant.
    say.add_argument(
        "--backend", choices=("piper", "tone"), default="piper", help=argparse.SUPPRESS
    )


def _add_voices(commands: Any) -> None:
    voices = commands.add_parser("voices", help="list the voices")
    _add_endpoint_options(voices)


def _run_say(args: argparse.Namespace) -> int:
    from pipecat_waves.commands import Progress, SayRequest, run_say

    request = SayRequest(
        text=args.text,
        output=Path(args.output),
        voice=args.voice,
        model=args.model,
        sample_rate=args.sample_rate,
        speed=args.speed,
        language=args.language,
    )
    return _report(
        run_say(
            request,
            api_key=api_key_from(args.api_key),
            base_url=args.base_url,
            backend=args.backend,
            progress=Progress(),
        ),
        verbose=args.verbose,
    )


def _run_voices(args: argparse.Namespace) -> int:
    from pipecat_waves.commands import run_voices

    return _report(
        run_voices(api_key=api_key_from(args.api_key), base_url=args.base_url),
        verbose=args.verbose,
    )


def _report(work: Coroutine[Any, Any, str], *, verbose: bool) -> int:
    """Run ``work``; print its result, or its error as one line on stderr."""
    try:
        with quiet_logs(verbose):
            result = asyncio.run(work)
    except CliError as e:
        print(f"error: {scrub(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(result)
    return 0


def _make_backend(name: str) -> SpeechBackend:
    if name == "tone":
        from pipecat_waves.server.backends import ToneBackend

        return ToneBackend()
    from pipecat_waves.server.piper_backend import PiperBackend

    return PiperBackend()


async def _serve(host: str, port: int, api_key: str | None, backend: SpeechBackend) -> None:
    from pipecat_waves.server import LocalWavesServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not every platform lets the loop handle signals; Ctrl-C still works there.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with LocalWavesServer(api_key, backend=backend, host=host, port=port) as server:
        auth = "bearer key required" if api_key else "no authentication"
        logger.info(
            f"serving Waves live TTS at {server.ws_base_url}/waves/v1/tts/live ({auth}); "
            "Ctrl-C to stop"
        )
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "say":
        return _run_say(args)
    if args.command == "voices":
        return _run_voices(args)
    if args.command == "demo":
        # Imported here: the demo needs Pipecat, the other commands do not.
        from pipecat_waves.demo import run as run_demo

        return run_demo(args)
    return _run_serve(parser, args)


def _run_serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if args.no_auth and args.api_key:
        parser.error("--api-key and --no-auth contradict each other")
    if args.no_auth:
        api_key = None
    elif api_key is None:
        parser.error(f"give --api-key (or set {API_KEY_ENV}), or --no-auth")
    try:
        backend = _make_backend(args.backend)
        asyncio.run(_serve(args.host, args.port, api_key, backend))
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError) as e:
        logger.error(f"cannot serve: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
