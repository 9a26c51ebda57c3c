"""Unit tests of the client-side session rules (no sockets, no event loop).

The server is played by hand here: each test feeds the session the frames a
server taking one reading or another of the protocol would send, and checks
what comes out. ``test_session_property.py`` does the same with random
segmentations, chunkings and completes.
"""

from __future__ import annotations

import pytest

from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol import session as sn
from pipecat_waves.protocol.requests import VoiceParams, parse_request

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

RATE = 16000
PARAMS = VoiceParams(voice_id="avery", sample_rate=RATE, word_timestamps=True)
NO_WORDS = VoiceParams(voice_id="sophia", sample_rate=RATE, word_timestamps=False)
SECOND = 2 * RATE  # bytes of one second of audio


def make_session(**overrides) -> sn.WavesSession:
    return sn.WavesSession(sn.SessionConfig(sample_rate=RATE, **overrides))


def sends(outputs, conn=None):
    return [o.message for o in outputs if isinstance(o, sn.Send) and conn in (None, o.conn)]


def of_type(outputs, kind):
    return [o for o in outputs if isinstance(o, kind)]


def env(rid, echo=None):
    return rs.Envelope(request_id=rid, external_request_id=echo)


def chunk(rid, seconds, echo=None):
    return rs.AudioChunk(env(rid, echo), b"\x01\x00" * int(RATE * seconds))


def word(rid, text, start, end, echo=None):
    return rs.WordTimestamp(env(rid, echo), text, start, end)


def complete(rid, echo=None):
    return rs.SegmentComplete(env(rid, echo))


def error(message, code=None, rid=None, echo=None):
    return rs.ServerError(env(rid, echo), message, code)


def ready(session, conns=(1, 2), now=0.0, pings=True):
    """Open the warm connections; answer the first ping (or refuse it)."""
    out = session.start()
    assert len(of_type(out, sn.OpenConnection)) == 2
    for conn in conns:
        out += session.connection_opened(conn, now)
    probe = [o for o in out if isinstance(o, sn.Send) and o.message == {"type": "ping"}]
    assert len(probe) == 1, "one ping learns whether the server answers them"
    if pings:
        session.receive(probe[0].conn, rs.Pong(), now)
    else:
        session.receive(probe[0].conn, error("'text' is required", "MISSING_FIELD"), now)
    return out


def say(session, reply, text, now=0.0, params=PARAMS, close=True):
    out = session.send_text(reply, text, params, now, max_buffer_delay_ms=0)
    if close:
        out += session.close_context(reply, now)
    return out


def speak_words(session, conn, rid, words, now, start_s=0.0, base_s=0.0, per_word_s=0.1):
    """Frames of a segment speaking ``words``: audio then timestamp for each word.

    ``base_s`` is added to the times (a server timing words from the context's start).
    """
    out = []
    t = start_s
    for w in words:
        out += session.receive(conn, chunk(rid, per_word_s), now)
        out += session.receive(conn, word(rid, w, base_s + t, base_s + t + per_word_s), now)
        t += per_word_s
    return out


def finished(outputs):
    return [o.context_id for o in of_type(outputs, sn.ContextFinished)]


# ------------------------------------------------------------------- sending


def test_fragments_are_valid_requests_of_one_context_on_the_oldest_connection():
    s = make_session()
    ready(s)
    out = s.send_text("ctx-a", "Hello there. ", PARAMS, 0.0, max_buffer_delay_ms=0)
    out += s.send_text("ctx-a", "How are you?", PARAMS, 0.1, max_buffer_delay_ms=0)
    out += s.close_context("ctx-a", 0.2)
    msgs = sends(out)
    assert msgs == sends(out, conn=1), "replies stay on one socket when they do not overlap"
    assert [m["text"] for m in msgs] == ["Hello there. ", "How are you?", ""]
    assert [m["continue"] for m in msgs] == [True, True, False]
    assert {m["context_id"] for m in msgs} == {"ctx-a"}
    assert all(m["request_id"] == "ctx-a" for m in msgs)
    for m in msgs:  # a strict server accepts every one of them
        parse_request(m)


def test_whitespace_alone_is_never_sent_and_long_text_is_cut_at_words():
    s = make_session()
    ready(s)
    out = s.send_text("r", " ", PARAMS, 0.0)
    assert sends(out) == []
    long = "word " * 120
    out = say(s, "r", long)
    texts = [m["text"] for m in sends(out)]
    assert all(len(t) <= 250 for t in texts)
    assert "".join(texts) == long, "leading space dropped, nothing else"


