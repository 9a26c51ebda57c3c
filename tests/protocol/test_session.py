"""Unit tests of the client-side session rules (no sockets, no event loop)."""

from __future__ import annotations

import pytest

from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol import session as sn
from pipecat_waves.protocol.requests import VoiceParams, parse_request

RATE = 16000
PARAMS = VoiceParams(voice_id="avery", sample_rate=RATE, word_timestamps=True)


def make_session(**overrides) -> sn.WavesSession:
    return sn.WavesSession(sn.SessionConfig(sample_rate=RATE, **overrides))


def sends(outputs, lane=None):
    return [o.message for o in outputs if isinstance(o, sn.Send) and lane in (None, o.lane)]


def of_type(outputs, kind):
    return [o for o in outputs if isinstance(o, kind)]


def env(rid, echo=None):
    return rs.Envelope(request_id=rid, external_request_id=echo)


def chunk(rid, pcm, echo=None):
    return rs.AudioChunk(env(rid, echo), pcm)


def complete(rid, echo=None):
    return rs.SegmentComplete(env(rid, echo))


def opened(session, lane=1, now=0.0):
    return session.lane_opened(lane, now)


# ------------------------------------------------------------------- sending


def test_fragments_are_valid_requests_sharing_one_context():
    s = make_session()
    opened(s)
    out = s.send_text("ctx-a", "Hello there. ", PARAMS, 0.0, max_buffer_delay_ms=0)
    out += s.send_text("ctx-a", "How are you?", PARAMS, 0.1, max_buffer_delay_ms=0)
    out += s.close_context("ctx-a", 0.2)
    msgs = sends(out, lane=1)
    assert [m["text"] for m in msgs] == ["Hello there. ", "How are you?", ""]
    assert [m["continue"] for m in msgs] == [True, True, False]
    assert {m["context_id"] for m in msgs} == {"ctx-a"}
    assert all(m["request_id"] == "ctx-a" for m in msgs)
    assert all(m["max_buffer_delay_ms"] == 0 for m in msgs)
    for m in msgs:  # a strict server would accept every one of them
        parse_request(m)


def test_text_waits_for_a_connection_then_goes_out_in_order():
    s = make_session()
    out = s.send_text("c", "One. ", PARAMS, 0.0)
    assert of_type(out, sn.OpenLane), "no connection yet: one must be opened"
    assert not sends(out)
    out = s.send_text("c", "Two. ", PARAMS, 0.1)
    assert not of_type(out, sn.OpenLane), "the connection is already being opened"
    out = opened(s, 7, 0.2)
    assert [m["text"] for m in sends(out, 7)] == ["One. ", "Two. "]


def test_long_fragments_are_cut_at_word_boundaries():
    s = make_session()
    opened(s)
    text = " ".join(["word"] * 120)  # 599 characters
    msgs = sends(s.send_text("c", text, PARAMS, 0.0))
    assert len(msgs) == 3
    assert all(len(m["text"]) <= 250 for m in msgs)
    assert "".join(m["text"] for m in msgs) == text


# ------------------------------------------------------------ audio and turns


def test_audio_is_aligned_to_whole_samples_across_chunks():
    s = make_session()
    opened(s)
    s.send_text("c", "Hi there.", PARAMS, 0.0)
    a = s.receive(1, chunk("t1", b"\x01\x02\x03", echo="c"), 0.1)
    b = s.receive(1, chunk("t1", b"\x04\x05", echo="c"), 0.2)
    pcm = [o.pcm for o in of_type(a + b, sn.AudioOut)]
    assert pcm == [b"\x01\x02", b"\x03\x04"]
    c = s.receive(1, chunk("t1", b"\x06", echo="c"), 0.3)
    assert [o.pcm for o in of_type(c, sn.AudioOut)] == [b"\x05\x06"]


