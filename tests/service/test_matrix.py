"""The conversation matrix: every pair of server readings, judged from the audio.

Smallest's documents leave many server behaviours open (see
``/work/shared/waves-protocol.md``); the local server offers each reading as a
switch. Trying every combination would take hours, so the matrix is a pairwise
covering array: every pair of values of any two switches meets in at least one
row, which is where most interaction bugs live. Each row runs one whole
conversation in both of Pipecat's text aggregation modes:

1. a multi-sentence reply holding one sentence longer than the server's
   120-character segment limit, with the LLM stalling mid-sentence for longer
   than the 80 ms delay-release reading, and a short reply right behind it;
2. three replies queued at once;
3. a long reply the caller talks over while it plays;
4. a reply the caller talks over while the LLM is still streaming it;
5. two replies right behind each other after the barge-ins.

The judge (:func:`tests.service.conversation.judge`) reads the tone audio back
per reply: whole replies word for word, interrupted ones as a prefix with no
sample after the barge-in, no ``ErrorFrame`` unless injected, contexts in the
order written, and bounded dead air between back-to-back replies.

Smaller tests run the faults (a dropped connection, a server error, an idle
close, a concurrency limit of one) over two strict rows in both modes, and one
row with the old friendly server defaults checks the harness itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pipecat.frames.frames import ErrorFrame, InterruptionFrame, TTSAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.tts_service import TextAggregationMode

from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.server.tones import Tone, decode_tones, transcribe_tones, word_pitch
from tests.service.conversation import (
    Conversation,
    Result,
    Stamped,
    behaviour_kwargs,
    heard_prefix,
    heard_with_one_restart,
    judge,
    pairwise,
    run_conversation,
    uncovered_pairs,
    vocabulary,
)
from tests.service.helpers import API_KEY, RATE, make_service

# ------------------------------------------------------------------ the matrix

#: Audio at ten times real time (100 ms chunks every 10 ms) after a 60 ms
#: first-byte delay: replies stream quickly, yet a barge-in still lands mid-reply
#: (the reply talked over lasts a second; the barge-in comes 0.25 s into it).
TIMING = {"ttfb_ms": 60, "chunk_ms": 100, "chunk_interval_ms": 10}

#: The open readings, each a set of ServerBehaviour switches. The first value
#: of each dimension is the friendlier reading. Segmentation "default" leaves
#: the server's own rules (a 120-character segment limit).
DIMENSIONS: dict[str, dict[str, dict[str, Any]]] = {
    "segmentation": {
        "default": {},
        "split": {"max_chunk_chars": 30},
        "merged": {"min_sentence_chars": 200},
        "delay": {"buffer_delay_override_ms": 80},
    },
    "completes": {
        # Our client asks for complete_backoff_ms 0: the delayed readings
        # ignore or refuse that, so their completes really are held back.
        "immediate": {
            "complete_delay_ms": 0,
            "coalesce_complete": False,
            "complete_backoff_with_context": "apply",
        },
        "delayed": {
            "complete_delay_ms": 1500,
            "coalesce_complete": False,
            "complete_backoff_with_context": "ignore",
        },
        "coalesced": {
            "complete_delay_ms": 1500,
            "coalesce_complete": True,
            "complete_backoff_with_context": "refuse",
        },
    },
    "echo": {
        "echo": {"echo_external_request_id": True},
        "no-echo": {"echo_external_request_id": False},
    },
    "cancel": {
        "cancel-stops": {"cancel_stops_inflight": True},
        "cancel-buffered": {"cancel_stops_inflight": False},
    },
    "timestamps": {
        "words": {"word_timestamp_voices": None},
        "no-words": {"word_timestamp_voices": frozenset()},
    },
    "reference": {
        "segment-times": {"word_time_reference": "segment"},
        "context-times": {"word_time_reference": "context"},
    },
    "ping": {"ping": {"ping_supported": True}, "no-ping": {"ping_supported": False}},
}

_NAMES = list(DIMENSIONS)
_VALUES = [list(values) for values in DIMENSIONS.values()]
_LEVELS = [len(values) for values in _VALUES]

#: The covering array: 12 rows, the least possible (segmentation x completes
#: alone has 4 x 3 pairs), and every pair of any two dimensions is in some row
#: (``test_matrix_covers_every_pair``). As generated:
#:
#: row  segmentation completes  echo    cancel          timestamps reference     ping
#: 0    default      immediate  echo    cancel-stops    words      segment-times ping
#: 1    default      delayed    no-echo cancel-buffered no-words   context-times no-ping
#: 2    default      coalesced  echo    cancel-buffered words      context-times ping
#: 3    split        immediate  no-echo cancel-buffered no-words   segment-times no-ping
#: 4    split        delayed    echo    cancel-stops    words      context-times no-ping
#: 5    split        coalesced  no-echo cancel-stops    no-words   segment-times ping
#: 6    merged       immediate  echo    cancel-stops    no-words   context-times ping
#: 7    merged       delayed    no-echo cancel-buffered words      segment-times no-ping
#: 8    merged       coalesced  echo    cancel-stops    words      segment-times no-ping
#: 9    delay        immediate  no-echo cancel-buffered no-words   context-times no-ping
#: 10   delay        delayed    echo    cancel-stops    words      segment-times ping
#: 11   delay        coalesced  no-echo cancel-buffered no-words   context-times no-ping
MATRIX: list[dict[str, str]] = [
    {name: _VALUES[i][v] for i, (name, v) in enumerate(zip(_NAMES, row, strict=True))}
    for row in pairwise(_LEVELS)
]

#: The script moves on once no audio has come for this long: several chunk
#: intervals (10 ms) plus a segment's first byte (60 ms). Moving on early is
#: harmless (the next reply just queues sooner); it only paces the script.
QUIET_S = 0.15

MODES = {"sentence": TextAggregationMode.SENTENCE, "token": TextAggregationMode.TOKEN}

#: Dead air allowed between reply N's last audio and reply N+1's first, when
#: N+1 was written before N finished (measured at the transport side of the
#: service, so client buffering counts). With word timestamps the client can
#: tell the moment N's last word has arrived, so what is left is the server's
#: 60 ms first byte for N+1, a 10 ms chunk interval, a quarter second for the
#: client to be sure N is over, and scheduling slack on a loaded two-core
#: machine: 0.6 s.
MAX_GAP_WITH_WORDS_S = 0.6
#: Without word timestamps nothing but the server's ``complete`` for N's last
#: segment proves N is over (segments are the server's, so their number is
#: unknown), and the delayed rows send it 1.5 s after the audio; add the same
#: quarter second and slack, with room for a reconnect: 2.5 s.
MAX_GAP_WITHOUT_WORDS_S = 2.5

# ------------------------------------------------------------------- the words

# Words differ across replies (and no two words of one length have pitches
# that the tone reader could confuse, see test_every_reply_reads_back), so
# audio filed under the wrong reply reads as the wrong words.
MENU = (
    "Tonight our chef prepares grilled salmon with fennel, beetroot salad, creamy mushroom "
    "risotto, braised lamb and chocolate tart. May I reserve?"
)
PARKING = "Parking is free after six."
TERRACE = "Our terrace seats twelve diners. Heaters run till midnight."
CHILDREN = "Children get crayons and puzzles. Highchairs wait near the door."
VEGANS = "Vegans love our lentil curry daily. Gluten free pasta costs no extra."
WINES = (
    "Let me describe each wine bottle we stock. Malbec from Mendoza arrives monthly. "
    "Grenache pairs beautifully with pizza sauces. Riesling balances spicy Thai flavors. "
    "Champagne celebrates birthdays splendidly."
)
CHECKING = "Certainly, one moment. Checking availability across Friday nights today."
SORRY = "Sorry, please continue."
EVENING = "Which evening suits you?"
BOOKED = "Table booked."
GO_ON = "Go on."

#: The long sentence of MENU, which the server's default rules must split.
LONG_SENTENCE = MENU.split(". ")[0]


def matrix_conversation() -> Conversation:
    """The matrix's conversation script (same words and timing in both modes)."""
    c = Conversation(token_gap_s=0.02)
    # The LLM stalls 150 ms mid-sentence: longer than the 80 ms delay-release
    # reading, so that row really releases half a sentence.
    c.say("menu", MENU, pause_after="salad,")
    c.say("parking", PARKING)  # right behind
    c.wait_heard(2, then_quiet_s=QUIET_S, timeout_s=10, label="menu and parking played")
    c.say("terrace", TERRACE)  # three queued at once
    c.say("children", CHILDREN)
    c.say("vegans", VEGANS)
    c.wait_heard(5, then_quiet_s=QUIET_S, timeout_s=14, label="the three queued replies played")
    c.say("wines", WINES)
    c.wait_started(6, timeout_s=6, label="wines started playing")
    c.sleep(0.25)
    c.barge_in()  # mid-audio
    c.say("checking", CHECKING, stop_after="availability")
    c.sleep(0.25)
    c.barge_in()  # while the LLM streams
    c.sleep(0.1)
    c.say("sorry", SORRY)
    c.say("evening", EVENING)  # right behind
    c.wait_heard(
        2, since_barge_in=True, then_quiet_s=QUIET_S, timeout_s=8, label="sorry and evening played"
    )
    return c


