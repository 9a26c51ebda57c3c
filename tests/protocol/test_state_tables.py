"""The reply and connection state machines, walked row by row.

Every ``(state, event)`` pair is either a row of its table or refused with
:class:`InvalidTransition`. Every row is driven by a real session below: each
scenario feeds a :class:`WavesSession` what a server would send and records
the transitions it takes; together the scenarios take every row, so a row no
session can reach would show up here (and should be deleted).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import pytest

from pipecat_waves.protocol import session as sn
from pipecat_waves.protocol import session_core
from pipecat_waves.protocol.connection_state import (
    CONN_TRANSITIONS,
    ConnEvent,
    ConnState,
    next_conn_state,
)
from pipecat_waves.protocol.reply_state import (
    REPLY_TRANSITIONS,
    InvalidTransition,
    ReplyEvent,
    ReplyPhase,
    next_phase,
)
from tests.protocol.test_session import (
    NO_WORDS,
    chunk,
    complete,
    error,
    make_session,
    of_type,
    ready,
    say,
    speak_words,
)

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

P, E = ReplyPhase, ReplyEvent
C, CE = ConnState, ConnEvent

RATE_LIMIT = ("Concurrency limit reached", "CONCURRENCY_LIMIT")
VOICE = ("voice not found", "INVALID_VOICE")
BACKOFF = ("'complete_backoff_ms' is not allowed with context_id", "INVALID_FIELD")

Row = tuple[object, object]
SCENARIOS: list[tuple[Callable[[sn.WavesSession], None], frozenset[Row]]] = []


def walks(*rows: Row) -> Callable[[Callable[[sn.WavesSession], None]], Callable]:
    """Register a scenario and the rows it must take."""

    def register(fn: Callable[[sn.WavesSession], None]) -> Callable:
        SCENARIOS.append((fn, frozenset(rows)))
        return fn

    return register


# --------------------------------------------------------------- the tables


@pytest.mark.parametrize(("phase", "event"), list(itertools.product(ReplyPhase, ReplyEvent)))
def test_every_reply_pair_is_a_row_or_refused(phase, event):
    if (phase, event) in REPLY_TRANSITIONS:
        assert next_phase(phase, event) is REPLY_TRANSITIONS[(phase, event)]
    else:
        with pytest.raises(InvalidTransition, match=f"{phase.value}.*'{event.value}'"):
            next_phase(phase, event)


@pytest.mark.parametrize(("state", "event"), list(itertools.product(ConnState, ConnEvent)))
def test_every_connection_pair_is_a_row_or_refused(state, event):
    if (state, event) in CONN_TRANSITIONS:
        assert next_conn_state(state, event) is CONN_TRANSITIONS[(state, event)]
    else:
        with pytest.raises(InvalidTransition, match=f"{state.value}.*'{event.value}'"):
            next_conn_state(state, event)


def test_ended_replies_take_no_event_and_retired_connections_none():
    for phase, event in itertools.product(ReplyPhase, ReplyEvent):
        if phase.ended:
            assert (phase, event) not in REPLY_TRANSITIONS
    assert not [key for key in CONN_TRANSITIONS if key[0] is ConnState.RETIRED]


def test_the_scenarios_below_take_every_row_of_both_tables():
    claimed = frozenset().union(*(rows for _, rows in SCENARIOS))
    assert set(REPLY_TRANSITIONS) | set(CONN_TRANSITIONS) == claimed


@pytest.mark.parametrize(("scenario", "rows"), SCENARIOS, ids=[f.__name__ for f, _ in SCENARIOS])
def test_a_real_session_takes_the_rows(scenario, rows, monkeypatch):
    taken: set[Row] = set()

    def record_reply(phase, event):
        taken.add((phase, event))
        return next_phase(phase, event)

    def record_conn(state, event):
        taken.add((state, event))
        return next_conn_state(state, event)

    monkeypatch.setattr(session_core, "next_phase", record_reply)
    monkeypatch.setattr(session_core, "next_conn_state", record_conn)
    scenario(make_session(tail_guard_s=0.1, min_gap_guard_s=0.5, max_gap_guard_s=0.5))
    assert rows <= taken, f"not taken: {sorted(map(str, rows - taken))}"


def phase_of(s: sn.WavesSession, rid: str) -> ReplyPhase:
    return s._replies[rid].phase


# ----------------------------------------------------------------- plain life


@walks(
    (P.QUEUED, E.START_CONTEXT),
    (P.SENDING, E.FRAME),
    (P.SPEAKING, E.FRAME),
    (P.SPEAKING, E.FINISH),
    (C.SPARE, CE.BIND),
    (C.CARRYING, CE.FREE),
)
def spoken_to_the_end(s):
    ready(s)
    say(s, "r", "Hello there.")
    speak_words(s, 1, "t1", ["Hello", "there."], 0.2)
    assert sn.ContextFinished("r") in s.receive(1, complete("t1"), 0.3)
    assert s.connection_state(1) is C.SPARE


@walks((P.QUEUED, E.FINISH))
def nothing_ever_said(s):
    ready(s)
    assert say(s, "r", " ") == [sn.ContextFinished("r")]


@walks((P.SENDING, E.FINISH))
def nothing_to_speak_ends_on_the_quiet_clock(s):
    ready(s)
    say(s, "r", "...")
    assert sn.ContextFinished("r") in s.poll(1.0)


@walks((P.QUEUED, E.CANCEL), (P.SENDING, E.CANCEL), (C.CARRYING, CE.RETIRE))
def cancelled_while_queued_and_while_sending(s):
    s.config.max_replies_in_flight = 1
    ready(s)
    say(s, "a", "First.")
    say(s, "b", "Second.")
    assert phase_of(s, "b") is P.QUEUED
    s.interrupt(["b", "a"], 0.1)
    assert s.connection_state(1) is C.RETIRED


@walks((P.SPEAKING, E.CANCEL))
def cancelled_while_speaking(s):
    ready(s)
    say(s, "a", "First words.")
    s.receive(1, chunk("t1", 0.1), 0.1)
    s.interrupt(["a"], 0.2)
    assert not s.is_live("a")


# ------------------------------------------------------------------ switching


@walks(
    (P.SPEAKING, E.PARAMS_CHANGED),
    (P.SWITCHING, E.FRAME),
    (P.SWITCHING, E.SWITCHED),
    (P.RESENDING, E.START_CONTEXT),
)
def a_voice_change_while_speaking(s):
    ready(s)
    say(s, "r", "One two. ", close=False)
    s.receive(1, chunk("t1", 0.1), 0.1)
    s.send_text("r", "Three.", NO_WORDS, 0.2)
    assert phase_of(s, "r") is P.SWITCHING
    speak_words(s, 1, "t1", ["One", "two."], 0.3)
    s.receive(1, complete("t1"), 0.4)
    assert phase_of(s, "r") is P.SENDING, "the rest went out on a new context"


@walks((P.SENDING, E.PARAMS_CHANGED), (P.SWITCHING, E.CANCEL))
def a_voice_change_before_any_audio_then_barge_in(s):
    ready(s)
    say(s, "r", "One two. ", close=False)
    s.send_text("r", "Three.", NO_WORDS, 0.1)
    assert phase_of(s, "r") is P.SWITCHING
    s.interrupt(["r"], 0.2)


# ---------------------------------------------------------------- drops


@walks((P.SENDING, E.LOST), (P.SPEAKING, E.LOST))
def drops_while_sending_and_speaking(s):
    ready(s)
    say(s, "a", "First reply.")
    s.connection_lost(1, 0.1)
    assert phase_of(s, "a") is P.SENDING, "resent on the spare at once"
    s.receive(2, chunk("u1", 0.1), 0.2)
    s.connection_lost(2, 0.3)
    assert phase_of(s, "a") is P.RESENDING, "no spare is open yet"


@walks((P.SWITCHING, E.LOST))
def a_drop_while_switching(s):
    ready(s)
    say(s, "r", "One two. ", close=False)
    s.send_text("r", "Three.", NO_WORDS, 0.1)
    s.connection_lost(1, 0.2)


@walks((P.RESENDING, E.ERROR), (P.FAILING, E.GIVE_UP))
def a_reply_that_keeps_losing_its_connection_fails(s):
    ready(s)
    say(s, "r", "Hello there.")
    for conn in range(1, 6):
        s.connection_lost(conn, 0.1 * conn)
        s.connection_opened(conn + 2, 0.1 * conn)
    assert not s.is_live("r")


@walks((P.QUEUED, E.ERROR))
def a_reply_waiting_while_the_server_is_unreachable(s):
    s.start()
    say(s, "r", "Hello.")
    assert of_type(s.unreachable(1.0, "gone"), sn.ContextFailed)


# ------------------------------------------------------------------ failures


@walks((P.SENDING, E.ERROR), (P.FAILING, E.FRAME), (P.FAILING, E.LOST))
def a_failure_whose_connection_drops_is_resent(s):
    ready(s)
    say(s, "r", "Hello.")
    s.receive(1, error(*VOICE), 0.1)
    assert phase_of(s, "r") is P.FAILING
    s.receive(1, chunk("t1", 0.1), 0.1)
    s.connection_lost(1, 0.15)
    assert phase_of(s, "r") is P.SENDING


@walks((P.SPEAKING, E.ERROR), (P.FAILING, E.CANCEL))
def a_failure_while_speaking_then_barge_in(s):
    ready(s)
    say(s, "r", "Hello.")
    s.receive(1, chunk("t1", 0.1), 0.1)
    s.receive(1, error(*VOICE), 0.1)
    s.interrupt(["r"], 0.15)


@walks((P.SWITCHING, E.ERROR), (C.CARRYING, CE.RETIRE))
def a_failure_while_switching(s):
    ready(s)
    say(s, "r", "One two. ", close=False)
    s.send_text("r", "Three.", NO_WORDS, 0.1)
    s.receive(1, error(*VOICE), 0.1)
    assert of_type(s.poll(1.0), sn.ContextFailed)


# ------------------------------------------------------------------ refusals


@walks((P.SENDING, E.REFUSED), (P.REFUSED, E.START_CONTEXT), (P.REFUSED, E.FRAME))
def refused_with_nothing_of_ours_running(s):
    ready(s)
    say(s, "r", "Hello.")
    s.receive(1, error(*RATE_LIMIT), 0.1)
    assert phase_of(s, "r") is P.REFUSED
    s.receive(1, chunk("t1", 0.05), 0.11)
    s.poll(1.0)
    assert phase_of(s, "r") is P.SENDING


@walks(
    (P.SENDING, E.REFUSED_WAIT_OWN),
    (P.WAITING_OWN, E.FRAME),
    (P.WAITING_OWN, E.SLOT_FREED),
)
def refused_while_our_own_reply_holds_a_slot(s):
    ready(s)
    say(s, "a", "First.")
    say(s, "b", "Second.")
    s.receive(2, error(*RATE_LIMIT), 0.1)
    assert phase_of(s, "b") is P.WAITING_OWN
    s.receive(2, chunk("u1", 0.05), 0.11)
    speak_words(s, 1, "t1", ["First."], 0.2)
    s.receive(1, complete("t1"), 0.3)
    assert phase_of(s, "b") is P.SENDING


@walks((P.SPEAKING, E.REFUSED), (P.REFUSED, E.LOST), (P.REFUSED, E.CANCEL))
def refused_while_speaking_then_dropped_then_cancelled(s):
    ready(s)
    say(s, "r", "Hello.")
    s.receive(1, chunk("t1", 0.05), 0.1)
    s.receive(1, error(*RATE_LIMIT), 0.1)
    s.connection_lost(1, 0.11)
    assert phase_of(s, "r") is P.REFUSED
    s.interrupt(["r"], 0.12)


@walks((P.SPEAKING, E.REFUSED_WAIT_OWN), (P.WAITING_OWN, E.LOST))
def waiting_own_then_dropped(s):
    ready(s)
    say(s, "a", "First.")
    say(s, "b", "Second.")
    s.receive(2, chunk("u1", 0.05), 0.1)
    s.receive(2, error(*RATE_LIMIT), 0.1)
    s.connection_lost(2, 0.11)
    assert phase_of(s, "b") is P.REFUSED, "the lost connection may have held its slot"


@walks((P.WAITING_OWN, E.CANCEL))
def waiting_own_then_cancelled(s):
    ready(s)
    say(s, "a", "First.")
    say(s, "b", "Second.")
    s.receive(2, error(*RATE_LIMIT), 0.1)
    s.interrupt(["b"], 0.12)
    assert s.live_contexts() == ["a"]


@walks((P.SWITCHING, E.REFUSED), (P.REFUSED, E.RESTART), (P.REFUSED, E.ERROR))
def refused_while_switching_then_a_field_refused_then_an_error(s):
    ready(s)
    say(s, "r", "One two. ", close=False)
    s.send_text("r", "Three.", NO_WORDS, 0.1)
    s.receive(1, error(*RATE_LIMIT), 0.1)
    s.receive(1, error(*BACKOFF), 0.1)
    assert phase_of(s, "r") is P.REFUSED
    s.receive(1, error(*VOICE), 0.1)


@walks((P.SWITCHING, E.REFUSED_WAIT_OWN), (P.WAITING_OWN, E.RESTART), (P.WAITING_OWN, E.ERROR))
def waiting_own_while_switching_then_a_field_refused_then_an_error(s):
    ready(s)
    say(s, "a", "First.")
    say(s, "b", "One two. ", close=False)
    s.send_text("b", "Three.", NO_WORDS, 0.1)
    s.receive(2, error(*RATE_LIMIT), 0.1)
    s.receive(2, error(*BACKOFF), 0.1)
    assert phase_of(s, "b") is P.WAITING_OWN
    s.receive(2, error(*VOICE), 0.1)


# ------------------------------------------------------------- refused fields


@walks((P.SENDING, E.RESTART))
def a_refused_field_before_any_audio_restarts_on_the_same_connection(s):
    ready(s)
    say(s, "r", "Hello.")
    s.receive(1, error(*BACKOFF), 0.1)
    assert phase_of(s, "r") is P.SENDING
    assert s._replies["r"].conn == 1


@walks((P.SPEAKING, E.RESTART))
def a_refused_field_after_audio_resumes_elsewhere(s):
    ready(s)
    say(s, "r", "Hello there.")
    s.receive(1, chunk("t1", 0.05), 0.1)
    s.receive(1, error(*BACKOFF), 0.1)
    assert s.connection_state(1) is C.RETIRED


@walks((P.SWITCHING, E.RESTART))
def a_refused_field_while_switching(s):
    ready(s)
    say(s, "r", "One two. ", close=False)
    s.send_text("r", "Three.", NO_WORDS, 0.1)
    s.receive(1, error(*BACKOFF), 0.1)


# ------------------------------------------------- resending, held in its turn


def stuck_resending(s: sn.WavesSession, *, third: bool = False) -> None:
    """Put reply ``b`` in RESENDING while it keeps its connection 2.

    Reply ``a``, ahead of it, lost its connection and waits for a new one;
    replies start in order, so ``b``'s next context waits behind ``a``. With
    ``third``, reply ``c`` is being spoken on connection 3 meanwhile.
    """
    ready(s)
    say(s, "a", "First.")
    say(s, "b", "One two. ", close=False)
    s.send_text("b", "Three.", NO_WORDS, 0.1)
    if third:
        s.config.max_replies_in_flight = 3
        s.connection_opened(3, 0.1)
        say(s, "c", "Third.", now=0.1)
        assert s._replies["c"].conn == 3
    s.connection_lost(1, 0.2)
    assert phase_of(s, "a") is P.RESENDING
    speak_words(s, 2, "u1", ["One", "two."], 0.3)
    s.receive(2, complete("u1"), 0.4)
    assert phase_of(s, "b") is P.RESENDING and s._replies["b"].conn == 2


@walks((P.RESENDING, E.FRAME), (P.RESENDING, E.REFUSED_WAIT_OWN))
def held_resending_gets_a_frame_then_a_refusal_while_ours_speaks(s):
    stuck_resending(s, third=True)
    s.receive(2, chunk("u1", 0.05), 0.5)
    s.receive(2, error(*RATE_LIMIT), 0.5)
    assert phase_of(s, "b") is P.WAITING_OWN


@walks((P.RESENDING, E.RESTART))
def held_resending_gets_a_field_refusal(s):
    stuck_resending(s)
    s.receive(2, error(*BACKOFF), 0.5)
    assert s.connection_state(2) is C.RETIRED, "its first context's audio is still coming"


@walks((P.RESENDING, E.REFUSED), (P.RESENDING, E.CANCEL))
def held_resending_refused_with_nothing_of_ours_running(s):
    stuck_resending(s)
    s.interrupt(["a"], 0.45, dispatch=False)
    s.connection_lost(1, 0.46)  # already gone: nothing changes
    s.receive(2, error(*RATE_LIMIT), 0.5)
    assert phase_of(s, "b") in (P.REFUSED, P.WAITING_OWN)
    s.interrupt(["b"], 0.6)


@walks((P.RESENDING, E.LOST), (P.RESENDING, E.ERROR))
def held_resending_loses_its_connection_then_fails(s):
    stuck_resending(s)
    s.connection_lost(2, 0.5)
    assert phase_of(s, "b") is P.RESENDING
    s.unreachable(0.6, "gone")


# ---------------------------------------------------------------- connections


@walks((C.SPARE, CE.ABORT))
def an_idle_connection_that_stops_answering_pings(s):
    ready(s)
    s.poll(s.config.keepalive_interval_s)
    s.poll(s.config.keepalive_interval_s + s.config.pong_timeout_s + 0.1)
    assert s.connection_state(1) is C.ABORTING


@walks((C.CARRYING, CE.ABORT), (C.ABORTING, CE.RETIRE))
def a_stalled_connection_then_barge_in(s):
    ready(s)
    say(s, "r", "Hello.")
    s.poll(s.config.stall_probe_s + 0.1)
    s.poll(s.config.stall_probe_s + s.config.pong_timeout_s + 0.2)
    assert s.connection_state(1) is C.ABORTING
    s.interrupt(["r"], 5.0)
    assert s.connection_state(1) is C.RETIRED


@walks((C.CARRYING, CE.ABORT), (C.ABORTING, CE.FREE))
def a_stalled_connection_whose_reply_then_ends(s):
    ready(s)
    say(s, "r", "Hello.")
    s.poll(s.config.stall_probe_s + 0.1)
    s.poll(s.config.stall_probe_s + s.config.pong_timeout_s + 0.2)
    assert s.connection_state(1) is C.ABORTING
    speak_words(s, 1, "t1", ["Hello."], 5.0)
    assert sn.ContextFinished("r") in s.receive(1, complete("t1"), 5.1)
    assert s.connection_state(1) is C.ABORTING, "a dead connection is never a spare again"


@walks((C.SPARE, CE.RETIRE))
def a_surplus_spare_is_closed(s):
    ready(s)
    for conn in (3, 4, 5):
        s.connection_opened(conn, 0.1)
    assert s.connection_state(5) is C.RETIRED


def test_an_event_a_reply_cannot_take_raises_in_the_session():
    s = make_session()
    ready(s)
    say(s, "r", "Hello.")
    with pytest.raises(InvalidTransition, match=r"sending.*'switched'"):
        s._replies["r"].to(E.SWITCHED)


# ------------------------------------------------------------ one rule, one timer


def _moments() -> list[tuple[str, sn.WavesSession, float]]:
    """Sessions at moments where one timed rule is pending, and the time it is."""
    out = []
    s = make_session(tail_guard_s=0.1)
    ready(s)
    say(s, "r", "Hello there.")
    out.append(("stall probe", s, 0.0))
    s = make_session(tail_guard_s=0.1)
    ready(s)
    say(s, "r", "Hello there.")
    speak_words(s, 1, "t1", ["Hello", "there."], 0.2)
    out.append(("quiet end", s, 0.2))
    s = make_session(tail_guard_s=0.1)
    ready(s)
    say(s, "r", "Hello.")
    s.receive(1, chunk("t1", 0.1), 0.2)
    s.receive(1, error(*VOICE), 0.3)
    out.append(("failing tail", s, 0.3))
    s = make_session()
    ready(s)
    say(s, "r", "Hello.")
    s.receive(1, error(*RATE_LIMIT), 0.1)
    out.append(("refusal backoff", s, 0.1))
    s = make_session()
    ready(s)
    out.append(("keep-alive", s, 0.0))
    return out


@pytest.mark.parametrize(("name", "session", "now"), _moments(), ids=lambda v: str(v)[:20])
def test_poll_does_nothing_before_the_deadline_and_something_at_it(name, session, now):
    deadline = session.next_deadline(now)
    assert deadline > now
    before = copy.deepcopy(session)
    assert before.poll(deadline - 1e-6) == [], f"{name}: poll acted before the deadline"
    assert session.poll(deadline), f"{name}: nothing happened at the deadline"