def test_reply_ends_the_moment_every_sentence_has_completed():
    s = make_session()
    opened(s)
    s.send_text("c", "First sentence. ", PARAMS, 0.0)
    s.send_text("c", "Second one.", PARAMS, 0.0)
    s.close_context("c", 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "c"), 0.1)
    assert not of_type(s.receive(1, complete("t1", "c"), 0.2), sn.ContextFinished)
    s.receive(1, chunk("t2", b"\x00\x00", "c"), 0.3)
    out = s.receive(1, complete("t2", "c"), 0.4)
    assert of_type(out, sn.ContextFinished) == [sn.ContextFinished("c")]


def test_open_context_never_finishes_on_its_own():
    s = make_session()
    opened(s)
    s.send_text("c", "Still talking.", PARAMS, 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "c"), 0.1)
    s.receive(1, complete("t1", "c"), 0.2)
    assert not of_type(s.poll(60.0), sn.ContextFinished)


def test_sentences_merged_by_server_buffering_end_after_the_silence_guard():
    s = make_session(silence_guard_s=1.5)
    opened(s)
    s.send_text("c", "One. ", PARAMS, 0.0, max_buffer_delay_ms=3000)
    s.send_text("c", "Two.", PARAMS, 0.0, max_buffer_delay_ms=3000)
    s.close_context("c", 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "c"), 0.1)
    s.receive(1, complete("t1", "c"), 0.2)  # one segment for two sentences
    assert not of_type(s.poll(1.6), sn.ContextFinished)
    assert of_type(s.poll(1.71), sn.ContextFinished)


def test_a_slow_sentence_is_waited_for_when_each_sentence_is_its_own_segment():
    s = make_session(silence_guard_s=1.5, no_audio_timeout_s=8.0)
    opened(s)
    s.send_text("c", "Thank you. ", PARAMS, 0.0, max_buffer_delay_ms=0)
    s.send_text("c", "A very long second sentence.", PARAMS, 0.0, max_buffer_delay_ms=0)
    s.close_context("c", 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "c"), 0.1)
    s.receive(1, complete("t1", "c"), 0.2)
    assert not of_type(s.poll(3.5), sn.ContextFinished), "its audio is still to come"
    s.receive(1, chunk("t2", b"\x00\x00", "c"), 3.6)
    out = s.receive(1, complete("t2", "c"), 3.7)
    assert of_type(out, sn.ContextFinished) == [sn.ContextFinished("c")]


def test_word_timestamps_covering_every_word_end_the_reply_at_once():
    s = make_session()
    opened(s)
    s.send_text("c", "Hi there. ", PARAMS, 0.0, max_buffer_delay_ms=3000)
    s.send_text("c", "Bye.", PARAMS, 0.0, max_buffer_delay_ms=3000)
    s.close_context("c", 0.0)
    s.receive(1, chunk("t1", b"\x00\x00" * 100, "c"), 0.1)
    for word in ("Hi", "there.", "Bye."):
        s.receive(1, rs.WordTimestamp(env("t1", "c"), word, 0.0, 0.001), 0.1)
    out = s.receive(1, complete("t1", "c"), 0.2)  # one merged segment, all words timed
    assert of_type(out, sn.ContextFinished) == [sn.ContextFinished("c")]


def test_missing_complete_ends_after_the_silence_guard():
    s = make_session(silence_guard_s=1.5)
    opened(s)
    s.send_text("c", "One.", PARAMS, 0.0)
    s.close_context("c", 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "c"), 0.1)
    assert not of_type(s.poll(1.5), sn.ContextFinished)
    assert of_type(s.poll(1.61), sn.ContextFinished)


def test_reply_with_no_audio_at_all_ends_after_the_no_audio_timeout():
    s = make_session(no_audio_timeout_s=8.0)
    opened(s)
    s.send_text("c", "One.", PARAMS, 0.0)
    s.close_context("c", 1.0)
    assert not of_type(s.poll(8.9), sn.ContextFinished)
    assert of_type(s.poll(9.01), sn.ContextFinished)