def make_server(**switches: Any) -> LocalWavesServer:
    """A tone server with the matrix timing and ``switches``."""
    behaviour = ServerBehaviour(**{**TIMING, **switches})
    return LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    )


def gap_bound(switches: dict[str, Any]) -> float:
    """The dead-air bound for a server with ``switches``."""
    no_words = switches.get("word_timestamp_voices") == frozenset()
    return MAX_GAP_WITHOUT_WORDS_S if no_words else MAX_GAP_WITH_WORDS_S


async def converse(
    switches: dict[str, Any], mode: str, conversation: Conversation, **service_kwargs: Any
) -> tuple[Result, LocalWavesServer]:
    """Run ``conversation`` against a server with ``switches``."""
    async with make_server(**switches) as server:
        service = make_service(server, text_aggregation_mode=MODES[mode], **service_kwargs)
        result = await run_conversation(service, conversation)
    return result, server


def _row_ids() -> list[tuple[str, dict[str, str], str]]:
    return [(f"row{i}-{mode}", row, mode) for i, row in enumerate(MATRIX) for mode in MODES]


@pytest.mark.parametrize(
    ("row", "mode"), [(r, m) for _, r, m in _row_ids()], ids=[i for i, _, _ in _row_ids()]
)
async def test_conversation(row: dict[str, str], mode: str):
    switches = behaviour_kwargs(row, DIMENSIONS)
    result, _ = await converse(switches, mode, matrix_conversation())
    verdict = judge(result, max_gap_s=gap_bound(switches))
    assert not verdict.problems, f"{row}\n{verdict.report()}"
    assert verdict.gaps, "no back-to-back replies were measured for dead air"


