"""Outages over real sockets: one error that leaves the service unusable, and its return.

The server goes away for good (stopped: new connections are refused) or for a
moment (stopped and started again on the same port). Scripts wait on what is
heard and on the service's own events, never on a clock.
"""

from __future__ import annotations

import asyncio
import socket

from pipecat.utils.errors import ErrorCategory

from pipecat_waves.server import LocalWavesServer
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.server.tones import transcribe_tones, words_of
from tests.service.conversation import Conversation, run_conversation
from tests.service.helpers import API_KEY, RATE, make_service

WAIT_S = 10.0  # a bound on each wait; the scripts move on events


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(port: int, *, record: bool = False) -> LocalWavesServer:
    return LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), port=port, record=record)


def _heard(result, text: str) -> list[str]:
    audio = b"".join(
        e.frame.audio for e in result.down if getattr(e.frame, "audio", None) is not None
    )
    return transcribe_tones(audio, RATE, words_of(text))


async def test_an_outage_costs_one_error_and_the_service_is_usable_again_when_waves_is_back():
    port = _free_port()
    first, second = _server(port), _server(port, record=True)
    await first.start()
    service = make_service(first, reconnect_backoff_s=(0.05, 0.2), failover_after_s=0.5)
    usable: list[bool] = []
    connectivity: list[tuple[str, tuple]] = []

    @service.event_handler("on_usable_changed")
    async def on_usable_changed(_service, is_usable):
        usable.append(is_usable)

    @service.event_handler("on_connected")
    async def on_connected(*args):
        connectivity.append(("connected", args))

    @service.event_handler("on_disconnected")
    async def on_disconnected(*args):
        connectivity.append(("disconnected", args))

    down = asyncio.Event()
    talk = Conversation()
    talk.say("before", "Before the outage.")
    talk.wait_heard(1, then_quiet_s=0.1, timeout_s=WAIT_S, label="first reply heard")
    talk.wait(down.is_set, WAIT_S, "server stopped")
    talk.say("during", "During the outage.", outcome="silent")
    talk.wait(lambda: False in usable, WAIT_S, "service reported unusable")
    talk.wait(lambda: usable == [False, True], WAIT_S, "service usable again")
    talk.say("after", "After the outage.")
    talk.wait_heard(2, then_quiet_s=0.1, timeout_s=WAIT_S, label="last reply heard")

    async def operator() -> None:
        # The server goes away once the first reply is heard, and comes back
        # once the service has given up on it.
        await _until(lambda: len(talk.contexts_heard()) >= 1)
        await first.stop()
        down.set()
        await _until(lambda: usable == [False])
        await second.start()

    ops = asyncio.create_task(operator())
    try:
        result = await run_conversation(service, talk)
        await asyncio.wait_for(ops, WAIT_S)
    finally:
        ops.cancel()
        await first.stop()
        await second.stop()
    assert talk.timed_out == []
    errs = result.errors
    assert len(errs) == 1, [e.error for e in errs]
    assert errs[0].category is ErrorCategory.CONNECTIVITY
    assert "unusable" in errs[0].error and "keeps retrying" in errs[0].error
    assert usable == [False, True]
    words = _heard(result, "Before the outage. During the outage. After the outage.")
    assert words == ["Before", "the", "outage.", "After", "the", "outage."]
    # The server that came back never received the dropped reply.
    texts = [m.get("text", "") for c in second.connections for m in c.received]
    assert not any("During" in t for t in texts)
    assert any("After" in t for t in texts)
    # Connectivity events in Pipecat's signature: the service alone.
    assert [name for name, _ in connectivity] == [
        "connected",
        "disconnected",
        "connected",
        "disconnected",  # at the end of the pipeline
    ]
    assert all(args == (service,) for _, args in connectivity)


async def test_a_blip_that_a_retry_repairs_is_no_error_and_no_failover():
    port = _free_port()
    first, second = _server(port), _server(port)
    await first.start()
    service = make_service(first, reconnect_backoff_s=(0.05, 0.2))
    usable: list[bool] = []
    disconnects: list[tuple] = []

    @service.event_handler("on_usable_changed")
    async def on_usable_changed(_service, is_usable):
        usable.append(is_usable)

    @service.event_handler("on_disconnected")
    async def on_disconnected(*args):
        disconnects.append(args)

    back = asyncio.Event()
    talk = Conversation()
    talk.say("before", "Before the blip.")
    talk.wait_heard(1, then_quiet_s=0.1, timeout_s=WAIT_S, label="first reply heard")
    talk.wait(back.is_set, WAIT_S, "server restarted")
    talk.say("after", "After the blip.")
    talk.wait_heard(2, then_quiet_s=0.1, timeout_s=WAIT_S, label="second reply heard")

    async def operator() -> None:
        await _until(lambda: len(talk.contexts_heard()) >= 1)
        await first.stop()
        await second.start()
        back.set()

    ops = asyncio.create_task(operator())
    try:
        result = await run_conversation(service, talk)
        await asyncio.wait_for(ops, WAIT_S)
    finally:
        ops.cancel()
        await first.stop()
        await second.stop()
    assert talk.timed_out == []
    assert result.errors == []
    assert usable == []
    assert _heard(result, "Before the blip. After the blip.") == [
        "Before",
        "the",
        "blip.",
        "After",
        "the",
        "blip.",
    ]
    assert disconnects == [(service,)], "only the end of the pipeline disconnects"


async def test_a_barge_in_retires_a_socket_without_a_disconnect_event():
    server = _server(_free_port(), record=True)
    await server.start()
    service = make_service(server)
    events: list[str] = []

    @service.event_handler("on_connected")
    async def on_connected(_service):
        events.append("connected")

    @service.event_handler("on_disconnected")
    async def on_disconnected(_service):
        events.append("disconnected")

    talk = Conversation(token_gap_s=0)
    talk.say("cut", "This reply is long enough to be cut off while it is still playing.")
    talk.wait_started(1, timeout_s=WAIT_S, label="reply started")
    talk.barge_in()
    talk.say("next", "Next one.")
    talk.wait_heard(
        1, then_quiet_s=0.1, timeout_s=WAIT_S, label="next reply heard", since_barge_in=True
    )
    try:
        result = await run_conversation(service, talk)
    finally:
        await server.stop()
    assert talk.timed_out == []
    assert result.errors == []
    assert len(server.connections) >= 2, "the barge-in retired a socket"
    assert events == ["connected", "disconnected"], "retiring a socket is no disconnect"


async def _until(condition, within: float = WAIT_S) -> None:
    """Wait for ``condition`` on the pace of the conversation's own polling."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - a condition on recorded frames, not an event
            await asyncio.sleep(0.01)