def test_word_times_continue_across_segments():
    s = make_session()
    opened(s)
    s.send_text("c", "One two. ", PARAMS, 0.0)
    s.send_text("c", "Three.", PARAMS, 0.0)
    half_second = b"\x00\x00" * (RATE // 2)
    s.receive(1, chunk("t1", half_second, "c"), 0.1)
    s.receive(1, rs.WordTimestamp(env("t1", "c"), "One", 0.0, 0.2), 0.1)
    s.receive(1, complete("t1", "c"), 0.2)
    out = s.receive(1, rs.WordTimestamp(env("t2", "c"), "Three.", 0.1, 0.4), 0.3)
    assert of_type(out, sn.WordOut) == [sn.WordOut("c", "Three.", pytest.approx(0.6))]


# ------------------------------------------------------------- attribution


def test_non_echoing_lane_attributes_to_its_only_reply_and_wants_a_standby():
    s = make_session()
    opened(s)
    s.send_text("c", "Hello.", PARAMS, 0.0)
    out = s.receive(1, chunk("t1", b"\x01\x00"), 0.1)
    assert of_type(out, sn.AudioOut) == [sn.AudioOut("c", b"\x01\x00")]
    assert s.lane_echoes(1) is False
    assert of_type(out, sn.OpenLane), "a spare connection is warmed once echoes are known absent"


def test_echoing_lane_keeps_no_standby():
    s = make_session()
    opened(s)
    s.send_text("c", "Hello.", PARAMS, 0.0)
    out = s.receive(1, chunk("t1", b"\x01\x00", "c"), 0.1)
    assert s.lane_echoes(1) is True
    assert not of_type(out + s.poll(0.2), sn.OpenLane)


def test_second_reply_on_a_non_echoing_lane_moves_to_the_standby():
    s = make_session()
    opened(s, 1)
    s.send_text("a", "First.", PARAMS, 0.0)
    s.receive(1, chunk("t1", b"\x00\x00"), 0.1)
    opened(s, 2, 0.2)  # the standby
    assert s.standby_lane == 2
    s.close_context("a", 0.3)
    out = s.send_text("b", "Second.", PARAMS, 0.4)
    assert [m["text"] for m in sends(out, 2)] == ["Second."]
    assert s.active_lane == 2
    # Audio on lane 1 still belongs to a, audio on lane 2 to b.
    assert of_type(s.receive(1, chunk("t1", b"\x01\x00"), 0.5), sn.AudioOut)[0].context_id == "a"
    assert of_type(s.receive(2, chunk("u1", b"\x02\x00"), 0.5), sn.AudioOut)[0].context_id == "b"
    # Once a has finished, lane 1 becomes the new standby.
    s.receive(1, complete("t1"), 0.6)
    assert s.standby_lane == 1


def test_second_reply_waits_when_no_lane_can_tell_replies_apart():
    s = make_session(standby=False)
    opened(s, 1)
    s.send_text("a", "First.", PARAMS, 0.0)
    s.receive(1, chunk("t1", b"\x00\x00"), 0.1)
    s.close_context("a", 0.2)
    assert not sends(s.send_text("b", "Second.", PARAMS, 0.3))
    out = s.receive(1, complete("t1"), 0.4)
    assert of_type(out, sn.ContextFinished) == [sn.ContextFinished("a")]
    assert [m["text"] for m in sends(out, 1)] == ["Second."]


def test_frames_of_unknown_echo_are_dropped_without_changing_echo_mode():
    s = make_session()
    opened(s)
    s.send_text("c", "Hi.", PARAMS, 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "c"), 0.1)
    assert s.receive(1, chunk("t9", b"\x00\x00", "someone-else"), 0.2) == []
    assert s.lane_echoes(1) is True


# ---------------------------------------------------------------- barge-in