def test_empty_reply_finishes_without_a_word_to_the_server():
    s = make_session()
    ready(s)
    out = s.close_context("r", 0.0) + s.send_text("r", "", PARAMS, 0.0)
    out = s.send_text("q", "", PARAMS, 0.0) + s.close_context("q", 0.0)
    assert finished(out) == ["q"]
    assert sends(out) == []


# ------------------------------------------------------------ reply progress


def test_a_sentence_split_by_the_server_is_over_only_when_every_word_is_spoken():
    s = make_session()
    ready(s)
    say(s, "r", "One two three four five six.")
    out = speak_words(s, 1, "t1", ["One", "two", "three"], 1.0)
    out += s.receive(1, complete("t1"), 1.0)
    out += s.poll(3.0)
    assert finished(out) == [], "a complete counts for nothing: three words are missing"
    out = speak_words(s, 1, "t2", ["four", "five", "six."], 3.0, base_s=0.0)
    assert finished(out) == []
    out = s.receive(1, complete("t2"), 3.1)
    assert finished(out) == ["r"], "every word matched and the last segment completed"


def test_sentences_merged_by_the_server_end_on_the_one_complete():
    s = make_session()
    ready(s)
    say(s, "r", "Hi. ")
    out = say(s, "r", "Hi. How are you?")  # already closed: ignored
    assert sends(out) == []
    s2 = make_session()
    ready(s2)
    s2.send_text("m", "Hi there. ", PARAMS, 0.0)
    s2.send_text("m", "How are you?", PARAMS, 0.0)
    s2.close_context("m", 0.0)
    out = speak_words(s2, 1, "t1", ["Hi", "there.", "How", "are", "you?"], 0.5)
    out += s2.receive(1, complete("t1"), 0.6)
    assert finished(out) == ["m"]


def test_delayed_or_missing_complete_costs_only_the_tail_guard():
    s = make_session(tail_guard_s=0.25)
    ready(s)
    say(s, "r", "Quick reply.")
    out = speak_words(s, 1, "t1", ["Quick", "reply."], 1.0)
    assert finished(out) == []
    assert s.next_deadline(1.0) <= 1.25 + 1e-9
    assert finished(s.poll(1.2)) == []
    assert finished(s.poll(1.26)) == ["r"]
    # The delayed complete arrives later: nothing happens, nothing breaks.
    assert s.receive(1, complete("t1"), 4.0) == []


def test_a_held_back_complete_costs_twice_the_servers_chunk_cadence():
    s = make_session(tail_guard_s=0.25, min_tail_guard_s=0.05)
    ready(s)
    say(s, "r", "One two three.")
    now = 1.0
    for i, w in enumerate(["One", "two", "three."]):  # a chunk every 30 ms, its word after it
        s.receive(1, chunk("t1", 0.1), now)
        s.receive(1, word("t1", w, 0.1 * i, 0.1 * (i + 1)), now)
        now += 0.03
    last = now - 0.03
    assert abs(s.next_deadline(last) - (last + 0.06)) < 1e-6
    assert finished(s.poll(last + 0.05)) == []
    assert finished(s.poll(last + 0.061)) == ["r"]


def test_timestamps_ahead_of_their_audio_keep_the_whole_tail_guard():
    s = make_session(tail_guard_s=0.25, min_tail_guard_s=0.05)
    ready(s)
    say(s, "r", "One two.")
    s.receive(1, chunk("t1", 0.1), 1.0)
    s.receive(1, chunk("t1", 0.05), 1.01)
    s.receive(1, word("t1", "One", 0.0, 0.1), 1.01)
    s.receive(1, word("t1", "two.", 0.1, 0.2), 1.01)  # its audio is still to come
    assert finished(s.poll(1.2)) == []
    assert finished(s.poll(1.27)) == ["r"]


def test_without_timestamps_the_reply_waits_out_a_gap_guard_that_learns():
    s = make_session(min_gap_guard_s=0.5)
    ready(s)
    say(s, "r", "No timing here. ", params=NO_WORDS, close=False)
    # First audio 0.4 s after the text went out: the guard grows to 0.8 s.
    s.receive(1, chunk("t1", 0.5), 0.4)
    s.close_context("r", 0.45)
    s.receive(1, complete("t1"), 0.5)
    assert s.gap_guard_s == 0.8
    assert finished(s.poll(1.0)) == [], "a complete alone proves nothing"
    # A stand-in for the liveness check: the server answered a ping.
    assert finished(s.poll(1.2)) == []  # quiet since the close at 0.45: 0.75 s < 0.8 s
    out = s.poll(1.26)
    pings = [m for m in sends(out, conn=1) if m == {"type": "ping"}]
    assert pings and finished(out) == []
    out = s.receive(1, rs.Pong(), 1.27)
    assert finished(out) == ["r"]


