"""Command line of pipecat-waves.

``pipecat-waves say "text" -o out.wav`` speaks text into a WAV file,
``pipecat-waves voices`` lists the voices, ``pipecat-waves dicts`` manages
pronunciation dictionaries, ``pipecat-waves demo`` runs a short
spoken conversation with a barge-in, ``pipecat-waves probe`` checks how a
server answers the protocol's open points, and ``pipecat-waves serve`` runs the
local Waves-compatible server (``--like FILE`` makes it answer as a probed one).
``say``, ``voices`` and ``demo`` use the Waves API when ``WAVES_API_KEY`` (or
``SMALLEST_API_KEY``) is set, and an embedded local server with an offline voice
otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pipecat_waves import __version__
from pipecat_waves.cli.commands import (
    API_KEY_ENVS,
    CliError,
    api_key_from,
    command_logs,
    output_format,
)
from pipecat_waves.cli.demo_options import add_arguments as add_demo_arguments
from pipecat_waves.cli.demo_options import add_verbosity
from pipecat_waves.cli.interrupt import EXIT_INTERRUPTED, Stopped, run_interruptible
from pipecat_waves.credentials import scrub
from pipecat_waves.protocol.constants import (
    DEFAULT_MODEL,
    DOCUMENTED_COMPLETE_BACKOFF_MS,
    MAX_COMPLETE_BACKOFF_MS,
    MODELS,
    SAMPLE_RATES,
    SPEED_MAX,
    SPEED_MIN,
)
from pipecat_waves.server.backends import SpeechBackend

if TYPE_CHECKING:
    from pipecat_waves.server.behaviour import ServerBehaviour

#: First environment variable read when ``--api-key`` is not given.
API_KEY_ENV = API_KEY_ENVS[0]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line that points at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pipecat-waves",
        description="Smallest.ai Waves text-to-speech for Pipecat: try it, and test against it.",
    )
    parser.add_argument("--version", action="version", version=f"pipecat-waves {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_say(commands)
    _add_voices(commands)
    _add_dicts(commands)
    _add_probe(commands)
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
        "--api-key",
        help="bearer token clients must send (default: $WAVES_API_KEY, then $SMALLEST_API_KEY)",
    )
    serve.add_argument("--no-auth", action="store_true", help="accept every client without a key")
    serve.add_argument(
        "--backend",
        choices=("piper", "tone"),
        default="piper",
        help="piper: real offline speech; tone: instant test tones (default: %(default)s)",
    )
    serve.add_argument(
        "--complete-backoff-ms",
        type=float,
        metavar="MS",
        help="how long each 'complete' is held back when a request does not say "
        f"(default: {DOCUMENTED_COMPLETE_BACKOFF_MS}, as documented, or what --like "
        "recorded; 0 suits clients that wait for it)",
    )
    serve.add_argument(
        "--like",
        metavar="FILE",
        help="answer as the server a 'pipecat-waves probe --json FILE' recorded",
    )
    serve.add_argument(
        "--voice-model",
        metavar="ONNX",
        help="another Piper voice model (.onnx, with its .onnx.json beside it) "
        "instead of the bundled Joe voice",
    )
    add_verbosity(serve, "show connections (-v) or every request and audio chunk (-vv)")
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
    add_verbosity(parser)


def _add_say(commands: Any) -> None:
    say = commands.add_parser("say", help="speak text into a WAV file")
    say.add_argument("text", help="what to say")
    say.add_argument(
        "-o",
        "--output",
        default="say.wav",
        help="WAV file, or .pcm for raw PCM16 (default: %(default)s)",
    )
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


def _add_dicts(commands: Any) -> None:
    from pipecat_waves.cli.dicts import FILE_FORMAT

    dicts = commands.add_parser(
        "dicts",
        help="list, create, update or delete pronunciation dictionaries",
        description="Pronunciation dictionaries: words spoken the way you write them down.\n\n"
        + FILE_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dicts.add_subparsers(dest="action", required=True, metavar="ACTION")
    made = [
        actions.add_parser("list", help="show each dictionary's id and pairs"),
        actions.add_parser("create", help="make a dictionary from FILE; prints its id"),
        actions.add_parser("update", help="replace the pairs of dictionary ID with FILE's"),
        actions.add_parser("delete", help="delete dictionary ID"),
    ]
    for parser in made:
        name = parser.prog.rsplit(" ", 1)[-1]
        if name in ("update", "delete"):
            parser.add_argument("id", metavar="ID", help="the dictionary's id ('dicts list')")
        if name in ("create", "update"):
            parser.add_argument("file", metavar="FILE", help="word/pronunciation pairs")
            parser.description = FILE_FORMAT
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.add_argument(
            "--api-key", help="Waves API key (default: $WAVES_API_KEY, then $SMALLEST_API_KEY)"
        )
        parser.add_argument(
            "--base-url",
            help="server origin (default: https://api.smallest.ai); "
            "http://127.0.0.1:8765 for a 'pipecat-waves serve'",
        )
        add_verbosity(parser)


def _run_dicts(args: argparse.Namespace) -> int:
    from pipecat_waves.cli.dicts import run_dicts

    return _report(
        lambda: run_dicts(
            args.action,
            api_key=api_key_from(args.api_key),
            base_url=args.base_url,
            dict_id=getattr(args, "id", None),
            file=Path(args.file) if getattr(args, "file", None) else None,
        ),
        verbosity=args.verbose,
    )


def _add_probe(commands: Any) -> None:
    probe = commands.add_parser(
        "probe", help="check how a Waves server answers the protocol's open points"
    )
    probe.add_argument(
        "--api-key", help="Waves API key (default: $WAVES_API_KEY, then $SMALLEST_API_KEY)"
    )
    probe.add_argument(
        "--base-url",
        help="server origin (default: wss://api.smallest.ai); "
        "ws://127.0.0.1:8765 probes a 'pipecat-waves serve'",
    )
    probe.add_argument("--yes", action="store_true", help="run without asking first")
    probe.add_argument(
        "--json", metavar="FILE", help="also write the findings as JSON (for 'serve --like')"
    )
    probe.add_argument(
        "--idle-wait",
        type=float,
        default=65.0,
        metavar="S",
        help="longest wait for the default idle timeout; 0 skips that check (default: %(default)g)",
    )
    add_verbosity(probe)


def _run_probe(args: argparse.Namespace) -> int:
    from pipecat_waves.probe.command import run_probe_command

    return _report(
        lambda: run_probe_command(
            api_key=api_key_from(args.api_key),
            base_url=args.base_url,
            json_path=Path(args.json) if args.json else None,
            assume_yes=args.yes,
            idle_wait_s=args.idle_wait,
        ),
        verbosity=args.verbose,
    )


def _run_say(args: argparse.Namespace) -> int:
    from pipecat_waves.cli.commands import Progress, SayRequest, run_say

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
        lambda: run_say(
            request,
            api_key=api_key_from(args.api_key),
            base_url=args.base_url,
            backend=args.backend,
            progress=Progress(),
        ),
        verbosity=args.verbose,
    )


def _run_voices(args: argparse.Namespace) -> int:
    from pipecat_waves.cli.voices import run_voices

    return _report(
        lambda: run_voices(api_key=api_key_from(args.api_key), base_url=args.base_url),
        verbosity=args.verbose,
    )


def _report(work: Callable[[], Coroutine[Any, Any, str]], *, verbosity: int) -> int:
    """Run ``work``; print its result, or its error as one line on stderr."""
    try:
        with command_logs(verbosity):
            result = run_interruptible(work())
    except CliError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    print(result)
    return 0


def _fail(message: str, code: int = 1) -> int:
    """Print a failure as one ``error:`` line; return the exit code."""
    print(f"error: {scrub(message)}", file=sys.stderr)
    return code


async def _serve(
    host: str,
    port: int,
    api_key: str | None,
    backend: SpeechBackend,
    behaviour: ServerBehaviour | None = None,
) -> None:
    from pipecat_waves.server import LocalWavesServer

    async with LocalWavesServer(
        api_key, backend=backend, host=host, port=port, behaviour=behaviour
    ) as server:
        auth = "bearer key required" if api_key else "no authentication"
        # Printed, not logged: the one line a user needs at the default level.
        print(
            f"serving Waves live TTS at {server.ws_base_url}/waves/v1/tts/live "
            f"({auth}, {backend.name} backend); Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "say":
            return _run_say(args)
        if args.command == "voices":
            return _run_voices(args)
        if args.command == "dicts":
            return _run_dicts(args)
        if args.command == "demo":
            return _run_demo(args)
        if args.command == "probe":
            return _run_probe(args)
        return _run_serve(args)
    except KeyboardInterrupt:
        # Ctrl-C outside the event loop (while Pipecat or Piper is loading).
        return EXIT_INTERRUPTED


def _run_demo(args: argparse.Namespace) -> int:
    if args.web:
        with command_logs(args.verbose):
            try:
                from pipecat_waves.web.command import run as run_web_demo
            except ImportError as e:
                return _fail(f'{e}; the web demo needs: pip install "pipecat-waves[web]"')
        return run_web_demo(args)
    try:
        output_format(Path(args.output))
    except CliError as e:
        return _fail(str(e))
    # Silenced before Pipecat is imported, so its start-up banner stays quiet too.
    with command_logs(args.verbose):
        from pipecat_waves.cli.demo import run as run_demo
    return run_demo(args)


def _serve_key(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The key clients must send, or an error message naming the fix."""
    if args.no_auth and args.api_key:
        return None, "--api-key and --no-auth contradict each other; give one of them"
    if args.no_auth:
        return None, None
    api_key = api_key_from(args.api_key)
    if api_key is None:
        envs = " or ".join(API_KEY_ENVS)
        return None, (
            f"the server needs the key its clients must send: give --api-key, set {envs}, "
            "or pass --no-auth to accept every client"
        )
    return api_key, None


