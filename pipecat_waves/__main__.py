"""The ``pipecat-waves`` command (also ``python -m pipecat_waves``).

Kept tiny on purpose: everything else is imported inside :func:`main`, after
Ctrl-C is taken over. A ``KeyboardInterrupt`` raised in the middle of an
import can be swallowed by the import machinery ("Exception ignored in ...")
and the command would run on; so until a command's event loop takes over
Ctrl-C, it simply ends the process (nothing is open yet to close).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType

#: Exit code after Ctrl-C (128 + SIGINT), as shells expect.
_EXIT_INTERRUPTED = 130


def _exit_now(signum: int, frame: FrameType | None) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
            stream.flush()
    os._exit(_EXIT_INTERRUPTED)


def main() -> None:
    """Run the command line and exit with its code."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_now)
    try:
        from pipecat_waves.cli.main import main as run

        code = run()
    except KeyboardInterrupt:
        code = _EXIT_INTERRUPTED
    if code == _EXIT_INTERRUPTED:
        # The command has closed what it could in its grace period; do not wait
        # for a synthesis still running in a worker thread to finish.
        _exit_now(signal.SIGINT, None)
    sys.exit(code)


if __name__ == "__main__":
    main()