def test_a_reply_queued_on_the_server_is_never_given_up_by_a_clock():
    s = make_session()
    ready(s)
    say(s, "r", "Waiting my turn.")
    for t in (5.0, 30.0, 120.0):
        s.receive(1, rs.Pong(), t)  # the server is alive, just busy
        out = s.poll(t)
        assert not of_type(out, sn.ContextFinished | sn.ContextFailed)
    assert s.is_live("r")


def test_word_times_follow_the_audio_whichever_reference_the_server_uses():
    for base in ("segment", "context"):
        s = make_session()
        ready(s)
        say(s, "r", "Alpha beta. Gamma delta.")
        out = speak_words(s, 1, "t1", ["Alpha", "beta."], 0.5)
        out += s.receive(1, complete("t1"), 0.6)
        offset = 0.2 if base == "context" else 0.0  # the first segment's audio
        out += speak_words(s, 1, "t2", ["Gamma", "delta."], 0.7, base_s=offset)
        times = [round(o.time_s, 6) for o in of_type(out, sn.WordOut)]
        assert times == [0.0, 0.1, 0.2, 0.3], base


def test_word_times_stay_in_step_when_completes_are_late():
    s = make_session()
    ready(s)
    say(s, "r", "Alpha beta. Gamma delta.")
    out = speak_words(s, 1, "t1", ["Alpha", "beta."], 0.5)
    # No complete for t1: the next segment still starts after its audio.
    out += speak_words(s, 1, "t2", ["Gamma", "delta."], 0.7)
    times = [round(o.time_s, 6) for o in of_type(out, sn.WordOut)]
    assert times == [0.0, 0.1, 0.2, 0.3]


# ---------------------------------------------------------------- barge-in


def test_barge_in_retires_the_connection_and_the_next_reply_takes_the_spare_at_once():
    s = make_session()
    ready(s)
    say(s, "r1", "A long reply that is playing. ", close=False)
    s.receive(1, chunk("t1", 0.2), 0.5)
    out = s.interrupt(["r1"], 0.6)
    msgs = sends(out, conn=1)
    assert any(m.get("cancel_request") for m in msgs)
    assert any(m.get("context_close") for m in msgs)
    assert [o.conn for o in of_type(out, sn.CloseConnection)] == [1]
    # Late audio of the cancelled reply on the retired connection: dropped.
    assert s.receive(1, chunk("t1", 0.2), 0.7) == []
    out = say(s, "r2", "Sure.", now=0.7)
    assert [m["text"] for m in sends(out, conn=2)] == ["Sure.", ""]
    assert len(of_type(out, sn.OpenConnection)) == 1, "a new spare, in the background"


def test_one_barge_in_cancelled_reply_by_reply_keeps_the_warm_spare():
    # Pipecat names the interrupted replies one at a time. Were the waiting
    # reply handed the spare between two of those calls, cancelling it next
    # would retire the spare too, and the next reply would wait for a handshake.
    s = make_session(max_replies_in_flight=1)
    ready(s)
    say(s, "r1", "A long reply that is playing. ", close=False)
    assert sends(say(s, "r2", "Queued behind it."), conn=2) == []
    s.receive(1, chunk("t1", 0.2), 0.5)
    out = s.interrupt(["r1"], 0.6, dispatch=False)
    out += s.interrupt(["r2"], 0.6, dispatch=False)
    assert [o.conn for o in of_type(out, sn.CloseConnection)] == [1]
    assert sends(out, conn=2) == [], "nothing of a cancelled reply reached the spare"
    assert not of_type(s.dispatch(0.6), sn.CloseConnection)
    out = say(s, "r3", "Sure.", now=0.7)
    assert [m["text"] for m in sends(out, conn=2)] == ["Sure.", ""], "at once, on the spare"


def test_barge_in_after_all_audio_arrived_keeps_the_connection():
    s = make_session()
    ready(s)
    say(s, "r1", "Done.")
    s.receive(1, chunk("t1", 0.1), 0.2)
    s.receive(1, word("t1", "Done.", 0.0, 0.1), 0.2)
    assert finished(s.receive(1, complete("t1"), 0.2)) == ["r1"]
    out = s.interrupt(["r1"], 0.3)  # still playing in Pipecat, nothing on the server
    assert out == [] or not of_type(out, sn.CloseConnection)