def _serve_backend(args: argparse.Namespace) -> SpeechBackend:
    """The synthesizer, loaded now so a missing voice is refused before serving.

    Raises:
        CliError: The Piper voice cannot be loaded; the message names the fix.
    """
    if args.backend == "tone":
        if args.voice_model:
            raise CliError("--voice-model needs the piper backend; drop --backend tone")
        from pipecat_waves.server.backends import ToneBackend

        return ToneBackend()
    from pipecat_waves.server.piper_backend import PiperBackend

    model = Path(args.voice_model) if args.voice_model else None
    backend = PiperBackend(model_path=model)
    try:
        backend.warm_up()
    except RuntimeError as e:
        raise CliError(f"{e}; or use --backend tone for test tones instead of speech") from None
    return backend


def _serve_behaviour(args: argparse.Namespace) -> ServerBehaviour:
    """The switches: recorded by a probe (``--like``), else the strict defaults.

    Raises:
        CliError: The ``--like`` file cannot be used; the message names the fix.
    """
    from pipecat_waves.server import ServerBehaviour

    behaviour = ServerBehaviour()
    if args.like:
        from pipecat_waves.probe.command import behaviour_from_file

        behaviour = behaviour_from_file(Path(args.like))
    if args.complete_backoff_ms is not None:
        behaviour = dataclasses.replace(behaviour, complete_delay_ms=args.complete_backoff_ms)
    return behaviour


