"""Scripted conversations through WavesTTSService, judged from what a listener hears.

A :class:`Conversation` is a script of LLM replies, barge-ins, pauses and
*waits* (pace the script on what has been heard so far, the way a caller
reacts to the bot). :func:`run_conversation` plays it through
``[inlet recorder, service, outlet recorder]`` the way Pipecat's ``run_test``
does, but cancels a pipeline that never ends instead of hanging; the
recorders stamp every frame with ``time.perf_counter()`` so dead air between
replies can be measured. :func:`judge` then reads the tone audio back, reply by
reply, and lists every way the result differs from what the listener should
have heard. It never looks at the service's internals, only at frames.

The module also builds pairwise (all-pairs) covering arrays, so a matrix of
server behaviours covers every pair of switch values in a dozen rows instead
of the full product.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.tests.utils import SleepFrame
from pipecat.workers.runner import WorkerRunner

from pipecat_waves.server.tones import (
    SECONDS_PER_CHAR,
    Tone,
    decode_tones,
    transcribe_tones,
    word_pitch,
    words_of,
)
from tests.service.helpers import RATE
from tests.support.recorder import Recorder, Stamped

# --------------------------------------------------------------------- pairwise


def pairwise(levels: Sequence[int]) -> list[tuple[int, ...]]:
    """A covering array of strength 2 for parameters with ``levels`` values each.

    IPOG (Lei and Tai): start from every combination of the first two
    parameters, then add the others one at a time, first giving each existing
    row the value that covers most still-uncovered pairs (horizontal growth),
    then adding rows for the pairs left (vertical growth). Put the parameter
    with most values first: the first two set the floor on the row count.

    Args:
        levels: Number of values of each parameter (at least two parameters).

    Returns:
        Rows of value indices, one entry per parameter.
    """
    if len(levels) < 2:
        raise ValueError("pairwise needs at least two parameters")
    rows: list[list[int | None]] = [[a, b] for a in range(levels[0]) for b in range(levels[1])]
    for k in range(2, len(levels)):
        uncovered = {
            (j, vj, vk) for j in range(k) for vj in range(levels[j]) for vk in range(levels[k])
        }
        for n, row in enumerate(rows):
            # Most new pairs wins; ties go to the value the row number points
            # at, so a new parameter's values alternate instead of piling onto
            # the first one.
            scores = {
                v: (
                    sum((j, row[j], v) in uncovered for j in range(k) if row[j] is not None),
                    -((v - n) % levels[k]),
                )
                for v in range(levels[k])
            }
            best = max(scores, key=scores.__getitem__)
            row.append(best)
            uncovered -= {(j, row[j], best) for j in range(k)}
        extra: list[list[int | None]] = []
        for j, vj, vk in sorted(uncovered):
            for row in extra:
                if row[k] == vk and row[j] is None:
                    row[j] = vj
                    break
            else:
                row = [None] * (k + 1)
                row[j], row[k] = vj, vk
                extra.append(row)
        rows += extra
    # A value left open by vertical growth may be anything: take the first.
    return [tuple(0 if v is None else v for v in row) for row in rows]


def uncovered_pairs(rows: Sequence[Sequence[int]], levels: Sequence[int]) -> list[tuple]:
    """Pairs of parameter values no row holds: ``(i, value_i, j, value_j)``."""
    missing = []
    for i, j in itertools.combinations(range(len(levels)), 2):
        seen = {(row[i], row[j]) for row in rows}
        missing += [
            (i, a, j, b) for a in range(levels[i]) for b in range(levels[j]) if (a, b) not in seen
        ]
    return missing


# -------------------------------------------------------------------- recording


def audible(frame: Frame) -> bool:
    """An audio frame with at least one non-zero sample (silence is not heard)."""
    return isinstance(frame, TTSAudioRawFrame) and bool(frame.audio.strip(b"\x00"))


# ----------------------------------------------------------------------- script

Outcome = Literal["whole", "cut", "failed", "dropped"]


@dataclass
class Reply:
    """One LLM reply of the script and what the listener must hear of it.

    Attributes:
        name: Short label used in failure messages.
        text: The words, exactly as the LLM streamed them.
        section: How many barge-ins came before the reply started.
        outcome: ``"whole"``: every word once, in order. ``"cut"``: a barge-in
            hit it, so a prefix of its words, the last possibly cut off
            mid-word; it may be silent. ``"failed"``: the server failed it,
            judged like ``"cut"``. ``"dropped"``: the connection dropped
            during it, so no word may be lost, but one stretch of words may
            be heard twice (at most ``max_repeat`` words; ``None``: any).
        max_repeat: See ``outcome``.
        start: The reply's ``LLMFullResponseStartFrame``.
        end: Its ``LLMFullResponseEndFrame``; ``None`` when the LLM was cut
            off by a barge-in before finishing.
    """

    name: str
    text: str
    section: int
    start: LLMFullResponseStartFrame
    end: LLMFullResponseEndFrame | None
    outcome: Outcome = "whole"
    max_repeat: int | None = None

    @property
    def words(self) -> list[str]:
        """The words as the tone backend renders them."""
        return words_of(self.text)

    @property
    def may_be_silent(self) -> bool:
        """Whether hearing nothing of it is acceptable."""
        return self.outcome in ("cut", "failed")


@dataclass
class Wait:
    """Hold the script until ``ready()`` or ``timeout_s``; a timeout is noted."""

    ready: Callable[[], bool]
    timeout_s: float
    label: str


@dataclass
class Conversation:
    """A script of replies, pauses, waits and barge-ins, and what it recorded.

    Attributes:
        token_gap_s: Pause between LLM tokens (one word per ``LLMTextFrame``).
        steps: Frames to send, sleeps and waits, in order.
        replies: The replies written, in order.
        inlet: Records frames entering the service (and errors leaving it
            upstream).
        outlet: Records frames leaving the service downstream.
        timed_out: Labels of waits that ran out.
        barge_ins: InterruptionFrames in the script.
    """

    token_gap_s: float = 0.02
    steps: list[Frame | Wait] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    inlet: Recorder = field(default_factory=lambda: Recorder("inlet"))
    outlet: Recorder = field(default_factory=lambda: Recorder("outlet"))
    timed_out: list[str] = field(default_factory=list)
    barge_ins: int = 0

    def say(
        self,
        name: str,
        text: str,
        *,
        pause_after: str | None = None,
        pause_s: float = 0.15,
        stop_after: str | None = None,
        outcome: Outcome = "whole",
        max_repeat: int | None = None,
    ) -> Reply:
        """Stream one LLM reply, one word per token.

        Args:
            name: Label for failure messages.
            text: The reply.
            pause_after: Pause the token stream after this word (the LLM
                stalls mid-sentence).
            pause_s: Length of that pause.
            stop_after: Stop streaming after this word and send no
                ``LLMFullResponseEndFrame`` (a barge-in must follow).
            outcome: What the listener must hear (see :class:`Reply`).
            max_repeat: See :class:`Reply`.

        Returns:
            The reply, for the judge.
        """
        words = text.split(" ")
        start = LLMFullResponseStartFrame()
        self.steps.append(start)
        for i, word in enumerate(words):
            last = i == len(words) - 1
            self.steps.append(LLMTextFrame(word if last else word + " "))
            if word == stop_after:
                break
            if self.token_gap_s and not last:
                self.steps.append(SleepFrame(sleep=self.token_gap_s))
            if word == pause_after:
                self.steps.append(SleepFrame(sleep=pause_s))
        end = None if stop_after else LLMFullResponseEndFrame()
        if end is not None:
            self.steps.append(end)
        reply = Reply(name, text, self.barge_ins, start, end, outcome, max_repeat)
        self.replies.append(reply)
        return reply

    def barge_in(self) -> None:
        """The caller talks over the bot: the reply playing or streaming is cut."""
        self.replies[-1].outcome = "cut"
        self.steps.append(InterruptionFrame())
        self.barge_ins += 1

    def sleep(self, seconds: float) -> None:
        """Nothing happens for ``seconds``."""
        self.steps.append(SleepFrame(sleep=seconds))

    def wait(self, ready: Callable[[], bool], timeout_s: float, label: str) -> None:
        """Hold the script until ``ready()``; a timeout is a judged failure."""
        self.steps.append(Wait(ready, timeout_s, label))

    # ------------------------------------------------------------ conditions

    def contexts_heard(self, since_barge_in: bool = False) -> list[str]:
        """Contexts with audible audio at the outlet so far, in order.

        Args:
            since_barge_in: Count only audio after the latest InterruptionFrame.
        """
        seen: list[str] = []
        for e in self.outlet.entries:
            if since_barge_in and isinstance(e.frame, InterruptionFrame):
                seen = []
            elif audible(e.frame) and e.frame.context_id not in seen:
                seen.append(e.frame.context_id)
        return seen

    def quiet_for(self, seconds: float) -> bool:
        """Audio was heard, and none for the last ``seconds``."""
        times = [e.t for e in self.outlet.entries if audible(e.frame)]
        return bool(times) and time.perf_counter() - times[-1] >= seconds

    def wait_heard(
        self,
        n: int,
        *,
        then_quiet_s: float,
        timeout_s: float,
        label: str,
        since_barge_in: bool = False,
    ) -> None:
        """Wait until ``n`` contexts were heard and then nothing for ``then_quiet_s``."""
        self.wait(
            lambda: len(self.contexts_heard(since_barge_in)) >= n and self.quiet_for(then_quiet_s),
            timeout_s,
            label,
        )

    def wait_started(self, n: int, *, timeout_s: float, label: str) -> None:
        """Wait until ``n`` contexts were heard (the ``n``-th has started)."""
        self.wait(lambda: len(self.contexts_heard()) >= n, timeout_s, label)

    # --------------------------------------------------------------- playing

    def feed(self) -> Iterator[Frame]:
        """The frames to send, made lazily so waits see the audio so far.

        The runner sleeps on each ``SleepFrame`` and only then asks for the
        next frame, so a wait is a run of short sleeps until it is ready.
        """
        for step in self.steps:
            if not isinstance(step, Wait):
                yield step
                continue
            deadline = time.monotonic() + step.timeout_s
            while not step.ready():
                if time.monotonic() >= deadline:
                    self.timed_out.append(f"{step.label} (waited {step.timeout_s} s)")
                    break
                yield SleepFrame(sleep=0.02)


@dataclass
class Result:
    """What came out of a conversation.

    Attributes:
        conversation: The script that was played.
        down: Frames that left the service downstream, stamped.
        up: Frames that left the service upstream.
        unfinished: The pipeline had not ended ``finish_timeout_s`` after the
            script's ``EndFrame`` and was cancelled (a reply never ended).
        leftover_tasks: Tasks the run started that were still alive after it.
    """

    conversation: Conversation
    down: list[Stamped]
    up: list[Frame]
    unfinished: bool = False
    leftover_tasks: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[ErrorFrame]:
        """Error frames that left the service, either way."""
        frames = [e.frame for e in self.down] + self.up
        return [f for f in frames if isinstance(f, ErrorFrame)]


async def run_conversation(
    service: FrameProcessor,
    conversation: Conversation,
    *,
    finish_timeout_s: float = 10.0,
    worker_options: Mapping[str, Any] | None = None,
) -> Result:
    """Play ``conversation`` through ``service``, then end the pipeline.

    Like Pipecat's ``run_test`` (which it mirrors), but a pipeline that does
    not end after the ``EndFrame`` is cancelled and reported instead of
    hanging the test session, and tasks the service leaves behind are
    cancelled and reported.

    Args:
        service: The processor under test.
        conversation: The script.
        finish_timeout_s: How long the ``EndFrame`` may take to get through
            once the script is over (the service finishes its replies first).
        worker_options: More ``PipelineWorker`` arguments (``enable_tracing``,
            say).

    Returns:
        The stamped frames and what went wrong with the pipeline itself.
    """
    before = asyncio.all_tasks()
    pipeline = Pipeline([conversation.inlet, service, conversation.outlet])
    options = {
        "cancel_on_idle_timeout": False,
        "params": PipelineParams(),
        **(worker_options or {}),
    }
    worker = PipelineWorker(pipeline, **options)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _on_started(_worker, _frame):
        started.set()

    runner = WorkerRunner()
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), timeout=5.0)
    for frame in conversation.feed():
        if isinstance(frame, SleepFrame):
            await asyncio.sleep(frame.sleep)
        else:
            await worker.queue_frame(frame)
    await worker.queue_frame(EndFrame())
    done, _ = await asyncio.wait({running}, timeout=finish_timeout_s)
    unfinished = not done
    if unfinished:
        await worker.cancel(reason="the conversation did not finish")
        await asyncio.wait({running}, timeout=5.0)
    leftovers = [t for t in asyncio.all_tasks() - before if _is_client_task(t)]
    if leftovers:
        # A moment for tasks that are already on their way out.
        await asyncio.wait(leftovers, timeout=1.0)
        leftovers = [t for t in leftovers if not t.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        await asyncio.wait(leftovers, timeout=2.0)
    up = [e.frame for e in conversation.inlet.entries if e.direction == FrameDirection.UPSTREAM]
    return Result(
        conversation,
        conversation.outlet.downstream(),
        up,
        unfinished=unfinished,
        leftover_tasks=[t.get_name() for t in leftovers],
    )


def _is_client_task(task: asyncio.Task) -> bool:
    """A task of Pipecat or the service (not the local server's, not this one)."""
    if task is asyncio.current_task():
        return False
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "pipecat" in filename and "pipecat_waves/server" not in filename


# ------------------------------------------------------------------------ judge


@dataclass
class Gap:
    """Dead air between two back-to-back replies, as the transport sees it."""

    before: str
    after: str
    seconds: float


@dataclass
class Verdict:
    """Everything wrong with a conversation (empty: the listener heard it right)."""

    problems: list[str] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    heard: dict[str, list[str]] = field(default_factory=dict)

    def report(self) -> str:
        """Problems first, then what was heard, for a failure message."""
        lines = [*self.problems, "heard:"]
        lines += [f"  {name}: {' '.join(words)}" for name, words in self.heard.items()]
        lines += [f"gap {g.before}->{g.after}: {g.seconds:.2f} s" for g in self.gaps]
        return "\n".join(lines)


def vocabulary(replies: Sequence[Reply]) -> list[str]:
    """Every word of every reply: audio is named against all of them, so audio
    filed under the wrong reply reads as the other reply's words."""
    return sorted({w for r in replies for w in r.words})


def _is_cut_of(tone: Tone, word: str) -> bool:
    """Whether ``tone`` is the start of ``word``'s tone, stopped early.

    A tone ``T`` seconds long has its pitch read from zero crossings, which
    is off by up to about 0.55/T Hz for a cut tone (measured over every word
    of these scripts, cut at every length); 1/T + 2 Hz leaves room. Under
    20 ms the reading says nothing, and any such scrap passes.
    """
    if tone.seconds > len(word) * SECONDS_PER_CHAR + 0.005:
        return False
    if tone.seconds < 0.02:
        return True
    return abs(tone.pitch_hz - word_pitch(word)) <= 1.0 / tone.seconds + 2


def heard_prefix(words: list[str], tones: list[Tone], expected: list[str]) -> bool:
    """A prefix of ``expected``, the last word possibly cut off mid-way."""
    if words == expected[: len(words)]:
        return True
    k = len(words) - 1
    return words[:k] == expected[:k] and k < len(expected) and _is_cut_of(tones[-1], expected[k])


def heard_with_one_restart(words: list[str], expected: list[str], max_repeat: int | None) -> bool:
    """Every word of ``expected`` in order, with at most one stretch heard twice.

    After a dropped connection the client resends what it cannot prove was
    heard; the restart may repeat the words before it (at most
    ``max_repeat``), and one word may be cut off where the drop hit.
    """
    if words.count("<cut>") > 1:
        return False
    whole = [w for w in words if w != "<cut>"]
    if whole == expected:
        return True
    for i in range(1, len(expected) + 1):
        for j in range(i):
            if max_repeat is not None and i - j > max_repeat:
                continue
            if whole == expected[:i] + expected[j:]:
                return True
    return False


def _acceptable(reply: Reply, words: list[str], audio: bytes) -> bool:
    if reply.outcome == "whole":
        return words == reply.words
    if reply.outcome == "dropped":
        return heard_with_one_restart(words, reply.words, reply.max_repeat)
    return heard_prefix(words, decode_tones(audio, RATE), reply.words)


def judge(
    result: Result,
    *,
    max_gap_s: float | None,
    expected_errors: int = 0,
) -> Verdict:
    """Judge a conversation from the frames that came out of the service.

    Checks, each reported as a problem rather than raised, so one failure
    message shows everything that went wrong:

    * every wait of the script was met in time (a reply that never starts is
      dead air a caller hears);
    * one ``InterruptionFrame`` per barge-in came out;
    * no audible audio without a context id;
    * per barge-in, no audio of any earlier context after it;
    * contexts play one at a time, each once, in the order written;
    * per reply, what its context sounds like (see :class:`Reply`);
    * exactly ``expected_errors`` ``ErrorFrame``s, upstream and downstream;
    * dead air: between reply N and N+1 (both whole, same section), when
      N+1's text was all written before N's audio ended, N+1's first audible
      frame follows N's last within ``max_gap_s`` (``None``: not measured).

    Args:
        result: The conversation's frames.
        max_gap_s: Dead-air bound between back-to-back replies.
        expected_errors: ``ErrorFrame``s the scenario injects.

    Returns:
        The problems found, the measured gaps and what was heard per reply.
    """
    convo = result.conversation
    verdict = Verdict()
    problems = verdict.problems
    problems += [f"timed out: {label}" for label in convo.timed_out]
    if result.unfinished:
        problems.append("the pipeline did not end after the script: a reply never finished")
    if result.leftover_tasks:
        problems.append(f"tasks left running after the pipeline ended: {result.leftover_tasks}")
    vocab = vocabulary(convo.replies)

    # Sections between barge-ins, as the service's output marks them.
    sections: list[list[Stamped]] = [[]]
    for e in result.down:
        if isinstance(e.frame, InterruptionFrame):
            sections.append([])
        else:
            sections[-1].append(e)
    if len(sections) - 1 != convo.barge_ins:
        problems.append(
            f"{len(sections) - 1} InterruptionFrame(s) came out for {convo.barge_ins} barge-in(s)"
        )
        sections += [[] for _ in range(convo.barge_ins + 1 - len(sections))]

    sounding = [e for e in result.down if audible(e.frame)]
    if any(e.frame.context_id is None for e in sounding):
        problems.append("audible audio without a context id")
    runs = [ctx for ctx, _ in itertools.groupby(e.frame.context_id for e in sounding)]
    if len(runs) != len(set(runs)):
        problems.append(f"contexts interleave or come back: {_short(runs)}")

    seen_before: set[str] = set()
    when: dict[str, list[float]] = {}
    for e in sounding:
        when.setdefault(e.frame.context_id, []).append(e.t)
    owner: dict[str, Reply] = {}
    for s, section in enumerate(sections):
        section_audio = [e for e in section if audible(e.frame)]
        contexts: list[str] = []
        for e in section_audio:
            if e.frame.context_id not in contexts:
                contexts.append(e.frame.context_id)
        stale = [c for c in contexts if c in seen_before]
        if stale:
            stale_frames = sum(e.frame.context_id in stale for e in section_audio)
            names = [owner[c].name if c in owner else "?" for c in stale]
            problems.append(
                f"after barge-in {s}: {stale_frames} audio frame(s) of earlier context(s) {names}"
            )
        fresh = [c for c in contexts if c not in seen_before]
        seen_before |= set(contexts)
        frames = [e.frame for e in section]
        replies = [r for r in convo.replies if r.section == s]
        _match(replies, fresh, frames, vocab, owner, verdict)

    errs = result.errors
    if len(errs) != expected_errors:
        problems.append(
            f"{len(errs)} ErrorFrame(s), expected {expected_errors}: {[e.error for e in errs]}"
        )

    if max_gap_s is not None:
        entered = {id(e.frame): e.t for e in convo.inlet.entries}
        by_reply = {id(r): c for c, r in owner.items()}
        for a, b in itertools.pairwise(convo.replies):
            ca, cb = by_reply.get(id(a)), by_reply.get(id(b))
            if a.section != b.section or a.outcome != "whole" or b.outcome != "whole":
                continue
            if ca is None or cb is None or b.end is None or id(b.end) not in entered:
                continue
            a_last, b_first = when[ca][-1], when[cb][0]
            if entered[id(b.end)] >= a_last:
                continue  # the next reply was not ready before this one ended
            gap = Gap(a.name, b.name, b_first - a_last)
            verdict.gaps.append(gap)
            if gap.seconds > max_gap_s:
                problems.append(
                    f"{gap.seconds:.2f} s of dead air between {a.name} and {b.name} "
                    f"(bound {max_gap_s} s)"
                )
    return verdict


def _match(
    replies: list[Reply],
    contexts: list[str],
    frames: list[Frame],
    vocab: list[str],
    owner: dict[str, Reply],
    verdict: Verdict,
) -> None:
    """File the section's contexts under its replies, in order, and judge each."""

    def hear(ctx: str) -> tuple[list[str], bytes]:
        audio = b"".join(
            f.audio for f in frames if isinstance(f, TTSAudioRawFrame) and f.context_id == ctx
        )
        return transcribe_tones(audio, RATE, vocab), audio

    i = 0
    for n, reply in enumerate(replies):
        if i >= len(contexts):
            verdict.heard[reply.name] = []
            if not reply.may_be_silent:
                verdict.problems.append(f"{reply.name}: nothing heard")
            continue
        words, audio = hear(contexts[i])
        ok = _acceptable(reply, words, audio)
        silent = not ok and reply.may_be_silent and n + 1 < len(replies)
        if silent and _acceptable(replies[n + 1], words, audio):
            # A silent reply: this audio is the next reply's.
            verdict.heard[reply.name] = []
            continue
        verdict.heard[reply.name] = words
        owner[contexts[i]] = reply
        i += 1
        if not ok:
            verdict.problems.append(f"{reply.name}: heard {_short(words)}, wrote {reply.text!r}")
    for ctx in contexts[i:]:
        words, _ = hear(ctx)
        verdict.problems.append(f"audio of no reply in its place: {_short(words)}")


def _short(items: Sequence[Any], limit: int = 40) -> str:
    shown = " ".join(str(x) for x in items[:limit])
    return shown + (" ..." if len(items) > limit else "")


def behaviour_kwargs(
    choice: Mapping[str, str], dimensions: Mapping[str, Mapping[str, dict]]
) -> dict[str, Any]:
    """ServerBehaviour keyword arguments for one value per dimension.

    Args:
        choice: Dimension name to the value picked.
        dimensions: Dimension name to value name to switches.
    """
    kwargs: dict[str, Any] = {}
    for dimension, value in choice.items():
        kwargs.update(dimensions[dimension][value])
    return kwargs