def test_late_complete_of_the_reply_before_is_not_taken_for_the_next_one():
    s = make_session(min_gap_guard_s=0.3)
    ready(s)
    say(s, "r1", "First.")
    s.receive(1, chunk("t1", 0.1), 0.1)
    s.receive(1, word("t1", "First.", 0.0, 0.1), 0.1)
    assert finished(s.poll(0.5)) == ["r1"]  # tail guard, complete still owed
    say(s, "r2", "Second one.", now=0.6)
    out = s.receive(1, complete("t1"), 0.7)  # the delayed complete of r1
    out += s.poll(2.0)
    assert finished(out) == [], "r2 has not said a word yet"


# ------------------------------------------------------------------ recovery


def test_a_drop_resends_from_the_first_unspoken_word_on_a_new_context():
    s = make_session()
    ready(s)
    say(s, "r", "One two three. Four five six.")
    speak_words(s, 1, "t1", ["One", "two"], 0.5)
    out = s.connection_lost(1, 0.6)
    msgs = sends(out)
    assert {o.conn for o in of_type(out, sn.Send)} == {2}
    assert [m["text"] for m in msgs] == ["three. Four five six.", ""]
    assert msgs[0]["context_id"] == "r.2"
    # The new context's audio continues the reply.
    out = speak_words(s, 2, "u1", ["three.", "Four", "five", "six."], 0.8)
    out += s.receive(2, complete("u1"), 0.9)
    assert finished(out) == ["r"]
    times = [round(o.time_s, 6) for o in of_type(out, sn.WordOut)]
    assert times == [0.2, 0.3, 0.4, 0.5]


def test_a_stalled_connection_is_dropped_and_its_reply_moves_on():
    s = make_session(stall_probe_s=1.0, pong_timeout_s=1.0)
    ready(s)
    say(s, "r", "Hello there.")
    out = s.poll(1.1)
    assert {"type": "ping"} in sends(out, conn=1)
    out = s.poll(2.2)
    assert [o.conn for o in of_type(out, sn.AbortConnection)] == [1]
    out = s.connection_lost(1, 2.3)
    assert [m["text"] for m in sends(out, conn=2)] == ["Hello there.", ""]


def test_an_error_naming_no_request_fails_the_reply_waiting_on_that_connection():
    s = make_session(tail_guard_s=0.1)
    ready(s)
    say(s, "r", "Hello.")
    out = s.receive(1, error("voice not found", "INVALID_VOICE"), 0.2)
    out += s.poll(0.5)
    failed = of_type(out, sn.ContextFailed)
    assert [f.context_id for f in failed] == ["r"]
    assert of_type(out, sn.CloseConnection), "a connection that held a failed reply is replaced"
    assert s.receive(1, error("again", "INVALID_VOICE"), 0.6) == []


def test_concurrency_refusal_waits_for_our_own_reply_then_retries_once_per_reply():
    s = make_session()
    ready(s)
    say(s, "a", "First reply here.")
    out = s.send_text("b", "Second reply. ", PARAMS, 0.1) + s.send_text("b", "More.", PARAMS, 0.1)
    out += s.close_context("b", 0.1)
    assert {o.conn for o in of_type(out, sn.Send)} == {2}
    out = s.receive(2, error("Concurrency limit reached", "CONCURRENCY_LIMIT"), 0.2)
    retry = of_type(out, sn.ContextRetrying)
    assert len(retry) == 1 and retry[0].delay_s is None, "waits for our own reply"
    # The other fragments' refusals belong to the same try.
    assert s.receive(2, error("Concurrency limit reached", "CONCURRENCY_LIMIT"), 0.2) == []
    out = s.poll(30.0)
    assert not of_type(out, sn.ContextFailed)
    assert not [m for m in sends(out) if "text" in m]
    speak_words(s, 1, "t1", ["First", "reply", "here."], 30.0)
    out = s.receive(1, complete("t1"), 30.1)
    assert finished(out) == ["a"]
    resent = sends(out, conn=2)
    assert [m["text"] for m in resent] == ["Second reply. More.", ""]
    assert resent[0]["context_id"] == "b.2"


