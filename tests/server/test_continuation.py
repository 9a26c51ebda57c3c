"""Unit tests of the continuation buffer's release rules (no sockets, no event loop)."""

from __future__ import annotations

import pytest

from pipecat_waves.protocol.constants import MAX_FRAGMENT_CHARS
from pipecat_waves.protocol.continuation import (
    STRICT_MAX_CHUNK_CHARS,
    ContinuationBuffer,
    ReleaseReason,
)


def make(**kwargs) -> ContinuationBuffer[str]:
    kwargs.setdefault("min_sentence_chars", 8)
    return ContinuationBuffer[str](**kwargs)


def texts(releases) -> list[str]:
    return [r.text for r in releases]


# ----------------------------------------------------------------- rule (a)


def test_fragments_are_buffered_until_continue_false_and_joined_exactly():
    buf = make()
    assert buf.feed("c", "Hello", now=0.0, more=True) == []
    assert buf.feed("c", " there,", now=0.1, more=True) == []
    assert buf.buffered("c") == "Hello there,"
    out = buf.feed("c", "  my friend", now=0.2, more=False)
    assert texts(out) == ["Hello there,  my friend"]
    assert out[0].reason is ReleaseReason.END
    assert out[0].context_id == "c"
    assert buf.buffered("c") == ""
    assert not buf.is_open("c")


def test_empty_close_with_buffer_releases_buffer():
    buf = make()
    buf.feed("c", "no boundary here", now=0.0, more=True)
    out = buf.feed("c", "", now=0.1, more=False)
    assert texts(out) == ["no boundary here"]


def test_empty_close_with_nothing_buffered_releases_nothing():
    buf = make()
    assert buf.feed("c", "", now=0.0, more=False) == []
    assert buf.next_deadline() is None
    assert buf.contexts == []


def test_close_after_sentence_release_releases_nothing_more():
    buf = make()
    assert texts(buf.feed("c", "A full sentence.", now=0.0, more=True)) == ["A full sentence."]
    assert buf.feed("c", "", now=0.1, more=False) == []


def test_whitespace_only_buffer_is_dropped_not_released():
    buf = make()
    buf.feed("c", "  ", now=0.0, more=True)
    assert buf.feed("c", "", now=0.1, more=False) == []
    assert buf.buffered("c") == ""


def test_continue_false_alone_is_a_one_fragment_segment():
    buf = make()
    assert texts(buf.feed("c", "Hi", now=0.0, more=False)) == ["Hi"]


# ----------------------------------------------------------------- rule (b)


@pytest.mark.parametrize(
    "fragment",
    [
        "That is all.",
        "Is it over?",
        "Stop right now!",
        'He said "go."',
        "He said 'go!' ",
        "Wait for it\u2026",
        "(A note in brackets.)",
        "That is all.  \n",
    ],
)
def test_sentence_end_releases_when_long_enough(fragment):
    buf = make()
    out = buf.feed("c", fragment, now=0.0, more=True)
    assert texts(out) == [fragment]
    assert out[0].reason is ReleaseReason.SENTENCE


def test_short_sentence_waits_for_more_text():
    buf = make(min_sentence_chars=8)
    assert buf.feed("c", "Hi.", now=0.0, more=True) == []
    out = buf.feed("c", " How are you?", now=0.1, more=True)
    assert texts(out) == ["Hi. How are you?"]


def test_min_sentence_chars_counts_stripped_text():
    buf = make(min_sentence_chars=8)
    assert buf.feed("c", "   Ok go.   ", now=0.0, more=True) == []  # 6 chars stripped
    assert texts(buf.feed("c", "Yes sir.", now=0.0, more=True)) == ["   Ok go.   Yes sir."]


@pytest.mark.parametrize("fragment", ["No boundary", "Dr. Smith said", "Version 3.1 is", "ok,"])
def test_text_not_ending_a_sentence_stays_buffered(fragment):
    buf = make()
    assert buf.feed("c", fragment, now=0.0, more=True) == []
    assert buf.buffered("c") == fragment


def test_sentence_rule_releases_whole_buffer_of_several_fragments():
    buf = make()
    buf.feed("c", "One,", now=0.0, more=True)
    buf.feed("c", " two,", now=0.1, more=True)
    out = buf.feed("c", " three.", now=0.2, more=True)
    assert texts(out) == ["One, two, three."]


# ----------------------------------------------------------------- rule (c)