def test_barge_in_on_echoing_lane_cancels_and_drops_late_audio_only():
    s = make_session()
    opened(s)
    s.send_text("a", "A long reply. ", PARAMS, 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "a"), 0.1)
    out = s.interrupt(["a"], 0.2)
    msgs = sends(out, 1)
    assert msgs == [
        {"text": "", "context_id": "a", "cancel_request": True, "voice_id": "avery"},
        {"text": "", "context_id": "a", "context_close": True, "voice_id": "avery"},
    ]
    assert not of_type(out, sn.CloseLane), "an echoing lane stays"
    assert s.receive(1, chunk("t1", b"\x05\x05", "a"), 0.3) == []
    assert s.receive(1, chunk("t2", b"\x05\x05", "a"), 0.3) == []
    out = s.send_text("b", "New reply.", PARAMS, 0.4)
    assert sends(out, 1)
    assert of_type(s.receive(1, chunk("u1", b"\x07\x00", "b"), 0.5), sn.AudioOut) == [
        sn.AudioOut("b", b"\x07\x00")
    ]


def test_barge_in_on_non_echoing_lane_retires_it_and_uses_the_standby():
    s = make_session()
    opened(s, 1)
    s.send_text("a", "A long reply. ", PARAMS, 0.0)
    s.receive(1, chunk("t1", b"\x00\x00"), 0.1)
    opened(s, 2, 0.15)
    out = s.interrupt(["a"], 0.2)
    assert [m.get("cancel_request") for m in sends(out, 1)] == [True, None]
    assert [c.lane for c in of_type(out, sn.CloseLane)] == [1]
    assert s.active_lane == 2
    # Whatever lane 1 still delivers is discarded.
    assert s.receive(1, chunk("t1", b"\x05\x05"), 0.3) == []
    assert s.receive(1, chunk("t7", b"\x05\x05"), 0.3) == []
    out = s.send_text("b", "New reply.", PARAMS, 0.4)
    assert [m["text"] for m in sends(out, 2)] == ["New reply."]
    assert of_type(s.receive(2, chunk("u1", b"\x07\x00"), 0.5), sn.AudioOut)[0].context_id == "b"


def test_barge_in_before_echo_is_known_replaces_the_lane_in_the_background():
    s = make_session()
    opened(s, 1)
    s.send_text("a", "Reply.", PARAMS, 0.0)
    out = s.interrupt(["a"], 0.1)
    assert of_type(out, sn.CloseLane)
    assert of_type(out, sn.OpenLane), "a replacement is opened right away, off the critical path"
    out = s.send_text("b", "Next.", PARAMS, 0.2)
    assert not sends(out), "queued until the replacement is up"
    out = opened(s, 3, 0.3)
    assert [m["text"] for m in sends(out, 3)] == ["Next."]


def test_barge_in_of_unsent_text_sends_nothing():
    s = make_session()
    s.send_text("a", "Never sent.", PARAMS, 0.0)
    out = s.interrupt(["a"], 0.1)
    assert not sends(out)
    assert s.live_contexts() == []
    assert not sends(opened(s, 1, 0.2))


# --------------------------------------------------------------- reconnect


def test_dropped_connection_resends_only_unfinished_sentences():
    s = make_session()
    opened(s, 1)
    s.send_text("c", "One. ", PARAMS, 0.0)
    s.send_text("c", "Two. ", PARAMS, 0.0)
    s.send_text("c", "Three.", PARAMS, 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "c"), 0.1)
    s.receive(1, complete("t1", "c"), 0.2)
    s.receive(1, chunk("t2", b"\x00\x00", "c"), 0.3)  # "Two." only partly received
    out = s.lane_lost(1, 0.4)
    assert of_type(out, sn.OpenLane)
    out = opened(s, 2, 0.5)
    msgs = sends(out, 2)
    assert [m["text"] for m in msgs] == ["Two. ", "Three."]
    assert {m["context_id"] for m in msgs} == {"c.1"}, "a fresh server-side context"
    # Audio on the new lane still belongs to c.
    assert (
        of_type(s.receive(2, chunk("u1", b"\x01\x00", "c.1"), 0.6), sn.AudioOut)[0].context_id
        == "c"
    )