def _run_serve(args: argparse.Namespace) -> int:
    api_key, problem = _serve_key(args)
    backoff = args.complete_backoff_ms
    if problem is None and backoff is not None and not 0 <= backoff <= MAX_COMPLETE_BACKOFF_MS:
        problem = f"--complete-backoff-ms must be between 0 and {MAX_COMPLETE_BACKOFF_MS}"
    if problem is not None:
        return _fail(problem, 2)
    try:
        behaviour = _serve_behaviour(args)
    except CliError as e:
        return _fail(str(e), 2)
    with command_logs(args.verbose, default_level="WARNING"):
        try:
            backend = _serve_backend(args)
            run_interruptible(
                _serve(args.host, args.port, api_key, backend, behaviour),
                stop_signals=(signal.SIGINT, signal.SIGTERM),
            )
        except CliError as e:
            return _fail(str(e))
        except Stopped as e:
            # Stopped by a service manager (SIGTERM) is a normal end; Ctrl-C is 130.
            return 0 if e.signum == signal.SIGTERM else EXIT_INTERRUPTED
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except OSError as e:
            return _fail(_bind_error(args.host, args.port, e))
    return 0


def _bind_error(host: str, port: int, error: OSError) -> str:
    """Why the server could not start listening, and what to do."""
    if error.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use (another 'pipecat-waves serve'?); "
            "stop that program or pick another port with --port (0 picks a free one)"
        )
    if error.errno == errno.EACCES:
        return f"no permission to listen on port {port}; use a port above 1023 with --port"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; give another --host"
    return f"cannot listen on {host}:{port} ({error.strerror or error}); check --host and --port"


if __name__ == "__main__":
    sys.exit(main())