def test_refusals_with_nothing_of_ours_running_back_off_within_a_budget_then_fail_once():
    s = make_session(retry_budget_s=1.0)
    ready(s)
    say(s, "r", "Hello.")
    t, failures, tries = 0.1, [], 0
    while t < 5.0:
        out = s.receive(1, error("Too many requests", "RATE_LIMIT"), t)
        failures += of_type(out, sn.ContextFailed)
        tries += len(of_type(out, sn.ContextRetrying))
        if failures:
            break
        t = s.next_deadline(t) + 0.01
        out = s.poll(t)
        assert [m["text"] for m in sends(out)] == ["Hello.", ""], "each retry resends it all"
    assert len(failures) == 1
    assert 2 <= tries <= 6
    assert t < 2.0, "the total wait is bounded"


# ---------------------------------------------------------------- routine


def test_idle_timeout_is_routine_and_the_connection_is_replaced():
    s = make_session(keepalive_interval_s=20.0)
    ready(s)
    out = s.receive(2, error("Connection timed out after 10 seconds of inactivity"), 10.0)
    assert of_type(out, sn.Notice) and not of_type(out, sn.UnattributedError)
    out = s.connection_lost(2, 10.0)
    assert not of_type(out, sn.OpenConnection), "one warm spare is left"
    assert s.keepalive.interval_s == 5.0, "pings go out sooner than the server's timeout"
    out = s.connection_lost(1, 10.0)
    assert len(of_type(out, sn.OpenConnection)) == 1


def test_a_refused_ping_turns_keepalive_off_and_stays_quiet():
    s = make_session(keepalive_interval_s=5.0)
    ready(s, pings=False)
    assert s.keepalive.ping_supported is False
    out = s.poll(100.0)
    assert sends(out) == []
    assert s.next_deadline(100.0) >= 105.0


def test_a_refused_ping_on_a_busy_connection_does_not_fail_its_reply():
    s = make_session()
    s.start()
    s.connection_opened(1, 0.0)
    say(s, "r", "Hello.")  # goes out right behind the probe ping
    out = s.receive(1, error("'text' is required", "MISSING_FIELD"), 0.01)
    assert not of_type(out, sn.ContextFailed)
    assert s.keepalive.ping_supported is False


# ------------------------------------------------------------- queueing


def test_replies_queued_at_once_take_turns_with_no_clock():
    s = make_session(max_replies_in_flight=2)
    ready(s)
    out = []
    for name in ("a", "b", "c", "d"):
        out += say(s, name, f"Reply {name} here.")
    started = {m["context_id"] for m in sends(out) if m.get("text")}
    assert started == {"a", "b"}
    out = s.poll(60.0)
    assert not of_type(out, sn.ContextFailed | sn.ContextFinished)
    speak_words(s, 1, "t1", ["Reply", "a", "here."], 60.0)
    out = s.receive(1, complete("t1"), 60.1)
    assert finished(out) == ["a"]
    assert {m["context_id"] for m in sends(out) if m.get("text")} == {"c"}


def test_a_voice_change_mid_reply_waits_for_the_first_part_then_uses_a_new_context():
    s = make_session()
    ready(s)
    s.send_text("r", "First part. ", PARAMS, 0.0)
    liam = VoiceParams(voice_id="liam", sample_rate=RATE, word_timestamps=True)
    out = s.send_text("r", "Second part.", liam, 0.1)
    out += s.close_context("r", 0.1)
    msgs = sends(out)
    assert [(m["text"], m["continue"]) for m in msgs] == [("", False)]
    out = speak_words(s, 1, "t1", ["First", "part."], 0.5)
    out += s.receive(1, complete("t1"), 0.5)
    msgs = sends(out)
    assert [(m["voice_id"], m["text"], m["context_id"]) for m in msgs] == [
        ("liam", "Second part.", "r.2"),
        ("liam", "", "r.2"),
    ]
    out = speak_words(s, 1, "u1", ["Second", "part."], 0.8)
    out += s.receive(1, complete("u1"), 0.9)
    assert finished(out) == ["r"]


def test_a_reply_whose_connection_keeps_dropping_fails_once_instead_of_looping():
    s = make_session()
    ready(s)
    say(s, "r", "Hello there.", params=NO_WORDS)
    failures, conn, t, next_id = [], 1, 0.0, 3
    for _ in range(10):
        s.receive(conn, chunk("t1", 0.2), t)
        out = s.connection_lost(conn, t + 0.1)
        failures += of_type(out, sn.ContextFailed)
        resent = [o.conn for o in of_type(out, sn.Send) if o.message.get("text")]
        if failures:
            assert not resent
            break
        assert resent, "resent on another connection"
        conn = resent[0]
        for _request in of_type(s.poll(t + 0.2), sn.OpenConnection) + of_type(
            out, sn.OpenConnection
        ):
            s.connection_opened(next_id, t + 0.2)  # the pool's replacement spare
            next_id += 1
        t += 1.0
    assert len(failures) == 1
    assert failures[0].error.code == sn.CONNECTION_LOST
    assert "lost 4 times" in failures[0].error.message


