"""The reconnect and outage policy, with no sockets: every rule at the instants that matter."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipecat_waves.protocol import reconnect as rc

UNREACHABLE = rc.AttemptFailure.UNREACHABLE


def policy(failover_after_s: float = 2.0) -> rc.ReconnectPolicy:
    return rc.ReconnectPolicy(rc.ReconnectConfig(0.1, 5.0, failover_after_s))


def of_type(actions: list[rc.Action], kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def connect(p: rc.ReconnectPolicy, conn: int, now: float) -> list[rc.Action]:
    p.attempt_started(now)
    return p.opened(conn, now)


# ---------------------------------------------------------------- backoff


def test_the_first_attempt_waits_for_nothing_and_failures_double_the_wait():
    p = policy()
    assert p.open_delay_s() == 0.0
    waits = []
    for i in range(8):
        p.attempt_started(i)
        p.attempt_failed(i, UNREACHABLE)
        waits.append(p.open_delay_s())
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_a_connection_that_proves_itself_resets_the_backoff():
    p = policy()
    for t in range(3):
        p.attempt_started(t)
        p.attempt_failed(t, UNREACHABLE)
    connect(p, 1, 3.0)
    p.answered(1, 3.1)
    assert p.open_delay_s() == 0.0


def test_a_connection_closed_at_once_makes_the_next_attempt_wait():
    p = policy()
    connect(p, 1, 0.0)
    p.closed(1, 0.1, rc.Close.DROPPED)
    assert p.open_delay_s() == 0.1
    connect(p, 2, 0.3)
    p.closed(2, 0.4, rc.Close.DROPPED)
    assert p.open_delay_s() == 0.2


def test_config_refuses_a_threshold_that_is_not_positive_and_a_backoff_upside_down():
    with pytest.raises(ValueError, match="failover_after_s"):
        rc.ReconnectConfig(failover_after_s=0)
    with pytest.raises(ValueError, match="reconnect_backoff_s"):
        rc.ReconnectConfig(first_backoff_s=2.0, largest_backoff_s=1.0)


# ----------------------------------------------------------------- outage


def test_an_outage_is_judged_once_at_the_threshold_and_not_before():
    p = policy(2.0)
    connect(p, 1, 0.0)
    p.answered(1, 0.1)
    assert p.closed(1, 10.0, rc.Close.DROPPED) == []
    p.attempt_started(10.0)
    p.attempt_failed(10.05, UNREACHABLE)
    assert p.next_deadline() == pytest.approx(12.0)
    assert not of_type(p.poll(11.99), rc.Unusable)
    [verdict] = of_type(p.poll(12.0), rc.Unusable)
    assert verdict.down_for_s == pytest.approx(2.0)
    assert not verdict.refused and not verdict.closed_at_once
    assert not p.usable
    # Once: later failures and polls say nothing more.
    p.attempt_started(13.0)
    assert not of_type(p.attempt_failed(13.1, UNREACHABLE) + p.poll(30.0), rc.Unusable)
    assert p.next_deadline() is None


def test_a_blip_that_a_retry_repairs_costs_no_verdict():
    p = policy(2.0)
    connect(p, 1, 0.0)
    p.answered(1, 0.1)
    p.closed(1, 5.0, rc.Close.DROPPED)
    p.attempt_started(5.0)
    p.attempt_failed(5.05, UNREACHABLE)
    connect(p, 2, 5.2)
    assert p.answered(2, 5.3) == []
    assert p.down_for(5.3) is None
    assert of_type(p.poll(20.0), rc.Unusable) == []
    assert p.usable


def test_a_connection_still_proving_itself_holds_the_verdict_until_it_fails():
    p = policy(1.0)
    p.attempt_started(0.0)
    p.attempt_failed(0.1, UNREACHABLE)
    p.opened(1, 0.9)
    assert not of_type(p.poll(1.5), rc.Unusable), "it opened 0.6 s ago: give it its chance"
    # It closes before proving itself: it never worked, so the outage ran on from 0.0.
    p.closed(1, 1.6, rc.Close.DROPPED)
    [verdict] = of_type(p.poll(1.6), rc.Unusable)
    assert verdict.down_for_s == pytest.approx(1.6)
    assert verdict.closed_at_once


def test_a_connection_that_stays_open_proves_itself_by_age():
    p = policy(1.0)
    p.attempt_started(0.0)
    p.opened(1, 0.5)
    assert p.next_deadline() == pytest.approx(0.5 + rc.PROVEN_AFTER_S)
    assert p.poll(0.5 + rc.PROVEN_AFTER_S) == []
    assert p.down_for(3.0) is None


def test_an_attempt_that_hangs_is_an_outage_too():
    p = policy(2.0)
    p.attempt_started(0.0)  # never answers
    [verdict] = of_type(p.poll(2.0), rc.Unusable)
    assert verdict.down_for_s == pytest.approx(2.0)


def test_every_attempt_turned_away_by_a_limit_is_reported_as_refused():
    p = policy(1.0)
    for t in (0.0, 0.5, 1.0):
        p.attempt_started(t)
        actions = p.attempt_failed(t, rc.AttemptFailure.REFUSED)
    [verdict] = of_type(actions, rc.Unusable)
    assert verdict.refused


def test_a_connection_turned_away_with_the_policy_code_counts_as_refused():
    p = policy(1.0)
    connect(p, 1, 0.0)
    p.closed(1, 0.05, rc.Close.REFUSED)
    [verdict] = of_type(p.poll(1.0), rc.Unusable)
    assert verdict.refused and verdict.closed_at_once


def test_recovery_after_the_verdict_makes_the_service_usable_again():
    p = policy(1.0)
    p.attempt_started(0.0)
    p.attempt_failed(0.0, UNREACHABLE)
    of_type(p.poll(1.0), rc.Unusable)
    assert connect(p, 1, 6.0) == [rc.Connected()]
    [back] = of_type(p.answered(1, 6.1), rc.Usable)
    assert back.down_for_s == pytest.approx(6.1)
    assert p.usable
    # A second outage is a second verdict.
    p.closed(1, 20.0, rc.Close.DROPPED)
    assert of_type(p.poll(21.0), rc.Unusable)


def test_recovery_waits_for_proof_not_for_an_upgrade_that_is_closed_at_once():
    p = policy(1.0)
    p.attempt_started(0.0)
    p.poll(1.0)
    p.opened(1, 2.0)
    assert not p.usable
    p.closed(1, 2.1, rc.Close.DROPPED)
    assert not p.usable
    assert not of_type(p.poll(10.0), rc.Unusable | rc.Usable)


# ----------------------------------------------------------------- give up


def test_a_permanent_failure_gives_up_once_and_stops_the_clock():
    p = policy()
    p.attempt_started(0.0)
    actions = p.attempt_failed(0.1, rc.AttemptFailure.PERMANENT)
    assert of_type(actions, rc.GiveUp) == [rc.GiveUp(auth=False)]
    assert p.gave_up
    assert p.next_deadline() is None
    assert p.poll(100.0) == []
    assert p.give_up(auth=True) == []


def test_a_close_for_the_key_gives_up_and_disconnects():
    p = policy()
    connect(p, 1, 0.0)
    p.answered(1, 0.1)
    assert p.closed(1, 1.0, rc.Close.AUTH) == [rc.Disconnected(), rc.GiveUp(auth=True)]


# ------------------------------------------------------------------ events


def test_connected_fires_for_the_first_connection_only():
    p = policy()
    assert connect(p, 1, 0.0) == [rc.Connected()]
    assert connect(p, 2, 0.1) == [], "a spare is no news"


def test_retired_and_replaced_sockets_fire_nothing():
    p = policy()
    connect(p, 1, 0.0)
    connect(p, 2, 0.0)
    p.answered(1, 0.1)
    # A barge-in retires the socket that spoke; the spare goes on.
    assert p.closed(1, 3.0, rc.Close.RETIRED) == []
    # The server closes the idle spare; its replacement opens at once.
    p.answered(2, 3.1)
    assert p.closed(2, 60.0, rc.Close.DROPPED) == []
    assert connect(p, 3, 60.2) == []
    assert p.answered(3, 60.3) == []


def test_disconnected_fires_when_the_last_connection_cannot_be_replaced():
    p = policy()
    connect(p, 1, 0.0)
    p.answered(1, 0.1)
    assert p.closed(1, 5.0, rc.Close.DROPPED) == []
    p.attempt_started(5.0)
    assert p.attempt_failed(5.1, UNREACHABLE) == [rc.Disconnected()]
    p.attempt_started(5.2)
    assert p.attempt_failed(5.3, UNREACHABLE) == [], "said once"
    assert connect(p, 2, 5.5) == [rc.Connected()]


def test_disconnected_comes_with_the_verdict_when_attempts_hang():
    p = policy(2.0)
    connect(p, 1, 0.0)
    p.answered(1, 0.1)
    p.closed(1, 5.0, rc.Close.DROPPED)
    p.attempt_started(5.0)  # hangs
    actions = p.poll(7.0)
    assert isinstance(actions[0], rc.Disconnected) and isinstance(actions[1], rc.Unusable)


def test_shutdown_disconnects_once():
    p = policy()
    connect(p, 1, 0.0)
    assert p.shutdown() == [rc.Disconnected()]
    assert p.shutdown() == []


# --------------------------------------------------------------- property

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["start", "fail", "refused", "open", "answer", "drop", "retire", "poll"]),
        st.floats(min_value=0.0, max_value=3.0),
        st.integers(min_value=1, max_value=3),
    ),
    max_size=60,
)


@given(EVENTS)
def test_verdicts_alternate_and_connectivity_events_alternate(events):
    p = policy(1.0)
    now = 0.0
    verdicts: list[str] = []
    connectivity: list[str] = []
    for kind, dt, conn in events:
        now += dt
        if kind == "start":
            p.attempt_started(now)
            actions: list[rc.Action] = []
        elif kind in ("fail", "refused"):
            failure = UNREACHABLE if kind == "fail" else rc.AttemptFailure.REFUSED
            actions = p.attempt_failed(now, failure)
        elif kind == "open":
            actions = p.opened(conn, now)
        elif kind == "answer":
            actions = p.answered(conn, now)
        elif kind == "drop":
            actions = p.closed(conn, now, rc.Close.DROPPED)
        elif kind == "retire":
            actions = p.closed(conn, now, rc.Close.RETIRED)
        else:
            actions = p.poll(now)
        for a in actions:
            if isinstance(a, rc.Unusable | rc.Usable):
                verdicts.append(type(a).__name__)
            if isinstance(a, rc.Connected | rc.Disconnected):
                connectivity.append(type(a).__name__)
        if kind == "poll":
            # Whatever was due is done: the timer never spins on a past deadline.
            deadline = p.next_deadline()
            assert deadline is None or deadline > now
    # Never two of a kind in a row: one error per outage, one recovery per error.
    assert all(a != b for a, b in itertools.pairwise(verdicts))
    assert not verdicts or verdicts[0] == "Unusable"
    assert all(a != b for a, b in itertools.pairwise(connectivity))
    assert not connectivity or connectivity[0] == "Connected"
    assert p.usable == (not verdicts or verdicts[-1] == "Usable")
