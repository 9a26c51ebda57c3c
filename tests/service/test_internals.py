"""Background work of the service: nothing dies silently, nothing outlives the pipeline."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

from loguru import logger
from pipecat.frames.frames import InterruptionFrame
from pipecat.tests.utils import SleepFrame

import pipecat_waves
from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.service.connection import LiveSocket, LiveSocketHandlers, live_url, open_socket
from tests.service.helpers import API_KEY, heard, llm_turn, make_service, run

PACKAGE = Path(pipecat_waves.__file__).parent
SERVER = PACKAGE / "server"


def _client_tasks() -> list[asyncio.Task]:
    """Tasks running code of the client side of the package (the server's excluded)."""
    found = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        frames = [task.get_coro()]
        while frames:
            coro = frames.pop()
            code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
            if code is None:
                continue
            path = Path(code.co_filename)
            if path.is_relative_to(PACKAGE) and not path.is_relative_to(SERVER):
                found.append(task)
                break
            awaited = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
            if awaited is not None:
                frames.append(awaited)
    return found


async def test_no_task_of_the_package_outlives_the_pipeline():
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        service = make_service(server)
        frames = [
            *llm_turn("A reply that is cut short by the user speaking."),
            SleepFrame(0.05),
            InterruptionFrame(),
            *llm_turn("Then another."),
        ]
        seen_during: list[int] = []

        @service.event_handler("on_connected")
        async def on_connected(_service) -> None:
            # Connected: the service's own tasks are running.
            seen_during.append(len(_client_tasks()))

        await run(service, frames)
        left = _client_tasks()
    # The check can see the service's tasks: it saw them while it ran.
    assert seen_during and seen_during[0] > 0
    assert left == [], [t.get_name() for t in left]


async def test_the_timer_loop_survives_a_failure_and_the_reply_still_ends():
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        # Without word timings only the timer (the quiet guard) ends a reply.
        service = make_service(server, word_timestamps=False)
        real_poll = service._session.poll
        failures: list[int] = []
        polls_after: list[int] = []

        def poll_failing_twice(now: float):
            if len(failures) < 2:
                failures.append(1)
                raise RuntimeError("injected timer fault")
            polls_after.append(1)
            return real_poll(now)

        service._session.poll = poll_failing_twice  # type: ignore[method-assign]
        lines: list[str] = []
        sink = logger.add(lines.append, level="ERROR")
        try:
            down, _ = await run(service, [SleepFrame(0.1), *llm_turn("Still on time.")])
        finally:
            logger.remove(sink)
    assert len(failures) == 2
    assert polls_after, "the loop went on after the faults"
    assert sum("session timer failed" in line for line in lines) == 2
    assert heard(down, "Still on time.") == ["Still", "on", "time."]


async def test_abort_cancels_the_sender_and_both_tasks_end():
    closed: list[int | None] = []

    async def on_message(_: int, __: str | bytes) -> None:
        return None

    async def on_closed(_: int, code: int | None, __: str) -> None:
        closed.append(code)

    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        ws = await open_socket(
            live_url(server.ws_base_url, None), API_KEY, extra_headers={}, open_timeout_s=5
        )
        socket = LiveSocket(1, ws, LiveSocketHandlers(on_message, on_closed))
        for _ in range(100):
            socket.send({"type": "ping"})
        socket.abort()
        await asyncio.wait_for(socket.wait_closed(), 2)
    # The sender was cancelled with its queue, not left to write to a dead socket.
    assert socket._sender.cancelled()
    assert socket._receiver.done()
    assert closed == [None], "the receiver reported the loss once, without a close code"


def test_live_socket_is_the_one_name_for_a_socket():
    import pipecat_waves.service.connection as connection

    assert not hasattr(connection, "Lane")
    assert inspect.isclass(connection.LiveSocket)


async def test_an_interruption_forgets_failed_replies_it_drops():
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        service = make_service(server)
        # A reply that failed while Pipecat still held its audio context: an
        # interruption drops that context, so Pipecat never reports its outcome.
        service._failed_contexts.add("failed-then-interrupted")
        await run(service, [*llm_turn("Long enough to be cut short."), InterruptionFrame()])
    assert service._failed_contexts == set()
