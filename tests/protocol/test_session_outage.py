"""Replies during an outage: bounded in time, failed once, never spoken late."""

from __future__ import annotations

import pytest

from pipecat_waves.protocol import session as sn
from tests.protocol.test_session import PARAMS, make_session, of_type, ready, say

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick


def test_a_reply_that_cannot_start_during_an_outage_fails_once_after_the_budget():
    s = make_session(outage_budget_s=5.0)
    s.start()  # no connection ever opens
    out = say(s, "ctx-a", "Hello there.", now=0.0)
    assert not of_type(out, sn.Send)
    assert s.next_deadline(0.0) <= 5.0, "the timer wakes for the budget"
    assert not of_type(s.poll(4.9), sn.ContextFailed)
    failed = of_type(s.poll(5.0), sn.ContextFailed)
    assert [f.context_id for f in failed] == ["ctx-a"]
    assert failed[0].error.code == sn.CONNECTION_LOST
    assert "rather than spoken late" in failed[0].error.message
    # Failed once: later polls and later text of the same reply start nothing.
    assert not of_type(s.poll(6.0), sn.ContextFailed)
    assert s.send_text("ctx-a", "More text.", PARAMS, 6.0) == []
    # The reconnect sends nothing of it.
    out = s.connection_opened(1, 7.0)
    assert not [o for o in of_type(out, sn.Send) if o.message.get("text")]


def test_replies_arriving_during_a_long_outage_fail_at_once():
    s = make_session(outage_budget_s=5.0)
    s.start()
    say(s, "ctx-a", "First.", now=0.0)
    s.poll(5.0)
    say(s, "ctx-b", "Second.", now=8.0)
    assert [f.context_id for f in of_type(s.poll(8.0), sn.ContextFailed)] == ["ctx-b"]


def test_a_reply_whose_connection_comes_back_in_time_is_spoken():
    s = make_session(outage_budget_s=5.0)
    s.start()
    say(s, "ctx-a", "Hello there.", now=0.0)
    out = s.connection_opened(1, 4.0)
    assert [o.message["text"] for o in of_type(out, sn.Send) if o.message.get("text")] == [
        "Hello there."
    ]
    assert not of_type(s.poll(20.0), sn.ContextFailed)


def test_a_reply_waiting_behind_others_while_connections_work_has_no_clock():
    s = make_session(outage_budget_s=1.0, max_replies_in_flight=1)
    ready(s)
    say(s, "ctx-a", "First reply.", now=0.0)
    say(s, "ctx-b", "Second reply.", now=0.0)
    assert not of_type(s.poll(30.0), sn.ContextFailed)
