"""The probe's I/O: short checks over real sockets, one after the other.

Each check opens its own socket (so one check's refusal or close cannot
spoil the next), sends a few small requests, and records what came back in
an :class:`~pipecat_waves.probe.findings.Exchange`; the findings module says
what it means. The idle-timeout checks only wait, so they run alongside the
others on sockets of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, replace
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from pipecat_waves.probe import findings as f
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.constants import (
    MAX_COMPLETE_BACKOFF_MS,
    MODELS,
    PRONUNCIATION_DICTS_PATH,
    SAMPLE_RATES,
)
from pipecat_waves.protocol.requests import (
    VoiceParams,
    build_cancel,
    build_fragment,
    build_one_shot,
    build_ping,
)
from pipecat_waves.service.connection import WavesConnectError, live_url, open_socket

#: A voice that gives word timestamps on the live API.
PROBE_VOICE = "avery"
#: The voice for each model's timing check (the pro model's default voice for it).
MODEL_VOICES = {"lightning_v3.1": PROBE_VOICE, "lightning_v3.1_pro": "meher"}
#: Sample rate of every check but the chunk-size one.
PROBE_RATE = 16000

HELLO = "Hi."
ONE_SHOTS = ("One.", "Two.")
BACKOFF = "Backoff check."
ECHO_FRAGMENTS = ("Echo in a ", "continuation.")
LONG_SENTENCE = (
    "This one long sentence keeps going on and on with many small words and a few "
    "commas, so that a server which cuts long text into pieces has to choose where "
    "it makes a cut before the end."
)
SEVERAL = "The sun is up. Birds are singing. It is a fine day."
PER_FRAGMENT = ("The sun is up. ", "Birds are singing. ", "It is a fine day.")
PAUSE_FRAGMENTS = ("While the kettle ", "boils, we wait.")
CANCEL_TEXT = (
    "Barge in now: this sentence is long enough that its audio is still streaming "
    "when the cancel arrives."
)
QUIET_CLOSE = "All done here."
BAD_VOICE = "Bad voice."
BAD_FIELD = "Bad field."
CHUNK_TEXT = "Chunk size test."
#: A word and a much longer way to say it: a dictionary that is applied makes
#: the audio several times longer.
DICT_WORD = "WXQ"
DICT_SAID = "double you ex queue, double you ex queue, double you ex queue"
DICT_TEXT = f"Say {DICT_WORD}."


def probe_texts() -> list[str]:
    """Every text the probe synthesizes (or tries to), in order."""
    return [
        *([HELLO] * len(MODELS)),
        *ONE_SHOTS,
        BACKOFF,
        *ECHO_FRAGMENTS,
        LONG_SENTENCE,
        SEVERAL,
        *PER_FRAGMENT,
        *PAUSE_FRAGMENTS,
        CANCEL_TEXT,
        QUIET_CLOSE,
        BAD_VOICE,
        BAD_FIELD,
        *([CHUNK_TEXT] * len(SAMPLE_RATES)),
        DICT_TEXT,
        DICT_TEXT,
    ]


def probe_characters() -> int:
    """Characters the probe sends for synthesis (what an account is billed for, at most)."""
    return sum(len(t) for t in probe_texts())


@dataclass(frozen=True)
class ProbeConfig:
    """How long the probe waits, and where.

    Attributes:
        ws_base: ``ws(s)://host[:port]`` of the server.
        api_key: Bearer key (None sends none).
        settle_s: Quiet time after a reply's ``complete`` before a check ends
            (a later segment of the same text may still come).
        pause_s: The pause between two fragments of one sentence.
        idle_wait_s: Longest wait for the default idle timeout; 0 skips it.
        quiet_close_s: How long a closing frame with nothing buffered is listened to.
        open_timeout_s: Limit on each connection's handshake.
    """

    ws_base: str
    api_key: str | None
    settle_s: float = 0.5
    pause_s: float = 1.0
    idle_wait_s: float = 65.0
    quiet_close_s: float = 1.0
    open_timeout_s: float = 10.0


class _Check:
    """One socket of one check, whose frames are recorded as they arrive."""

    def __init__(self, ws: ClientConnection, handshake_s: float) -> None:
        self.ws = ws
        self.handshake_s = handshake_s
        self.t0 = time.monotonic()
        self.exchange = f.Exchange()

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def send(self, obj: dict[str, Any], mark: str | None = None) -> None:
        if mark is not None:
            self.exchange.marks.setdefault(mark, self.now())
        await self.ws.send(json.dumps(obj))

    async def next_frame(self, wait_s: float) -> bool:
        """Record one frame; ``False`` on silence or a closed socket."""
        try:
            raw = await asyncio.wait_for(self.ws.recv(), wait_s)
        except TimeoutError:
            return False
        except ConnectionClosed as e:
            if self.exchange.closed_at is None:
                self.exchange.closed_at = self.now()
                self.exchange.close_code = e.rcvd.code if e.rcvd else None
            return False
        try:
            event = rs.parse_message(raw)
        except rs.ResponseError:
            event = rs.Unrecognized(raw)
        if isinstance(event, rs.ServerError):
            with contextlib.suppress(ValueError):
                loaded = json.loads(raw)
                if isinstance(loaded, dict):
                    self.exchange.raw_errors.append(loaded)
        self.exchange.frames.append((self.now(), event))
        return True

    async def collect(self, settle_s: float, quiet_s: float) -> None:
        """Read until the latest segment has its ``complete`` and ``settle_s`` pass quietly.

        Without that ``complete`` the check waits ``quiet_s`` of silence (a
        held-back or withheld complete), so a server that never sends one
        still ends the check.
        """
        while True:
            done = self._latest_complete() or bool(f.errors(self.exchange))
            if not await self.next_frame(settle_s if done else quiet_s):
                return

    def _latest_complete(self) -> bool:
        segs = f.segments(self.exchange, PROBE_RATE)
        return bool(segs) and segs[-1].complete_s is not None

    async def wait_for_audio(self, wait_s: float) -> bool:
        """Read until the first audio chunk; ``False`` if none came."""
        deadline = time.monotonic() + wait_s
        while not any(isinstance(e, rs.AudioChunk) for _, e in self.exchange.frames):
            left = deadline - time.monotonic()
            if left <= 0 or not await self.next_frame(left):
                return False
        return True


class ProbeRunner:
    """Runs every check against one server and builds the report."""

    def __init__(self, config: ProbeConfig) -> None:
        self.config = config
        self._delay_s: float | None = None
        self._backoff_applies = False

    # ---------------------------------------------------------- connections

    def _url(self, query_timeout: str | None = None) -> str:
        url = live_url(self.config.ws_base, None)
        return url if query_timeout is None else f"{url}?timeout={query_timeout}"

    async def _open(self, *, query_timeout: str | None = None, key: str | None = None) -> _Check:
        started = time.monotonic()
        ws = await open_socket(
            self._url(query_timeout),
            key if key is not None else self.config.api_key,
            extra_headers={"X-Source": "pipecat-waves-probe"},
            open_timeout_s=self.config.open_timeout_s,
        )
        return _Check(ws, time.monotonic() - started)

    @contextlib.asynccontextmanager
    async def _check(self, **kwargs: Any) -> Any:
        check = await self._open(**kwargs)
        try:
            yield check
        finally:
            await check.ws.close()

    def _quiet_s(self) -> float:
        """Silence that ends a check whose latest segment has no ``complete`` yet."""
        if self._delay_s is None:
            return MAX_COMPLETE_BACKOFF_MS / 1000 + 1.0
        return self._delay_s + 1.0

    async def _collect(self, check: _Check) -> None:
        await check.collect(self.config.settle_s, self._quiet_s())

    @staticmethod
    def _params(rate: int = PROBE_RATE, model: str | None = None) -> VoiceParams:
        if model is None:
            return VoiceParams(PROBE_VOICE, sample_rate=rate, word_timestamps=True)
        voice = MODEL_VOICES.get(model, PROBE_VOICE)
        return VoiceParams(voice, model=model, sample_rate=rate, word_timestamps=True)

    def _fragment(self, text: str, context_id: str, more: bool, **kw: Any) -> dict[str, Any]:
        # Once the server is known to honour it, completes are not held back.
        backoff = 0 if self._backoff_applies else None
        return build_fragment(
            text,
            self._params(),
            context_id=context_id,
            more=more,
            complete_backoff_ms=backoff,
            **kw,
        )

    @staticmethod
    def _one_shot(text: str, params: VoiceParams, **kw: Any) -> dict[str, Any]:
        msg = build_one_shot(text, params, **kw)
        msg["complete_backoff_ms"] = 0  # the documented legacy field; lets a reply end at once
        return msg

    # ---------------------------------------------------------------- run

    async def run(self) -> f.ProbeReport:
        """Run every check; the idle checks run alongside the others.

        Raises:
            WavesConnectError: The server cannot be reached or refuses the key.
        """
        report = f.ProbeReport(self.config.ws_base, probe_characters())
        idle = asyncio.create_task(self._idle_checks())
        try:
            report.findings += await self._timing()
            report.findings.append(await self._auth())
            report.findings.append(await self._ping())
            report.findings += await self._one_shots()
            report.findings.append(await self._backoff())
            report.findings.append(await self._continuation_echo())
            report.findings += await self._segmentation()
            report.findings.append(await self._pause())
            report.findings.append(await self._cancel())
            report.findings.append(await self._quiet_close())
            report.findings += await self._errors()
            report.findings.append(await self._chunks())
            report.findings.append(await self._dicts())
            report.findings += await idle
        finally:
            idle.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await idle
        return report

    # -------------------------------------------------------------- checks

    async def _timing(self) -> list[f.Finding]:
        found = []
        for model in sorted(MODELS):
            async with self._check() as check:
                await check.send(self._one_shot(HELLO, self._params(model=model)), "sent")
                await self._collect(check)
            found.append(f.timing_finding(model, check.handshake_s, check.exchange, PROBE_RATE))
        return found

    async def _auth(self) -> f.Finding:
        try:
            check = await self._open(key="probe-wrong-key-0000")
        except WavesConnectError as e:
            return f.auth_finding(e.status, None)
        try:
            while await check.next_frame(3.0):
                pass
        finally:
            await check.ws.close()
        return f.auth_finding(None, check.exchange)

    async def _ping(self) -> f.Finding:
        async with self._check() as check:
            await check.send(build_ping(), "sent")
            await check.next_frame(3.0)
        return f.ping_finding(check.exchange)

    async def _one_shots(self) -> list[f.Finding]:
        ids = ("probe-one", "probe-two")
        async with self._check() as check:
            for text, rid in zip(ONE_SHOTS, ids, strict=True):
                # No complete_backoff_ms here: this check is about the default.
                with contextlib.suppress(ConnectionClosed):
                    await check.send(build_one_shot(text, self._params(), request_id=rid), "sent")
            await check.collect(self.config.settle_s, self._quiet_s())
        self._delay_s = f.complete_delay(check.exchange, PROBE_RATE)
        return f.one_shot_findings(check.exchange, PROBE_RATE, ids)

    async def _backoff(self) -> f.Finding:
        async with self._check() as check:
            msg = build_fragment(
                BACKOFF,
                self._params(),
                context_id="probe-backoff",
                more=False,
                complete_backoff_ms=0,
            )
            await check.send(msg, "sent")
            await self._collect(check)
        finding = f.backoff_finding(check.exchange, PROBE_RATE, self._delay_s)
        self._backoff_applies = (
            isinstance(finding.facts, f.OutcomeFacts) and finding.facts.outcome == "apply"
        )
        return finding

    async def _continuation_echo(self) -> f.Finding:
        ids = ("probe-c1", "probe-c2")
        async with self._check() as check:
            for i, (text, rid) in enumerate(zip(ECHO_FRAGMENTS, ids, strict=True)):
                more = i < len(ids) - 1
                await check.send(self._fragment(text, "probe-echo", more, request_id=rid))
            await self._collect(check)
        return f.continuation_echo_finding(check.exchange, PROBE_RATE, ids)

    async def _segmentation(self) -> list[f.Finding]:
        async with self._check() as check:
            await check.send(self._fragment(LONG_SENTENCE, "probe-long", False), "sent")
            await self._collect(check)
        long = check.exchange
        cut = f.long_sentence_switches(long, PROBE_RATE, len(LONG_SENTENCE))
        found = [
            f.split_finding(f.FindingKey.LONG_SENTENCE, long, PROBE_RATE, len(LONG_SENTENCE), cut)
        ]
        async with self._check() as check:
            await check.send(self._fragment(SEVERAL, "probe-several", False), "sent")
            await self._collect(check)
        found.append(
            f.split_finding(
                f.FindingKey.SEVERAL_SENTENCES, check.exchange, PROBE_RATE, len(SEVERAL)
            )
        )
        async with self._check() as check:
            for text in PER_FRAGMENT:
                await check.send(self._fragment(text, "probe-per", True), "sent")
            await check.send(self._fragment("", "probe-per", False))
            await self._collect(check)
        per = check.exchange
        total = len("".join(PER_FRAGMENT))
        merged = f.per_sentence_switches(per, PROBE_RATE, len(PER_FRAGMENT), total)
        found.append(f.split_finding(f.FindingKey.PER_FRAGMENT, per, PROBE_RATE, total, merged))
        found.append(
            f.word_time_finding([("per fragment", per), ("long sentence", long)], PROBE_RATE)
        )
        return found

    async def _pause(self) -> f.Finding:
        first, rest = PAUSE_FRAGMENTS
        async with self._check() as check:
            await check.send(
                self._fragment(first, "probe-pause", True, max_buffer_delay_ms=5000), "sent"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain(check), self.config.pause_s)
            await check.send(self._fragment(rest, "probe-pause", False), "resumed")
            await self._collect(check)
        return f.pause_finding(check.exchange, PROBE_RATE, self.config.pause_s)

    @staticmethod
    async def _drain(check: _Check) -> None:
        while True:
            if not await check.next_frame(3600):
                return

    async def _cancel(self) -> f.Finding:
        async with self._check() as check:
            # Released at once (no wait for "long enough"), and the context stays open.
            msg = self._fragment(CANCEL_TEXT, "probe-cancel", True, max_buffer_delay_ms=0)
            await check.send(msg, "sent")
            if await check.wait_for_audio(self._quiet_s() + 5.0):
                await check.send(build_cancel("probe-cancel", PROBE_VOICE), "cancel")
                await self._collect(check)
        return f.cancel_finding(check.exchange, PROBE_RATE)

    async def _quiet_close(self) -> f.Finding:
        listen = self.config.quiet_close_s
        async with self._check() as check:
            msg = self._fragment(QUIET_CLOSE, "probe-quiet", True, max_buffer_delay_ms=0)
            await check.send(msg, "sent")
            await self._collect(check)
            await check.send(self._fragment("", "probe-quiet", False), "close")
            while await check.next_frame(listen):
                pass
        return f.quiet_close_finding(check.exchange, listen)

    async def _errors(self) -> list[f.Finding]:
        found = []
        bad_voice = build_one_shot(
            BAD_VOICE, VoiceParams("probe-no-such-voice", sample_rate=PROBE_RATE)
        )
        bad_field = build_one_shot(BAD_FIELD, self._params())
        bad_field["sample_rate"] = 12345
        for what, msg in (("bad voice", bad_voice), ("bad field", bad_field)):
            async with self._check() as check:
                await check.send(msg, "sent")
                await self._collect(check)
            found.append(f.error_finding(what, check.exchange))
        return found

    async def _chunks(self) -> f.Finding:
        sizes: dict[int, list[int]] = {}
        for rate in SAMPLE_RATES:
            # A socket per rate: a server may close the socket after a one-shot.
            async with self._check() as check:
                await check.send(
                    self._one_shot(CHUNK_TEXT, VoiceParams(PROBE_VOICE, sample_rate=rate))
                )
                await self._collect(check)
            sizes[rate] = [
                len(e.audio) for _, e in check.exchange.frames if isinstance(e, rs.AudioChunk)
            ]
        return f.chunk_finding(sizes)

    def _http_base(self) -> str:
        base = self.config.ws_base.rstrip("/")
        if base.startswith("wss://"):
            return "https://" + base[len("wss://") :]
        if base.startswith("ws://"):
            return "http://" + base[len("ws://") :]
        return base

    async def _dicts(self) -> f.Finding:
        """Whether the live socket takes, ignores or refuses ``pronunciation_dicts``.

        A dictionary is made for the check over HTTP and deleted afterwards.
        """
        import aiohttp

        url = self._http_base() + PRONUNCIATION_DICTS_PATH
        headers = {"X-Source": "pipecat-waves-probe"}
        if self.config.api_key is not None:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        timeout = aiohttp.ClientTimeout(total=self.config.open_timeout_s * 2)
        item = {"word": DICT_WORD, "pronunciation": DICT_SAID}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
            try:
                async with http.post(url, json={"items": [item]}, allow_redirects=False) as r:
                    made = await r.json(content_type=None) if r.status < 300 else None
                    status = r.status
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                return f.dicts_unavailable_finding(f"no dictionary made ({type(e).__name__})")
            dict_id = made.get("id") if isinstance(made, dict) else None
            if not isinstance(dict_id, str):
                return f.dicts_unavailable_finding(f"no dictionary made (HTTP {status})")
            try:
                exchanges = []
                for dicts in (None, (dict_id,)):
                    params = replace(self._params(), pronunciation_dicts=dicts)
                    async with self._check() as check:
                        await check.send(self._one_shot(DICT_TEXT, params), "sent")
                        await self._collect(check)
                    exchanges.append(check.exchange)
            finally:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.delete(url, json={"id": dict_id}, allow_redirects=False):
                        pass
        return f.dicts_finding(exchanges[0], exchanges[1], PROBE_RATE)

    async def _idle_checks(self) -> list[f.Finding]:
        cases: list[tuple[f.FindingKey, str | None, float]] = [
            (f.FindingKey.IDLE_QUERY, "1", 3.0),
            (f.FindingKey.IDLE_BELOW_RANGE, "0", 3.0),
        ]
        if self.config.idle_wait_s > 0:
            cases.append((f.FindingKey.IDLE_DEFAULT, None, self.config.idle_wait_s))
        results = await asyncio.gather(*(self._idle(q, wait) for _, q, wait in cases))
        found = []
        for (key, q, wait), closed in zip(cases, results, strict=True):
            if isinstance(closed, WavesConnectError):
                found.append(f.idle_refused_finding(key, q, closed.status))
            else:
                found.append(f.idle_finding(key, q, closed, wait))
        return found

    async def _idle(
        self, query_timeout: str | None, wait_s: float
    ) -> float | WavesConnectError | None:
        # A refused upgrade (an out-of-range ?timeout= answered with HTTP 400,
        # say) is a finding, not the end of the probe.
        try:
            async with self._check(query_timeout=query_timeout) as check:
                deadline = time.monotonic() + wait_s
                while (left := deadline - time.monotonic()) > 0:
                    if not await check.next_frame(left) and check.exchange.closed_at is not None:
                        break
        except WavesConnectError as e:
            return e
        return check.exchange.closed_at


async def run_probe(config: ProbeConfig) -> f.ProbeReport:
    """Run the probe against one server."""
    return await ProbeRunner(config).run()