def test_delay_counts_from_first_still_buffered_fragment():
    buf = make()
    buf.feed("c", "first", now=10.0, more=True, delay_ms=1000)
    buf.feed("c", " second", now=10.8, more=True, delay_ms=1000)
    # The second fragment did not restart the clock.
    assert buf.next_deadline() == pytest.approx(11.0)
    assert buf.poll(10.99) == []
    out = buf.poll(11.0)
    assert texts(out) == ["first second"]
    assert out[0].reason is ReleaseReason.DELAY
    assert buf.next_deadline() is None


def test_default_delay_is_3000_ms():
    buf = make()
    buf.feed("c", "waiting", now=5.0, more=True)
    assert buf.next_deadline() == pytest.approx(8.0)


def test_clock_restarts_after_a_release():
    buf = make()
    buf.feed("c", "first", now=0.0, more=True, delay_ms=1000)
    assert texts(buf.poll(1.0)) == ["first"]
    buf.feed("c", "second", now=1.5, more=True, delay_ms=1000)
    assert buf.next_deadline() == pytest.approx(2.5)


def test_delay_zero_releases_immediately():
    buf = make()
    out = buf.feed("c", "right away", now=3.0, more=True, delay_ms=0)
    assert texts(out) == ["right away"]
    assert out[0].reason is ReleaseReason.DELAY


def test_later_fragment_with_shorter_delay_brings_deadline_forward():
    buf = make()
    buf.feed("c", "slow", now=0.0, more=True, delay_ms=5000)
    buf.feed("c", " fast", now=1.0, more=True, delay_ms=500)
    assert buf.next_deadline() == pytest.approx(1.5)


def test_poll_releases_only_expired_contexts():
    buf = make()
    buf.feed("a", "alpha", now=0.0, more=True, delay_ms=100)
    buf.feed("b", "beta", now=0.0, more=True, delay_ms=900)
    out = buf.poll(0.5)
    assert [(r.context_id, r.text) for r in out] == [("a", "alpha")]
    assert buf.buffered("b") == "beta"
    assert buf.next_deadline() == pytest.approx(0.9)


# ----------------------------------------------------------------- rule (d)


def test_oversize_buffer_releases_longest_prefix_at_word_boundary():
    buf = make(max_chunk_chars=20)
    out = buf.feed("c", "aaaa bbbb cccc dddd eeee ffff", now=0.0, more=True)
    assert texts(out) == ["aaaa bbbb cccc dddd "]
    assert out[0].reason is ReleaseReason.SIZE
    assert buf.buffered("c") == "eeee ffff"


def test_default_max_chunk_is_stricter_than_the_client_fragment_limit():
    assert STRICT_MAX_CHUNK_CHARS < MAX_FRAGMENT_CHARS
    buf = make()
    words = ("word " * 50).strip()  # 249 chars: one fragment a client may send
    out = buf.feed("c", words, now=0.0, more=True)
    assert len(out) == 2
    assert all(len(r.text) <= STRICT_MAX_CHUNK_CHARS and r.text.endswith(" ") for r in out)
    assert "".join(texts(out)) + buf.buffered("c") == words


def test_size_cuts_repeat_and_pieces_rejoin_to_the_input():
    buf = make(max_chunk_chars=10)
    text = "one two three four five six seven eight"
    out = buf.feed("c", text, now=0.0, more=True)
    assert all(len(t) <= 10 for t in texts(out))
    assert "".join(texts(out)) + buf.buffered("c") == text


def test_single_word_longer_than_limit_is_cut_at_limit():
    buf = make(max_chunk_chars=5)
    out = buf.feed("c", "abcdefghijk", now=0.0, more=True)
    assert texts(out) == ["abcde", "fghij"]
    assert buf.buffered("c") == "k"


def test_exactly_max_chars_is_not_released():
    buf = make(max_chunk_chars=10)
    assert buf.feed("c", "0123456789", now=0.0, more=True) == []


def test_close_of_oversize_buffer_releases_in_bounded_segments():
    buf = make(max_chunk_chars=10)
    buf.feed("c", "aaa bbb", now=0.0, more=True)
    out = buf.feed("c", " ccc ddd", now=0.0, more=False)
    assert texts(out) == ["aaa bbb ", "ccc ddd"]
    assert [r.reason for r in out] == [ReleaseReason.SIZE, ReleaseReason.END]


def test_remainder_keeps_its_original_deadline():
    buf = make(max_chunk_chars=10)
    buf.feed("c", "aaa bbb", now=0.0, more=True, delay_ms=1000)
    buf.feed("c", " ccc", now=0.5, more=True, delay_ms=1000)
    # "aaa bbb ccc" is 11 chars: "aaa bbb " goes, "ccc" (from the 2nd fragment) stays.
    assert buf.buffered("c") == "ccc"
    assert buf.next_deadline() == pytest.approx(1.5)


# ------------------------------------------------------------------- meta


