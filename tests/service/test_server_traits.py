"""What the service knows of a server before it starts, and what it hands on.

Against the local server on loopback: a server that refuses
``complete_backoff_ms`` beside a ``context_id`` and refuses pings. A service
handed the traits a probe recorded never sends the field; a cold service
learns both from its first exchanges, and its ``server_traits`` start the next
one warm.
"""

from __future__ import annotations

import json
from typing import Any

from pipecat_waves import ServerTraits, WavesTTSService
from pipecat_waves.probe import ProbeConfig, run_probe
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from tests.service.helpers import API_KEY, errors, heard, llm_turn, make_service, run

# Completes held back 600 ms rather than the documented 4 s: long enough for
# the probe to see what complete_backoff_ms does, short enough to keep it quick.
REFUSING = ServerBehaviour(
    complete_delay_ms=600,
    complete_backoff_with_context="refuse",
    ping_supported=False,
    chunk_interval_ms=5,
)
REPLY = "Sure, the Riverside branch opens at nine. It closes at six tonight."
QUICK_PROBE = {"settle_s": 0.2, "pause_s": 0.6, "idle_wait_s": 0, "quiet_close_s": 0.3}


def sent_by_service(server: LocalWavesServer, first_connection: int) -> list[Any]:
    """Every message the server received on connections from ``first_connection`` on."""
    return [m for c in server.connections if c.id >= first_connection for m in c.received]


def contexts_of(messages: list[Any]) -> set[str]:
    return {m["context_id"] for m in messages if isinstance(m, dict) and "context_id" in m}


async def test_a_service_given_a_probe_report_never_sends_what_the_server_refuses(tmp_path):
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=REFUSING, record=True
    ) as server:
        report = await run_probe(ProbeConfig(server.ws_base_url, API_KEY, **QUICK_PROBE))
        probe_file = tmp_path / "probe.json"
        probe_file.write_text(json.dumps(report.to_json()))
        first = len(server.connections) + 1
        service = make_service(server, server_traits=ServerTraits.from_file(probe_file))
        down, up = await run(service, llm_turn(REPLY))

    assert errors(up) == [] and errors(down) == []
    assert heard(down, REPLY) == REPLY.split()
    messages = sent_by_service(server, first)
    assert messages, "the service's messages were recorded"
    assert not [m for m in messages if "complete_backoff_ms" in m]
    assert len(contexts_of(messages)) == 1, "the reply went out once, on one context"


async def test_a_cold_service_learns_and_hands_what_it_learned_to_the_next():
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=REFUSING, record=True
    ) as server:
        cold = make_service(server)
        assert cold.server_traits == ServerTraits()
        down, up = await run(cold, llm_turn(REPLY))
        assert errors(up) == [] and heard(down, REPLY) == REPLY.split()
        learned = cold.server_traits
        cold_messages = sent_by_service(server, 1)

        first = len(server.connections) + 1
        warm = make_service(server, server_traits=learned)
        down, up = await run(warm, llm_turn(REPLY))
        warm_messages = sent_by_service(server, first)

    assert learned.answers_pings is False
    assert learned.complete_backoff_with_context == "refuse"
    # The cold service paid for learning: a refused context, resent on a new one.
    assert [m for m in cold_messages if "complete_backoff_ms" in m]
    assert len(contexts_of(cold_messages)) == 2
    # The warm one did not.
    assert errors(up) == [] and heard(down, REPLY) == REPLY.split()
    assert not [m for m in warm_messages if "complete_backoff_ms" in m]
    assert warm.server_traits == learned
    assert len(contexts_of(warm_messages)) == 1


async def test_a_wrong_hint_costs_no_word_and_no_error():
    # The hint says pings and the field are refused; this server takes both.
    wrong = ServerTraits(answers_pings=False, complete_backoff_with_context="refuse")
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), record=True) as server:
        service = make_service(server, server_traits=wrong)
        down, up = await run(service, [*llm_turn(REPLY), *llm_turn(REPLY)])
    assert errors(up) == [] and errors(down) == []
    assert heard(down, REPLY) == REPLY.split() * 2


def test_keepalive_follows_an_idle_timeout_shorter_than_asked():
    # No socket is opened: only the keep-alive the service derives is read.
    ignores_query = ServerTraits(idle_timeout_s=9.0, honours_timeout_query=False)
    service = WavesTTSService(
        api_key=API_KEY, base_url="ws://127.0.0.1:9", server_traits=ignores_query
    )
    assert service._session.keepalive.interval_s == 3.0
    honours = ServerTraits(idle_timeout_s=9.0, honours_timeout_query=True)
    service = WavesTTSService(api_key=API_KEY, base_url="ws://127.0.0.1:9", server_traits=honours)
    assert service._session.keepalive.interval_s == 20.0, "a third of the 60 s asked for"