def test_dropped_connection_resumes_after_the_last_spoken_word():
    s = make_session()
    opened(s, 1)
    s.send_text("c", "Alpha beta gamma delta.", PARAMS, 0.0)
    s.close_context("c", 0.0)
    quarter = b"\x00\x00" * (RATE // 4)
    s.receive(1, chunk("t1", quarter * 2, "c"), 0.1)  # 0.5 s received
    s.receive(1, rs.WordTimestamp(env("t1", "c"), "Alpha", 0.0, 0.2), 0.1)
    s.receive(1, rs.WordTimestamp(env("t1", "c"), "beta", 0.25, 0.45), 0.1)
    s.receive(1, rs.WordTimestamp(env("t1", "c"), "gamma", 0.5, 0.8), 0.1)
    s.lane_lost(1, 0.2)
    msgs = sends(opened(s, 2, 0.3), 2)
    assert [(m["text"], m["continue"]) for m in msgs] == [("gamma delta.", True), ("", False)]


def test_dropped_connection_with_everything_received_resends_nothing():
    s = make_session()
    opened(s, 1)
    s.send_text("c", "Done.", PARAMS, 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "c"), 0.1)
    s.receive(1, complete("t1", "c"), 0.2)
    s.lane_lost(1, 0.3)
    msgs = sends(opened(s, 2, 0.4), 2)
    assert msgs == []
    out = s.send_text("c", "More.", PARAMS, 0.5)
    assert [m["text"] for m in sends(out, 2)] == ["More."]


# ------------------------------------------------------- liveness and errors


def test_keepalive_ping_only_after_silence():
    s = make_session(keepalive_interval_s=20.0)
    opened(s, 1, 0.0)
    assert not sends(s.poll(19.0))
    assert sends(s.poll(20.0)) == [{"type": "ping"}]
    assert not sends(s.poll(21.0)), "one ping outstanding at a time"
    s.receive(1, rs.Pong(), 21.5)
    assert not sends(s.poll(30.0))


def test_stalled_lane_is_probed_then_declared_dead():
    s = make_session(stall_probe_s=2.0, pong_timeout_s=2.0)
    opened(s, 1, 0.0)
    s.send_text("c", "Hello.", PARAMS, 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "c"), 0.5)
    assert not sends(s.poll(2.4))
    assert sends(s.poll(2.6)) == [{"type": "ping"}]
    assert not of_type(s.poll(4.5), sn.LaneStalled)
    assert of_type(s.poll(4.7), sn.LaneStalled) == [sn.LaneStalled(1)]


def test_error_for_a_reply_fails_that_reply_only():
    s = make_session()
    opened(s, 1)
    s.send_text("c", "Hello.", PARAMS, 0.0)
    err = rs.ServerError(env(None, "c"), "Invalid Voice ID", "INVALID_VOICE")
    out = s.receive(1, err, 0.1)
    assert not sends(out), "no second message that could earn a second error"
    assert not sends(s.send_text("c", "More.", PARAMS, 0.15)), "nothing more is sent for it"
    # Audio of a segment already under way still plays, then the failure comes.
    assert of_type(s.receive(1, chunk("t1", b"\x00\x00", "c"), 0.2), sn.AudioOut)
    assert not of_type(s.poll(0.4), sn.ContextFailed)
    assert of_type(s.poll(0.46), sn.ContextFailed) == [sn.ContextFailed("c", err)]
    assert s.receive(1, chunk("t1", b"\x00\x00", "c"), 0.5) == []