# --------------------------------------------------------- the harness itself

#: The server defaults the plugin was first built against: echo, cancels that
#: stop the audio, immediate completes, 250-character segments, timestamps.
FRIENDLY = {
    "echo_external_request_id": True,
    "cancel_stops_inflight": True,
    "complete_delay_ms": 0,
    "coalesce_complete": False,
    "max_chunk_chars": 250,
    "word_timestamp_voices": None,
    "word_time_reference": "segment",
    "ping_supported": True,
}


async def test_conversation_with_the_friendly_server():
    """The matrix conversation against the friendliest reading (validates the harness).

    Sentence mode, which the plugin was first built for: a failure here is a
    harness bug sooner than a client bug.
    """
    result, _ = await converse(FRIENDLY, "sentence", matrix_conversation())
    verdict = judge(result, max_gap_s=gap_bound(FRIENDLY))
    assert not verdict.problems, verdict.report()
    # The script reached every situation it means to test.
    assert len(verdict.gaps) >= 3, "back-to-back replies were measured"
    assert verdict.heard["wines"], "the barge-in landed while wines was playing"
    assert len(verdict.heard["wines"]) < len(WINES.split())


def test_matrix_covers_every_pair():
    rows = pairwise(_LEVELS)
    assert uncovered_pairs(rows, _LEVELS) == []
    assert len(rows) == _LEVELS[0] * _LEVELS[1] == 12, "no more rows than the largest pair needs"
    # The coverage check itself catches a missing pair.
    assert uncovered_pairs(rows[1:], _LEVELS) != []
    assert len({tuple(sorted(r.items())) for r in MATRIX}) == len(MATRIX)


