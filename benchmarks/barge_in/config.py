"""What the barge-in benchmark speaks and against which servers: its settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipecat_waves.server import ServerBehaviour

#: The reply the user talks over: long enough to be mid-stream at the barge-in.
INTERRUPTED_REPLY = (
    "Let me tell you about the menu tonight in some detail. "
    "We have seven kinds of fresh pasta made in house. "
    "There is also a grilled fish special with lemon and herbs. "
    "Every dessert is baked in our kitchen each morning. "
    "Would you like me to read out the whole wine list as well?"
)
#: The reply after the barge-in. One short sentence with no clause in it, so
#: both services send it whole, the server speaks it as one segment, and its
#: exact audio is known in advance (see ``expected_audio``). (Ours would send
#: the first clause of "Of course, here are ..." on its own: its audio would
#: then hold one more segment start, and the byte match would miss it.)
NEXT_REPLY = "Here are the desserts we bake."

#: Back-to-back turns: reply B is queued right behind reply A.
REPLY_A = "Your table is booked for eight tonight. We look forward to seeing you."
REPLY_B = "Is there anything else I can help with?"

#: Replies spoken back to back for the CPU measurement.
CPU_REPLIES = (
    "Good evening and welcome back. Tonight the chef recommends the risotto.",
    "The risotto comes with wild mushrooms. It takes about twenty minutes.",
    "We also have a vegetarian lasagne. It is baked with spinach and ricotta.",
    "For dessert there is a lemon tart. Coffee is served until midnight.",
)

#: What every concurrent session speaks (several sentences, about 5 s of audio).
LOAD_REPLY = "Thanks for calling today. Our kitchen opens at five. We close at eleven."
LOAD_REPLY_QUICK = "Thanks for calling today. Our kitchen opens at five."

#: The two-reply exchange whose words are counted under each server
#: segmentation (metric 8). Reply A is 144 characters (under the 200 that
#: merges sentences, so it becomes one segment there); every sentence is over
#: the 30 characters that split sentences. No two words share a tone.
WORDS_REPLY_A = (
    "Your table for four is booked at eight tonight. "
    "We saved the quiet corner by the window for your party. "
    "Parking in the garage is free after six."
)
WORDS_REPLY_B = (
    "Is there anything else I can help with today? "
    "I can text the directions and the menu to your phone."
)

#: What each service says right after its idle period (metric 9).
AFTER_IDLE_REPLY = "Welcome back. The kitchen is still open for another hour."


# ----------------------------------------------------------------- config


@dataclass(frozen=True)
class Segmentation:
    """One way the server may cut a context's text into segments (metric 8).

    Attributes:
        label: The sub-row's name.
        switches: The switches that make the server cut that way (laid over
            ``BenchConfig.words_server``).
        token_pause: The LLM token stream pauses in the middle of every sentence.
    """

    label: str
    switches: ServerBehaviour
    token_pause: bool = False


SEGMENTATIONS: tuple[Segmentation, ...] = (
    Segmentation("default segments (max 120 chars)", ServerBehaviour()),
    Segmentation("split sentences (max_chunk_chars=30)", ServerBehaviour(max_chunk_chars=30)),
    Segmentation(
        "merged sentences (min_sentence_chars=200)", ServerBehaviour(min_sentence_chars=200)
    ),
    Segmentation(
        "delay-released fragments (80 ms, tokens pause mid-sentence)",
        ServerBehaviour(buffer_delay_override_ms=80),
        token_pause=True,
    ),
)

_ECHO_SERVER_TINY = ServerBehaviour(
    handshake_delay_ms=50,
    ttfb_ms=50,
    chunk_ms=150,
    chunk_interval_ms=150,
    echo_external_request_id=True,
    cancel_stops_inflight=False,
)


@dataclass(frozen=True)
class HeldCompletes:
    """A metric 4 sub-row: a server that holds back ``complete``.

    Attributes:
        key: The sub-row's number.
        label: The sub-row's name.
        switches: The switches that hold ``complete`` back (laid over
            ``BenchConfig.latency_server``).
    """

    key: str
    label: str
    switches: ServerBehaviour


#: The documented ``complete_backoff_ms`` default (4 s) applies to every one;
#: our client asks for 0, which these servers do not grant.
HELD_COMPLETES = (
    HeldCompletes(
        "4b",
        "server ignores complete_backoff_ms (every complete 4 s late)",
        ServerBehaviour(complete_backoff_with_context="ignore"),
    ),
    HeldCompletes(
        "4c",
        "server refuses complete_backoff_ms beside a context_id",
        ServerBehaviour(complete_backoff_with_context="refuse"),
    ),
    HeldCompletes(
        "4d",
        "account concurrency 1, every complete 4 s late",
        ServerBehaviour(complete_backoff_with_context="ignore", max_active_contexts=1),
    ),
)


@dataclass
class BenchConfig:
    """Everything a benchmark run can vary.

    Attributes:
        sample_rate: Output rate asked of both services.
        runs: Repetitions of each latency scenario (medians are reported).
        cpu_replies: How many of ``CPU_REPLIES`` one CPU run speaks.
        load_steps: Session counts tried for the concurrency measurement.
        load_reply: Text every concurrent session speaks.
        load_trials: Trials per N and service (all must keep up).
        load_stagger_s: The sessions' replies start spread over this window.
        load_budget_s: Stop stepping up sessions once this much time went by.
        keep_up_slack_s: How far behind real time a session may fall.
        latency_server: Server switches for scenarios 1 to 5.
        load_server: Server switches for the concurrency scenario.
        server_in_process: Run the server in this process (quick to start;
            its CPU is then counted too) instead of a child process.
        warmup_s: Wait after a pipeline starts, so both services have their
            socket open before the first word (ours opens it in the
            background, the other one while starting).
        idle_s: How long the CPU run first measures an idle session.
        echo_server: Server switches for metric 7: request ids echoed,
            ``cancel_request`` leaves the segment in flight streaming, audio
            at real time.
        words_server: Server switches shared by every segmentation of metric 8.
        segmentations: Metric 8's sub-rows: a label and the switches that
            give the server that segmentation.
        token_pause_s: Pause in the middle of every sentence of the LLM token
            stream, for the segmentations that ask for one.
        words_concurrently: Run metric 8's segmentations at once rather than
            one after the other (only words are counted, not time).
        words_quiet_s: A two-reply exchange is over once no audio came for
            this long (longer than Pipecat's 3 s end-of-turn wait).
        held_completes: Metric 4's sub-rows: servers that hold ``complete``
            back for the documented 4 s whatever the client asks (each on
            top of ``latency_server``).
        idle_timeout_s: Server idle timeout for metric 9 (both services face it).
        idle_periods: How many idle timeouts metric 9 waits for.
        idle_server: Server switches for metric 9 (besides the idle timeout
            and ``ping_supported``).
    """

    sample_rate: int = 24000
    runs: int = 5
    cpu_replies: int = 4
    load_steps: tuple[int, ...] = (1, 80, 100, 120, 140, 160, 200)
    load_trials: int = 2
    load_reply: str = LOAD_REPLY
    load_stagger_s: float = 1.0
    load_budget_s: float = 170.0
    keep_up_slack_s: float = 0.2
    latency_server: ServerBehaviour = field(
        default_factory=lambda: ServerBehaviour(
            handshake_delay_ms=100,
            ttfb_ms=150,
            chunk_ms=150,
            # 150 ms of audio every 30 ms: five times faster than real time.
            chunk_interval_ms=30,
        )
    )
    load_server: ServerBehaviour = field(
        default_factory=lambda: ServerBehaviour(
            handshake_delay_ms=100,
            # The server synthesizes a connection's segments one after another
            # and sleeps a fixed interval between chunks, so a per-segment TTFB
            # would put the *server* behind real time at every sentence; this
            # scenario measures the client, so the server adds none.
            ttfb_ms=0,
            chunk_ms=150,
            chunk_interval_ms=150,  # exactly real time
        )
    )
    server_in_process: bool = False
    warmup_s: float = 0.4
    idle_s: float = 1.5
    echo_server: ServerBehaviour = field(
        default_factory=lambda: ServerBehaviour(
            handshake_delay_ms=100,
            ttfb_ms=150,
            chunk_ms=150,
            chunk_interval_ms=150,  # real time: the segment is still in flight
            echo_external_request_id=True,
            cancel_stops_inflight=False,
        )
    )
    words_server: ServerBehaviour = field(
        default_factory=lambda: ServerBehaviour(
            handshake_delay_ms=100,
            ttfb_ms=150,
            chunk_ms=150,
            chunk_interval_ms=30,
        )
    )
    segmentations: tuple[Segmentation, ...] = SEGMENTATIONS
    token_pause_s: float = 0.25
    words_concurrently: bool = False
    words_quiet_s: float = 5.0
    held_completes: tuple[HeldCompletes, ...] = HELD_COMPLETES
    idle_timeout_s: int = 3
    idle_periods: int = 20
    idle_server: ServerBehaviour = field(
        default_factory=lambda: ServerBehaviour(
            handshake_delay_ms=100,
            ttfb_ms=150,
            chunk_ms=150,
            chunk_interval_ms=30,
        )
    )

    @classmethod
    def quick(cls) -> BenchConfig:
        """Fewer runs and sessions: about a minute."""
        return cls(
            runs=2,
            cpu_replies=2,
            load_steps=(1, 40),
            load_trials=1,
            load_reply=LOAD_REPLY_QUICK,
            load_budget_s=20.0,
            words_concurrently=True,
            idle_periods=4,
        )

    @classmethod
    def tiny(cls) -> BenchConfig:
        """The smallest run that still exercises every scenario (for tests)."""
        fast = ServerBehaviour(
            handshake_delay_ms=100, ttfb_ms=50, chunk_ms=150, chunk_interval_ms=20
        )
        return cls(
            runs=1,
            cpu_replies=1,
            load_steps=(1, 2),
            load_trials=1,
            load_reply="Thanks for calling today.",
            load_stagger_s=0.1,
            load_budget_s=15.0,
            latency_server=fast,
            load_server=ServerBehaviour(
                handshake_delay_ms=50, ttfb_ms=0, chunk_ms=150, chunk_interval_ms=150
            ),
            server_in_process=True,
            warmup_s=0.3,
            idle_s=0.2,
            echo_server=_ECHO_SERVER_TINY,
            words_concurrently=True,
            held_completes=HELD_COMPLETES[1:2],
            idle_periods=1,
        )