def test_error_with_no_reply_in_flight_is_reported_for_the_connection():
    s = make_session()
    opened(s, 1)
    err = rs.ServerError(rs.Envelope(), "Connection timed out after 60 seconds of inactivity")
    assert s.receive(1, err, 0.1) == [sn.LaneError(1, err)]


def test_voice_change_mid_reply_moves_to_a_new_server_context():
    s = make_session()
    opened(s)
    s.send_text("c", "In one voice. ", PARAMS, 0.0)
    other = VoiceParams(voice_id="liam", sample_rate=RATE, word_timestamps=True)
    msgs = sends(s.send_text("c", "In another.", other, 0.1))
    assert [(m["context_id"], m["text"], m["continue"]) for m in msgs] == [
        ("c", "", False),
        ("c.1", "In another.", True),
    ]
    assert msgs[1]["voice_id"] == "liam"


def test_frames_without_a_request_id_form_one_segment_until_complete():
    s = make_session()
    opened(s)
    s.send_text("c", "One. ", PARAMS, 0.0, max_buffer_delay_ms=0)
    s.send_text("c", "Two.", PARAMS, 0.0, max_buffer_delay_ms=0)
    s.close_context("c", 0.0)
    a = s.receive(1, rs.AudioChunk(rs.Envelope(), b"\x01\x02\x03"), 0.1)
    b = s.receive(1, rs.AudioChunk(rs.Envelope(), b"\x04"), 0.1)
    assert [o.pcm for o in of_type(a + b, sn.AudioOut)] == [b"\x01\x02", b"\x03\x04"]
    assert not of_type(s.receive(1, rs.SegmentComplete(rs.Envelope()), 0.2), sn.ContextFinished)
    s.receive(1, rs.AudioChunk(rs.Envelope(), b"\x05\x06"), 0.3)
    out = s.receive(1, rs.SegmentComplete(rs.Envelope()), 0.4)
    assert of_type(out, sn.ContextFinished) == [sn.ContextFinished("c")]


def test_anonymous_error_right_after_a_cancel_does_not_fail_the_next_reply():
    s = make_session()
    opened(s)
    s.send_text("a", "First.", PARAMS, 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "a"), 0.1)
    s.interrupt(["a"], 0.2)
    s.send_text("b", "Second.", PARAMS, 0.3)
    err = rs.ServerError(rs.Envelope(), "Unknown context_id")
    assert s.receive(1, err, 0.4) == []
    assert s.is_live("b")
    assert of_type(s.receive(1, chunk("u1", b"\x01\x00", "b"), 0.5), sn.AudioOut)


def test_reply_refused_for_concurrency_is_resent_after_a_backoff():
    s = make_session()
    opened(s)
    s.send_text("c", "Hello. ", PARAMS, 0.0, max_buffer_delay_ms=0)
    s.close_context("c", 0.0)
    err = rs.ServerError(env(None, "c"), "Concurrency limit reached", "CONCURRENCY_LIMIT")
    out = s.receive(1, err, 0.1)
    retry = of_type(out, sn.ContextRetrying)
    assert len(retry) == 1 and retry[0].delay_s > 0
    assert not of_type(out, sn.ContextFailed)
    assert not sends(s.poll(0.1 + retry[0].delay_s / 2)), "not before the backoff"
    msgs = sends(s.poll(0.1 + retry[0].delay_s + 0.01))
    assert [(m["text"], m["continue"]) for m in msgs] == [("Hello. ", True), ("", False)]
    assert msgs[0]["context_id"] == "c.1"


def test_concurrency_refusals_give_up_after_a_few_tries():
    s = make_session()
    opened(s)
    s.send_text("c", "Hello.", PARAMS, 0.0)
    now = 0.0
    failed = []
    for _ in range(sn.MAX_RATE_LIMIT_RETRIES + 1):
        wire = s._contexts["c"].wire_id
        now += 10.0
        s.poll(now)
        err = rs.ServerError(env(None, wire), "Too many concurrent requests")
        failed += of_type(s.receive(1, err, now), sn.ContextFailed)
        failed += of_type(s.poll(now + 1.0), sn.ContextFailed)
    assert [f.context_id for f in failed] == ["c"]