def test_every_reply_reads_back_exactly():
    """Each reply's own tone audio, read against every word of its script, is itself."""
    backend = ToneBackend()
    assert len(LONG_SENTENCE) > 120
    scripts = [
        matrix_conversation(),
        drop_conversation(1),
        error_conversation(),
        idle_conversation(lambda: True, 1.0),
        busy_conversation(),
    ]
    for convo in scripts:
        vocab = vocabulary(convo.replies)
        for reply in convo.replies:
            pcm = backend.synthesize(reply.text, voice_id="avery", speed=1.0, sample_rate=RATE)
            assert transcribe_tones(pcm.pcm, RATE, vocab) == reply.words, reply.name


def test_judge_rules_can_fail():
    """The reading rules reject what a listener would notice."""
    words = WINES.split()
    pcm = ToneBackend().synthesize(WINES, voice_id="avery", speed=1.0, sample_rate=RATE).pcm
    tones = decode_tones(pcm, RATE)
    assert heard_prefix(words[:3], tones[:3], words)
    assert not heard_prefix(words[1:4], tones[1:4], words), "a prefix starts at the start"
    assert not heard_prefix([*words[:2], words[3]], [*tones[:2], tones[3]], words), "skipped"
    # Half of the fourth word ("each") is a cut; half of another word, or
    # something longer than "each", is not.
    assert heard_prefix([*words[:3], "<cut>"], [*tones[:3], Tone(0.1, word_pitch("each"))], words)
    assert not heard_prefix(
        [*words[:3], "<cut>"], [*tones[:3], Tone(0.1, word_pitch("wine"))], words
    )
    assert not heard_prefix(
        [*words[:3], "<cut>"], [*tones[:3], Tone(0.3, word_pitch("each"))], words
    )
    assert heard_with_one_restart(words[:5] + words[4:], words, 1)
    assert not heard_with_one_restart(words[:5] + words[2:], words, 1)
    assert heard_with_one_restart(words[:5] + words[2:], words, None)
    assert not heard_with_one_restart(words[:5] + words[6:], words, None), "a word lost"


