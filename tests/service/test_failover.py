"""Failover under a real ServiceSwitcher: Waves gone for good, the backup speaks, and back again.

Two local servers over real sockets. The primary's server is stopped after the
first reply; the primary reports one error that leaves it unusable, Pipecat's
``ServiceSwitcherStrategyFailover`` moves to the backup, and the next replies
are heard whole from the backup's server. When the primary's server is back,
the primary becomes usable again and the application switches back to it, as
the README shows.
"""

from __future__ import annotations

import asyncio
import socket

from pipecat.frames.frames import ManuallySwitchServiceFrame
from pipecat.pipeline.service_switcher import ServiceSwitcher, ServiceSwitcherStrategyFailover

from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.server.tones import transcribe_tones, words_of
from tests.service.conversation import Conversation, run_conversation
from tests.service.helpers import API_KEY, RATE, make_service

WAIT_S = 10.0
TURNS = [
    "The table is booked.",
    "Parking is free after six.",
    "We open at noon.",
    "Dogs are welcome here.",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(port: int = 0) -> LocalWavesServer:
    return LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), port=port, record=True)


def _texts(server: LocalWavesServer) -> str:
    return "".join(m.get("text", "") for c in server.connections for m in c.received)


async def test_the_backup_speaks_while_waves_is_gone_and_the_primary_takes_over_again():
    port = _free_port()
    primary_server, backup_server, primary_back = _server(port), _server(), _server(port)
    await primary_server.start()
    await backup_server.start()
    primary = make_service(primary_server, failover_after_s=0.5, reconnect_backoff_s=(0.05, 0.2))
    backup = make_service(backup_server)
    switcher = ServiceSwitcher(
        services=[primary, backup], strategy_type=ServiceSwitcherStrategyFailover
    )
    usable: list[bool] = []
    reported: list[str] = []
    server_down = asyncio.Event()

    # The switcher absorbs the error that moved it; the services' own
    # on_error hears every error they report.
    for service in (primary, backup):
        service.add_event_handler("on_error", lambda _s, error: reported.append(error.error))

    @primary.event_handler("on_usable_changed")
    async def on_usable_changed(_service, is_usable):
        usable.append(is_usable)

    talk = Conversation(token_gap_s=0)
    talk.say("first", TURNS[0])
    talk.wait_heard(1, then_quiet_s=0.1, timeout_s=WAIT_S, label="first reply heard")
    talk.wait(server_down.is_set, WAIT_S, "primary's server stopped")
    talk.wait(lambda: False in usable, WAIT_S, "primary reported unusable")
    talk.say("second", TURNS[1])
    talk.wait_heard(2, then_quiet_s=0.1, timeout_s=WAIT_S, label="second reply heard")
    talk.say("third", TURNS[2])
    talk.wait_heard(3, then_quiet_s=0.1, timeout_s=WAIT_S, label="third reply heard")
    talk.wait(lambda: usable == [False, True], WAIT_S, "primary usable again")
    # What the application does on on_usable_changed(True): switch back.
    talk.steps.append(ManuallySwitchServiceFrame(service=primary))
    talk.say("fourth", TURNS[3])
    talk.wait_heard(4, then_quiet_s=0.1, timeout_s=WAIT_S, label="fourth reply heard")

    async def operator() -> None:
        await _until(lambda: len(talk.contexts_heard()) >= 1)
        await primary_server.stop()
        server_down.set()
        await _until(lambda: len(talk.contexts_heard()) >= 3)
        await primary_back.start()

    ops = asyncio.create_task(operator())
    try:
        result = await run_conversation(switcher, talk)
        await asyncio.wait_for(ops, WAIT_S)
    finally:
        ops.cancel()
        for server in (primary_server, backup_server, primary_back):
            await server.stop()
    assert talk.timed_out == []
    # One error for the whole outage, and it is the one that moved the switcher.
    assert result.errors == [], "the switch absorbed it: nothing reaches the app upstream"
    assert len(reported) == 1, reported
    assert "No connection to Waves" in reported[0] and "unusable" in reported[0]
    assert usable == [False, True]
    for i, text in enumerate(TURNS):
        ctx = talk.contexts_heard()[i]
        audio = b"".join(
            e.frame.audio
            for e in result.down
            if getattr(e.frame, "audio", None) is not None and e.frame.context_id == ctx
        )
        assert transcribe_tones(audio, RATE, words_of(text)) == text.split(" "), text
    # Who spoke what: the backup only during the outage, the primary before and after.
    assert TURNS[0] in _texts(primary_server)
    assert TURNS[1] in _texts(backup_server) and TURNS[2] in _texts(backup_server)
    assert TURNS[3] in _texts(primary_back)
    assert TURNS[3] not in _texts(backup_server)


async def _until(condition, within: float = WAIT_S) -> None:
    """Wait for ``condition`` on the pace of the conversation's own polling."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - a condition on recorded frames, not an event
            await asyncio.sleep(0.01)
