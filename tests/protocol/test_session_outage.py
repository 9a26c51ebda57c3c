"""Replies during an outage: failed once when the shell says so, never spoken late."""

from __future__ import annotations

import pytest

from pipecat_waves.protocol import session as sn
from tests.protocol.test_session import PARAMS, make_session, of_type, ready, say

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick


def test_a_waiting_reply_has_no_clock_of_its_own():
    s = make_session()
    s.start()  # no connection ever opens
    out = say(s, "ctx-a", "Hello there.", now=0.0)
    assert not of_type(out, sn.Send)
    # The outage clock is the reconnect policy's: the session never gives up alone.
    assert not of_type(s.poll(600.0), sn.ContextFailed)


def test_a_reply_waiting_when_the_server_is_unreachable_fails_once():
    s = make_session()
    s.start()
    say(s, "ctx-a", "Hello there.", now=0.0)
    failed = of_type(s.unreachable(2.0, "gone for 2 s"), sn.ContextFailed)
    assert [f.context_id for f in failed] == ["ctx-a"]
    assert failed[0].error.code == sn.CONNECTION_LOST
    assert failed[0].error.message == "gone for 2 s"
    # Failed once: later polls and later text of the same reply start nothing.
    assert not of_type(s.poll(6.0), sn.ContextFailed)
    assert s.send_text("ctx-a", "More text.", PARAMS, 6.0) == []
    # The reconnect sends nothing of it.
    out = s.connection_opened(1, 7.0)
    assert not [o for o in of_type(out, sn.Send) if o.message.get("text")]


def test_replies_arriving_while_unreachable_fail_at_the_next_poll():
    s = make_session()
    s.start()
    s.unreachable(2.0, "gone")
    say(s, "ctx-b", "Second.", now=8.0)
    assert s.next_deadline(8.0) <= 8.0, "the timer wakes at once for it"
    failed = of_type(s.poll(8.0), sn.ContextFailed)
    assert [f.context_id for f in failed] == ["ctx-b"]
    assert "rather than spoken late" in failed[0].error.message


def test_a_connection_that_opens_ends_the_unreachable_spell():
    s = make_session()
    s.start()
    s.unreachable(2.0, "gone")
    s.connection_opened(1, 3.0)
    out = say(s, "ctx-c", "Back again.", now=3.5)
    assert [o.message["text"] for o in of_type(out, sn.Send) if o.message.get("text")] == [
        "Back again."
    ]
    assert not of_type(s.poll(3.5), sn.ContextFailed)


def test_a_reply_whose_connection_comes_back_in_time_is_spoken():
    s = make_session()
    s.start()
    say(s, "ctx-a", "Hello there.", now=0.0)
    out = s.connection_opened(1, 4.0)
    assert [o.message["text"] for o in of_type(out, sn.Send) if o.message.get("text")] == [
        "Hello there."
    ]
    assert not of_type(s.poll(20.0), sn.ContextFailed)


def test_unreachable_fails_nothing_while_a_connection_is_open():
    s = make_session(max_replies_in_flight=1)
    ready(s)
    say(s, "ctx-a", "First reply.", now=0.0)
    say(s, "ctx-b", "Second reply.", now=0.0)
    assert not of_type(s.unreachable(1.0, "gone"), sn.ContextFailed)
    assert not of_type(s.poll(30.0), sn.ContextFailed)