# --------------------------------------------------------- complete_backoff_ms


def test_every_fragment_asks_for_completes_without_the_documented_hold_back():
    s = make_session()
    ready(s)
    msgs = sends(say(s, "r", "Hello there."))
    assert [m["complete_backoff_ms"] for m in msgs] == [0, 0]


def test_a_server_refusing_complete_backoff_gets_the_reply_again_without_it():
    s = make_session()
    ready(s)
    out = s.send_text("r", "Hello there. ", PARAMS, 0.0, max_buffer_delay_ms=0)
    out += s.send_text("r", "How are you?", PARAMS, 0.0, max_buffer_delay_ms=0)
    out += s.close_context("r", 0.0)
    assert len(sends(out, conn=1)) == 3
    refusal = error("'complete_backoff_ms' cannot be combined with 'context_id'")
    out = s.receive(1, refusal, 0.1)
    assert of_type(out, sn.Notice)
    assert not of_type(out, sn.ContextFailed | sn.UnattributedError)
    resent = sends(out, conn=1)
    assert [m["text"] for m in resent] == ["Hello there. How are you?", ""]
    assert {m["context_id"] for m in resent} == {"r.2"}
    assert all("complete_backoff_ms" not in m for m in resent)
    # The refused context's other fragments are refused too: nothing to do.
    assert s.receive(1, refusal, 0.1) == []
    assert s.receive(1, refusal, 0.1) == []
    speak_words(s, 1, "t1", ["Hello", "there.", "How", "are", "you?"], 0.2)
    assert finished(s.receive(1, complete("t1"), 0.3)) == ["r"]
    # Learned for the session: later replies go without the field at once.
    assert all("complete_backoff_ms" not in m for m in sends(say(s, "q", "Next.", 0.4)))


def test_a_slot_held_by_a_held_back_complete_is_freed_for_a_refused_reply():
    s = make_session()
    ready(s)
    say(s, "a", "First reply here.")
    say(s, "b", "Second reply.", 0.1)
    out = s.receive(2, error("Concurrency limit reached", "CONCURRENCY_LIMIT"), 0.2)
    assert of_type(out, sn.ContextRetrying)
    # All of reply a's words arrive, but its last complete is held back:
    # the server may hold a's slot until then, so its socket is closed.
    out = speak_words(s, 1, "t1", ["First", "reply", "here."], 0.3)
    out += s.poll(0.3 + s.config.tail_guard_s)
    assert finished(out) == ["a"]
    assert [c.conn for c in of_type(out, sn.CloseConnection)] == [1]
    # Closing frees the slot at once: reply b is sent again straight away.
    assert [m["text"] for m in sends(out) if m.get("context_id") == "b.2"] == ["Second reply.", ""]


def test_a_connection_whose_reply_completed_stays_warm():
    s = make_session()
    ready(s)
    say(s, "a", "First reply here.")
    say(s, "b", "Second reply.", 0.1)
    s.receive(2, error("Concurrency limit reached", "CONCURRENCY_LIMIT"), 0.2)
    speak_words(s, 1, "t1", ["First", "reply", "here."], 0.3)
    out = s.receive(1, complete("t1"), 0.3)
    assert finished(out) == ["a"]
    assert not of_type(out, sn.CloseConnection)
    assert s.connection_state(1) is sn.ConnState.SPARE


def test_every_reply_refused_for_complete_backoff_is_sent_again():
    s = make_session()
    ready(s)
    say(s, "a", "First reply.")
    say(s, "b", "Second reply.", 0.0)
    refusal = error("'complete_backoff_ms' cannot be combined with 'context_id'")
    out = s.receive(1, refusal, 0.1) + s.receive(2, refusal, 0.1)
    assert [m["context_id"] for m in sends(out) if m["text"]] == ["a.2", "b.2"]
    assert all("complete_backoff_ms" not in m for m in sends(out))
    assert s.receive(1, refusal, 0.1) + s.receive(2, refusal, 0.1) == []