def test_server_that_refuses_pings_is_not_pinged_again_and_not_reported():
    s = make_session(keepalive_interval_s=20.0)
    opened(s, 1, 0.0)
    assert sends(s.poll(20.0)) == [{"type": "ping"}]
    refusal = rs.ServerError(rs.Envelope(), "'text' is required", "MISSING_FIELD")
    assert s.receive(1, refusal, 20.1) == []
    assert not sends(s.poll(60.0))


def test_server_that_keeps_streaming_a_cancelled_reply_loses_its_lane():
    s = make_session(cancel_grace_s=0.3)
    opened(s, 1)
    s.send_text("a", "Long reply.", PARAMS, 0.0)
    s.receive(1, chunk("t1", b"\x00\x00", "a"), 0.1)
    s.interrupt(["a"], 0.2)
    s.send_text("b", "Next.", PARAMS, 0.25)
    assert s.receive(1, chunk("t1", b"\x00\x00", "a"), 0.4) == [], "within the grace: dropped"
    out = s.receive(1, chunk("t1", b"\x00\x00", "a"), 0.6)
    assert [c.lane for c in of_type(out, sn.CloseLane)] == [1]
    assert of_type(out, sn.OpenLane), "the next reply moves to a fresh connection"
    assert [m["text"] for m in sends(opened(s, 2, 0.7), 2)] == ["Next."]
    # Later barge-ins on any lane retire it at once.
    s.receive(2, chunk("u1", b"\x00\x00", "b"), 0.8)
    assert of_type(s.interrupt(["b"], 0.9), sn.CloseLane)


def test_ping_refusal_during_a_reply_does_not_fail_the_reply():
    s = make_session(stall_probe_s=1.0)
    opened(s, 1, 0.0)
    s.send_text("c", "Hello.", PARAMS, 0.0)
    assert sends(s.poll(1.1)) == [{"type": "ping"}], "stall probe while audio is awaited"
    refusal = rs.ServerError(rs.Envelope(), "'text' is required")
    assert s.receive(1, refusal, 1.2) == []
    assert s.is_live("c")
    assert of_type(s.receive(1, chunk("t1", b"\x00\x00"), 1.3), sn.AudioOut)


def test_a_real_error_during_a_probe_still_fails_the_reply():
    s = make_session(stall_probe_s=1.0, complete_guard_s=0.25)
    opened(s, 1, 0.0)
    s.send_text("c", "Hello.", PARAMS, 0.0)
    s.poll(1.1)
    err = rs.ServerError(rs.Envelope(), "Invalid voice_id 'x'")
    assert s.receive(1, err, 1.2) == []
    assert of_type(s.poll(1.5), sn.ContextFailed) == [sn.ContextFailed("c", err)]


def test_next_deadline_names_the_next_thing_poll_would_do():
    s = make_session(keepalive_interval_s=20.0, stall_probe_s=2.0, complete_guard_s=0.25)
    opened(s, 1, 0.0)
    assert s.next_deadline(0.0) == pytest.approx(20.0), "idle: the keep-alive"
    s.send_text("c", "One. ", PARAMS, 30.0, max_buffer_delay_ms=0)
    assert s.next_deadline(30.0) == pytest.approx(32.0), "awaiting audio: the stall probe"
    assert not sends(s.poll(31.9))
    s.receive(1, chunk("t1", b"\x00\x00", "c"), 31.0)
    s.close_context("c", 31.1)
    # Closed mid-stream, no complete yet: the silence guard runs from the close.
    assert s.next_deadline(31.1) == pytest.approx(32.6)
    s.receive(1, complete("t1", "c"), 31.2)
    assert not s.is_live("c"), "every sentence completed: over at once, nothing to wait for"