def test_release_carries_meta_of_last_contributing_fragment():
    buf = make()
    buf.feed("c", "one", now=0.0, more=True, meta="r1")
    out = buf.feed("c", " two.", now=0.0, more=True, meta="r2")
    assert out[0].meta == "r2"


def test_empty_closing_fragment_meta_wins():
    buf = make()
    buf.feed("c", "one", now=0.0, more=True, meta="r1")
    out = buf.feed("c", "", now=0.0, more=False, meta="r-close")
    assert out[0].meta == "r-close"


def test_size_cut_meta_is_from_fragment_holding_the_cut():
    buf = make(max_chunk_chars=10)
    buf.feed("c", "aaa ", now=0.0, more=True, meta="r1")
    out = buf.feed("c", "bbb ccc ddd", now=0.0, more=True, meta="r2")
    assert texts(out) == ["aaa bbb "]
    assert out[0].meta == "r2"
    buf2 = make(max_chunk_chars=10)
    buf2.feed("c", "aaa bbbbb ", now=0.0, more=True, meta="r1")
    out2 = buf2.feed("c", "cc", now=0.0, more=True, meta="r2")
    assert texts(out2) == ["aaa bbbbb "]
    assert out2[0].meta == "r1"


# ------------------------------------------------------ contexts, cancel, close


def test_contexts_are_independent():
    buf = make()
    buf.feed("a", "alpha", now=0.0, more=True)
    buf.feed("b", "beta", now=0.0, more=True)
    assert texts(buf.feed("a", "", now=0.0, more=False)) == ["alpha"]
    assert buf.buffered("b") == "beta"


def test_cancel_drops_buffer_but_context_stays_open():
    buf = make()
    buf.feed("c", "stale words", now=0.0, more=True)
    assert buf.cancel("c") == "stale words"
    assert buf.buffered("c") == ""
    assert buf.is_open("c")
    assert buf.next_deadline() is None
    assert texts(buf.feed("c", "fresh", now=1.0, more=False)) == ["fresh"]


def test_cancel_unknown_context_is_harmless():
    buf = make()
    assert buf.cancel("nope") == ""
    assert buf.contexts == []


def test_close_drops_buffer_and_ends_context():
    buf = make()
    buf.feed("c", "never spoken", now=0.0, more=True)
    assert buf.close("c") == "never spoken"
    assert not buf.is_open("c")
    assert buf.poll(100.0) == []


def test_close_all_forgets_everything():
    buf = make()
    buf.feed("a", "x", now=0.0, more=True)
    buf.feed("b", "y", now=0.0, more=True)
    buf.close_all()
    assert buf.contexts == []
    assert buf.next_deadline() is None
    assert not buf.is_open("a")


def test_context_opens_on_first_fragment():
    buf = make()
    assert not buf.is_open("c")
    buf.feed("c", "x", now=0.0, more=True)
    assert buf.is_open("c")


# ------------------------------------------------------------------ legacy


def test_legacy_buffers_until_flush():
    buf = make()
    assert buf.feed_legacy("Hello.", now=0.0, flush=False, more=True) == []
    assert buf.next_deadline() is None  # no flush delay: no timer
    out = buf.feed_legacy(" Bye", now=0.0, flush=True, more=True, meta="r")
    assert texts(out) == ["Hello. Bye"]
    assert out[0].context_id is None
    assert out[0].meta == "r"


def test_legacy_continue_false_releases():
    buf = make()
    buf.feed_legacy("part one", now=0.0, flush=False, more=True)
    assert texts(buf.feed_legacy(" two", now=0.0, flush=False, more=False)) == ["part one two"]


def test_legacy_flush_delay_releases_on_poll():
    buf = make()
    buf.feed_legacy("held", now=1.0, flush=False, more=True, flush_delay_ms=200)
    assert buf.next_deadline() == pytest.approx(1.2)
    assert texts(buf.poll(1.2)) == ["held"]


def test_legacy_applies_size_rule():
    buf = make(max_chunk_chars=10)
    out = buf.feed_legacy("aaa bbb ccc ddd", now=0.0, flush=False, more=True)
    assert texts(out) == ["aaa bbb "]


def test_legacy_is_separate_from_contexts():
    buf = make()
    buf.feed_legacy("legacy", now=0.0, flush=False, more=True)
    buf.feed("c", "ctx", now=0.0, more=True)
    assert texts(buf.feed("c", "", now=0.0, more=False)) == ["ctx"]
    assert buf.buffered(None) == "legacy"


def test_invalid_max_chunk_chars_rejected():
    with pytest.raises(ValueError):
        ContinuationBuffer(max_chunk_chars=0)