def test_judge_catches_stale_audio_and_dead_air():
    """A fabricated run: audio after a barge-in and a long silence are both reported."""
    convo = Conversation(token_gap_s=0)
    first = convo.say("first", PARKING)
    convo.say("second", SORRY)
    convo.say("third", EVENING)
    convo.say("fourth", WINES)
    convo.barge_in()
    backend = ToneBackend()

    def audio(text: str, ctx: str, t: float) -> Stamped:
        pcm = backend.synthesize(text, voice_id="avery", speed=1.0, sample_rate=RATE).pcm
        frame = TTSAudioRawFrame(audio=pcm, sample_rate=RATE, num_channels=1)
        frame.context_id = ctx
        return Stamped(t, frame, FrameDirection.DOWNSTREAM)

    # Every reply's text entered at t=0, before any audio ended.
    convo.inlet.entries += [
        Stamped(0.0, r.end, FrameDirection.DOWNSTREAM) for r in convo.replies if r.end
    ]
    down = [
        audio(PARKING, "c1", 1.0),
        audio(SORRY, "c2", 1.2),  # 0.2 s of dead air: fine
        audio(EVENING, "c3", 4.0),  # 2.8 s: too long
        Stamped(4.1, InterruptionFrame(), FrameDirection.DOWNSTREAM),
        audio(EVENING, "c3", 4.2),  # after the barge-in
    ]
    verdict = judge(Result(convo, down, []), max_gap_s=MAX_GAP_WITH_WORDS_S)
    assert [round(g.seconds, 1) for g in verdict.gaps] == [0.2, 2.8]
    assert any("dead air between second and third" in p for p in verdict.problems)
    assert any("earlier context" in p for p in verdict.problems)
    assert verdict.heard[first.name] == PARKING.split()
    clean = judge(Result(convo, down[:2] + down[3:4], []), max_gap_s=MAX_GAP_WITH_WORDS_S)
    assert clean.problems == ["third: nothing heard"], clean.report()
    clean = judge(Result(convo, down[:4], []), max_gap_s=3.0)
    assert clean.problems == [], clean.report()


# ------------------------------------------------------------------- the faults

#: Two strict rows for the fault tests: the server's documented-only defaults,
#: and the hardest reading of every dimension at once.
STRICT_ROWS: dict[str, dict[str, str]] = {
    "strict": {
        "segmentation": "default",
        "completes": "immediate",
        "echo": "no-echo",
        "cancel": "cancel-buffered",
        "timestamps": "words",
        "reference": "segment-times",
        "ping": "ping",
    },
    "hardest": {
        "segmentation": "split",
        "completes": "coalesced",
        "echo": "no-echo",
        "cancel": "cancel-buffered",
        "timestamps": "no-words",
        "reference": "context-times",
        "ping": "no-ping",
    },
}
_STRICT_CASES = [(name, mode) for name in STRICT_ROWS for mode in MODES]
strict_rows = pytest.mark.parametrize(
    ("row_name", "mode"), _STRICT_CASES, ids=[f"{n}-{m}" for n, m in _STRICT_CASES]
)


def drop_conversation(max_repeat: int | None) -> Conversation:
    """A long reply the connection drops under, and a short one right behind."""
    c = Conversation(token_gap_s=0.02)
    c.say("menu", MENU, pause_after="salad,", outcome="dropped", max_repeat=max_repeat)
    c.say("parking", PARKING)
    c.wait_heard(2, then_quiet_s=QUIET_S, timeout_s=12, label="both replies played")
    return c


@strict_rows
async def test_dropped_connection_mid_reply(row_name: str, mode: str):
    switches = behaviour_kwargs(STRICT_ROWS[row_name], DIMENSIONS)
    # Chunk 30 is three seconds into the menu, inside its long sentence.
    switches["drop_after_chunks"] = 30
    # With word timestamps the client knows every word heard: at most the word
    # being spoken at the drop may come again. Without them it cannot tell how
    # far into the unfinished segment the listener got, so that stretch may.
    max_repeat = None if gap_bound(switches) == MAX_GAP_WITHOUT_WORDS_S else 1
    result, server = await converse(switches, mode, drop_conversation(max_repeat))
    verdict = judge(result, max_gap_s=None)
    assert not verdict.problems, verdict.report()
    chunks = {}
    for segment in server.segments:
        chunks[segment.connection_id] = chunks.get(segment.connection_id, 0) + segment.chunks_sent
    assert max(chunks.values()) >= 30, "the drop happened"


def error_conversation() -> Conversation:
    """A reply the server fails, then one that must be spoken whole."""
    c = Conversation(token_gap_s=0.02)
    c.say("terrace", TERRACE, outcome="failed")
    c.wait(
        lambda: any(isinstance(e.frame, ErrorFrame) for e in c.inlet.entries),
        timeout_s=8,
        label="terrace failed",
    )
    c.say("parking", PARKING)
    c.wait_heard(1, then_quiet_s=QUIET_S, timeout_s=8, label="parking played")
    return c


