"""Running a command's coroutine so that Ctrl-C ends it within a second, quietly.

``asyncio.run`` cancels the main task on the first Ctrl-C and then waits for
its clean-up for as long as that takes; a pipeline or a server closing its
sockets politely can take many seconds, and a second Ctrl-C then tears the
loop down mid-flight with tracebacks. :func:`run_interruptible` gives the
clean-up a short grace period and then stops the loop, with the loop's own
error reports silenced, so the user sees nothing but the prompt again.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Exit code of a command ended by Ctrl-C (128 + SIGINT), as shells expect.
EXIT_INTERRUPTED = 130


class Stopped(KeyboardInterrupt):
    """A stop signal ended the command.

    Attributes:
        signum: The signal: ``SIGINT`` for Ctrl-C, ``SIGTERM`` for a service manager.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: How long the cancelled command may spend closing sockets before the loop stops.
GRACE_S = 0.6


def run_interruptible(
    work: Coroutine[Any, Any, T],
    *,
    grace_s: float = GRACE_S,
    stop_signals: tuple[signal.Signals, ...] = (signal.SIGINT,),
) -> T:
    """Run ``work`` to completion; on a stop signal cancel it and return promptly.

    Args:
        work: The command's coroutine.
        grace_s: Time the cancelled coroutine gets to clean up (close sockets,
            stop servers) before the loop is stopped regardless.
        stop_signals: Signals that end the command (Ctrl-C, and SIGTERM for
            long-running commands).

    Returns:
        What ``work`` returned.

    Raises:
        Stopped: A stop signal ended the command (a ``KeyboardInterrupt``).
    """
    # Put back afterwards: the loop would leave Python's default handler.
    previous = {sig: signal.getsignal(sig) for sig in stop_signals}
    loop = asyncio.new_event_loop()
    main = loop.create_task(work)
    interrupted = False
    received = signal.SIGINT

    def on_signal(signum: signal.Signals) -> None:
        nonlocal interrupted, received
        if interrupted:
            loop.stop()  # a second Ctrl-C: no more waiting
            return
        interrupted, received = True, signum
        # From here on, whatever is torn down mid-flight is expected: no reports.
        loop.set_exception_handler(lambda _loop, _context: None)
        main.cancel()
        loop.call_later(grace_s, loop.stop)

    for sig in stop_signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
    try:
        return loop.run_until_complete(main)
    except asyncio.CancelledError:
        raise Stopped(received) from None
    except RuntimeError:
        if interrupted:  # the grace period ran out: the loop was stopped
            raise Stopped(received) from None
        raise
    finally:
        _close_loop(loop, quick=interrupted)
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):  # not the main thread
                signal.signal(sig, handler)


def _close_loop(loop: asyncio.AbstractEventLoop, *, quick: bool) -> None:
    """Cancel what is left and close the loop; after Ctrl-C, without waiting long."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        with contextlib.suppress(RuntimeError, asyncio.CancelledError):
            loop.run_until_complete(asyncio.wait(pending, timeout=0.2 if quick else None))
    if not quick:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(sig)
    loop.close()