@strict_rows
async def test_server_error_fails_one_reply_only(row_name: str, mode: str):
    switches = behaviour_kwargs(STRICT_ROWS[row_name], DIMENSIONS)
    # The second text message fails: the second sentence (sentence mode) or
    # the second token (token mode) of the first reply.
    switches["error_on_request"] = 2
    result, _ = await converse(switches, mode, error_conversation())
    verdict = judge(result, max_gap_s=None, expected_errors=1)
    assert not verdict.problems, verdict.report()
    assert verdict.heard["parking"] == PARKING.split()


def idle_conversation(closed: Callable[[], bool], idle_s: float) -> Conversation:
    """A short reply, a lull until ``closed()``, and another short reply."""
    c = Conversation(token_gap_s=0.02)
    c.say("booked", BOOKED)
    # Pings may keep the socket open for a while before being refused.
    c.wait(closed, timeout_s=3 * idle_s + 2, label="the server closed the idle socket")
    c.say("go-on", GO_ON)
    c.wait_heard(2, then_quiet_s=QUIET_S, timeout_s=6, label="go-on played")
    return c


@strict_rows
async def test_idle_close_between_replies(row_name: str, mode: str):
    """The server closes an idle socket between replies; the next reply is still spoken.

    The idle timeout is 0.5 s past the longest the server may owe a
    ``complete``: a real server's 60 s idle clock dwarfs its 4 s complete
    backoff, and a timeout that fired while a reply's ``complete`` was still
    owed would test a server that cannot exist. Both replies are short
    (0.15 s of audio at five times real time), so their audio is over well
    before the idle clock runs out. Pings are refused, so nothing the client
    sends can keep the socket open.
    """
    switches = behaviour_kwargs(STRICT_ROWS[row_name], DIMENSIONS)
    idle_s = 0.5 + switches["complete_delay_ms"] / 1000
    switches.update(ping_supported=False, idle_timeout_s=idle_s)
    holder: list[LocalWavesServer] = []

    def closed_after_booking() -> bool:
        # The socket that carried the first reply (as one fragment or as tokens).
        return any(
            c.closed and any("booked" in str(m.get("text", "")) for m in c.received)
            for c in holder[0].connections
        )

    c = idle_conversation(closed_after_booking, idle_s)
    async with make_server(**switches) as server:
        holder.append(server)
        # The local server honours a fractional ?timeout= (down to 50 ms).
        service = make_service(server, text_aggregation_mode=MODES[mode], idle_timeout_s=idle_s)
        result = await run_conversation(service, c)
    verdict = judge(result, max_gap_s=None)
    assert not verdict.problems, verdict.report()


def busy_conversation() -> Conversation:
    """Back-to-back replies and a barge-in when only one reply may synthesize at once."""
    c = Conversation(token_gap_s=0.02)
    c.say("terrace", TERRACE)
    c.say("parking", PARKING)  # right behind
    c.wait_heard(2, then_quiet_s=QUIET_S, timeout_s=12, label="terrace and parking played")
    c.say("wines", WINES)
    c.wait_started(3, timeout_s=8, label="wines started playing")
    c.sleep(0.3)
    c.barge_in()
    c.say("sorry", SORRY)
    c.say("evening", EVENING)  # right behind
    c.wait_heard(
        2, since_barge_in=True, then_quiet_s=QUIET_S, timeout_s=12, label="sorry and evening played"
    )
    return c


@strict_rows
async def test_concurrency_limit_of_one(row_name: str, mode: str):
    switches = behaviour_kwargs(STRICT_ROWS[row_name], DIMENSIONS)
    switches["max_active_contexts"] = 1
    result, _ = await converse(switches, mode, busy_conversation())
    # Refusals a retry fixes are not errors; the one slot frees when the
    # previous reply's audio ends, which is when the dead-air clock starts.
    verdict = judge(result, max_gap_s=gap_bound(switches))
    assert not verdict.problems, verdict.report()
