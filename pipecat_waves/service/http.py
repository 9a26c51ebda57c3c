"""Pipecat text-to-speech over Waves' HTTP streaming endpoint (server-sent events)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pipecat.frames.frames import CancelFrame, ErrorFrame, Frame, StartFrame, TTSAudioRawFrame
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, TTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.types import is_given

from pipecat_waves.credentials import check_transport, clean_api_key, scrub
from pipecat_waves.errors import category_of, fix_for, http_category, refused_model
from pipecat_waves.log import logger
from pipecat_waves.protocol import constants as c
from pipecat_waves.protocol import errors as pe
from pipecat_waves.protocol import http as hp
from pipecat_waves.protocol.audio import PcmAligner
from pipecat_waves.protocol.responses import ServerError
from pipecat_waves.service.connection import _key_refused
from pipecat_waves.service.language import language_to_waves_language
from pipecat_waves.service.pipecat_adapter import ReportedFailuresAdapter
from pipecat_waves.service.resample import StreamResampler, wire_rate_for
from pipecat_waves.service.settings import WavesTTSSettings, initial_settings
from pipecat_waves.service.settings_check import known_models, settings_problem, unknown_model
from pipecat_waves.service.tracing import traced_replies

__all__ = ["WavesHttpTTSService", "sse_url"]

#: The HTTP endpoints' origin.
DEFAULT_HTTP_BASE_URL = "https://api.smallest.ai"

#: Most bytes of an error body read (the documented ones are a few dozen).
MAX_ERROR_BODY_BYTES = 16 * 1024

#: Replies remembered as failed, so the rest of their sentences are not sent.
_FAILED_MEMORY = 64

#: Settings sent under their own name when the HTTP body documents them. A
#: field added to the settings later (a documented one) is sent with no change here.
_SENT_BY_NAME = frozenset(
    f.name for f in dataclasses.fields(WavesTTSSettings) if f.name in hp.HTTP_BODY_FIELDS
) - {"model", "language"}


def sse_url(base_url: str) -> str:
    """The SSE endpoint's URL from an origin such as ``https://api.smallest.ai``.

    ``ws://`` and ``wss://`` origins (what the socket service takes) are read
    as ``http://`` and ``https://``, so one setting serves both services.

    Raises:
        ValueError: Not an http(s) or ws(s) origin; it holds credentials, a
            path or a query; or it is plain ``http://`` to a host that is not
            this machine (the key would travel in clear).
    """
    parts = urlsplit(base_url.strip().rstrip("/"))
    # Checked first, and no message quotes the URL: it might hold a secret.
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "base_url must not hold credentials (user:password@); pass the key as api_key"
        )
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.hostname:
        shown = repr(parts.scheme) if parts.scheme.isalnum() and len(parts.scheme) <= 10 else "no"
        raise ValueError(
            f"base_url must be an origin such as {DEFAULT_HTTP_BASE_URL} (got {shown} scheme)"
        )
    check_transport(scheme, parts.hostname)
    if parts.path or parts.query or parts.fragment:
        raise ValueError(
            "base_url holds a path or query; give only the origin, such as "
            f"{DEFAULT_HTTP_BASE_URL} (the {c.LIVE_PATH} path is added for you)"
        )
    return f"{scheme}://{parts.netloc}{c.LIVE_PATH}"


def _given(value: Any) -> Any:
    return value if is_given(value) else None


class _Failed(Exception):
    """A request failed; the message names the cause and the fix."""

    def __init__(self, message: str, category: ErrorCategory) -> None:
        super().__init__(message)
        self.message = message
        self.category = category


@traced_replies
class WavesHttpTTSService(ReportedFailuresAdapter, TTSService):
    """Smallest.ai Waves text-to-speech over HTTP, audio streamed as server-sent events.

    Each sentence is one ``POST /waves/v1/tts/live``; its audio is pushed as
    ``TTSAudioRawFrame`` as the events arrive, so the first audio never waits
    for the whole reply. One ``aiohttp`` session (and its kept-alive
    connection) serves every request. Take it when the whole text is known up
    front, where WebSockets are blocked, as a failover backup that shares
    nothing with the live socket, or inside ``pipecat.evals.tts.CachingTTSService``.
    For an LLM's streamed replies :class:`~pipecat_waves.service.websocket.WavesTTSService`
    starts speaking sooner.

    An ``InterruptionFrame`` closes the response under way at once; nothing of
    the interrupted reply is pushed afterwards. A failed request gives one
    ``ErrorFrame`` naming the cause and the fix, and the rest of that reply is
    not requested; a rejected key (or a request Waves will never accept)
    leaves the service unusable, so a ``ServiceSwitcher`` fails over, until a
    settings update gives it another chance.

    Text over the documented 8000-character limit is split at sentence ends
    (between words for one overlong sentence) and spoken as consecutive
    requests of the same reply.

    Example::

        tts = WavesHttpTTSService(
            api_key=os.environ["WAVES_API_KEY"],
            settings=WavesHttpTTSService.Settings(voice="avery", speed=1.1),
        )
    """

    Settings = WavesTTSSettings
    _settings: WavesTTSSettings

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_HTTP_BASE_URL,
        sample_rate: int | None = None,
        settings: WavesTTSSettings | None = None,
        aiohttp_session: aiohttp.ClientSession | None = None,
        open_timeout_s: float = 10.0,
        stall_timeout_s: float = 10.0,
        **kwargs: Any,
    ):
        """Create the service.

        Args:
            api_key: Smallest.ai API key. Never logged.
            base_url: ``https://`` origin of the API (``wss://`` is read as
                ``https://``). Plain ``http://`` is accepted only for a server
                on this machine, so a key never travels in clear.
            sample_rate: Output rate, 8000 to 192000 Hz; None takes the
                pipeline's output rate. Waves produces 8000, 16000, 24000 and
                44100 Hz; any other rate is asked for at the nearest offered
                rate above it (else 44100) and resampled as it streams.
            settings: Voice, model, language, speed and the rest (the same
                settings as :class:`~pipecat_waves.service.websocket.WavesTTSService`).
                ``content_filter`` is not documented for HTTP and not sent.
            aiohttp_session: A session to make the requests with (not closed
                by the service). None: the service opens its own in ``setup``
                and closes it in ``cleanup``.
            open_timeout_s: Limit on opening a connection to Waves.
            stall_timeout_s: Longest wait for the next bytes of a response
                (its headers or its next audio event); past it the request
                fails.
            **kwargs: Passed to Pipecat's ``TTSService``.

        Raises:
            ValueError: An unusable ``api_key`` (the message never repeats
                it); an unsupported ``sample_rate`` or speed, a malformed
                voice id, no model name; a plain ``http://`` URL to a remote
                host, or one holding a path; token aggregation (HTTP takes
                whole texts: use ``WavesTTSService`` to stream tokens).
        """
        api_key = clean_api_key(api_key)
        if sample_rate is not None:
            wire_rate_for(sample_rate)  # raises ValueError for a rate that makes no sense
        if kwargs.get("text_aggregation_mode") == TextAggregationMode.TOKEN:
            raise ValueError(
                "WavesHttpTTSService speaks whole sentences (one HTTP request each); "
                "to stream LLM tokens use WavesTTSService"
            )
        default_settings = initial_settings(settings)
        self._url = sse_url(base_url)
        # Sentences reach run_tts trimmed; the space after each keeps a reply's
        # text (as traced, and as the next request follows it) readable.
        kwargs.setdefault("append_trailing_space", True)
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            sample_rate=sample_rate,
            settings=default_settings,
            **kwargs,
        )
        self._api_key = api_key
        self._http: aiohttp.ClientSession | None = aiohttp_session
        self._owns_http = aiohttp_session is None
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=open_timeout_s, sock_read=stall_timeout_s
        )
        self._stall_timeout_s = stall_timeout_s
        self._wire_rate = 0
        self._fatal_error: str | None = None
        # The response each reply is reading now, so a barge-in can close it.
        self._responses: dict[str, aiohttp.ClientResponse] = {}
        self._cut: set[str] = set()  # replies whose response a barge-in closed
        self._failed: dict[str, None] = {}  # replies that failed, oldest first
        self._models_warned: set[str] = set()
        self._warn_about(default_settings)

    def __repr__(self) -> str:
        # The key is deliberately absent.
        return f"<{type(self).__name__} {self._url}>"

    def can_generate_metrics(self) -> bool:
        """Whether TTFB and usage metrics are produced: they are."""
        return True

    def language_to_service_language(self, language: Language) -> str | None:
        """Convert a Pipecat ``Language`` to a Waves code."""
        return language_to_waves_language(language)

    # ------------------------------------------------------------- lifecycle

    async def setup(self, setup: FrameProcessorSetup):  # type: ignore[override]
        """Check the output rate and open the HTTP session."""
        await super().setup(setup)
        try:
            self._wire_rate = wire_rate_for(self.sample_rate)
        except ValueError as e:
            self._fatal_error = str(e)
        if self._owns_http and self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)

    async def start(self, frame: StartFrame):
        """Start the service; report a configuration error found in setup."""
        await super().start(frame)
        if self._fatal_error:
            await self.push_error(
                self._fatal_error,
                category=ErrorCategory.INVALID_REQUEST,
                force_treat_as_permanent=True,
            )

    async def cancel(self, frame: CancelFrame):
        """Stop at once: close any response under way."""
        self._close_responses()
        await super().cancel(frame)

    async def cleanup(self):
        """Close any response under way, and the session if the service opened it."""
        await super().cleanup()
        self._close_responses()
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    def _close_responses(self) -> None:
        for context_id, response in list(self._responses.items()):
            self._cut.add(context_id)
            response.close()

    # ---------------------------------------------------------------- speech

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Speak ``text``: one request per piece of it, audio yielded as it streams in.

        Args:
            text: A sentence (or any text; over 8000 characters it is split).
            context_id: The reply it belongs to.

        Yields:
            ``TTSAudioRawFrame`` at the service's rate as the events arrive;
            one ``ErrorFrame`` if the request fails.
        """
        if context_id in self._failed:
            logger.debug(f"{self}: not requesting more of reply {context_id}: it already failed")
            return
        if not text.strip():
            return
        if self._http is None:
            raise RuntimeError(f"{self}: no HTTP session; run_tts needs setup() first")
        await self.start_tts_usage_metrics(text.strip())  # what is sent, and billed
        resampler = (
            StreamResampler(self._wire_rate, self.sample_rate)
            if self._wire_rate != self.sample_rate
            else None
        )
        try:
            for piece in hp.split_http_text(text):
                async for pcm in self._stream(piece, context_id):
                    if resampler is not None:
                        pcm = resampler.feed(pcm)
                    if pcm:
                        yield self._frame(pcm, context_id)
            if resampler is not None:
                tail = resampler.flush()
                if tail:
                    yield self._frame(tail, context_id)
        except _Failed as failure:
            if context_id in self._cut:
                return  # our own barge-in closed it: routine, nothing to report
            yield await self._failure_frame(failure, context_id)
        finally:
            self._cut.discard(context_id)

    def _frame(self, pcm: bytes, context_id: str) -> TTSAudioRawFrame:
        return TTSAudioRawFrame(
            audio=pcm, sample_rate=self.sample_rate, num_channels=1, context_id=context_id
        )

    def _body(self, text: str) -> dict[str, Any]:
        """The request body: every documented field the settings give."""
        s = self._settings
        fields: dict[str, Any] = {
            "model": str(s.model),
            "sample_rate": self._wire_rate,
            "language": _given(s.language),
            "output_format": "pcm",
        }
        for name in _SENT_BY_NAME:
            fields[name] = _given(getattr(s, name, None))
        return hp.build_http_body(text, str(s.voice), **fields)

    async def _stream(self, text: str, context_id: str) -> AsyncGenerator[bytes, None]:
        """POST one piece of text; yield its PCM, whole samples, as events arrive.

        Raises:
            _Failed: The request failed; the message says why and what to do.
        """
        assert self._http is not None
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "text/event-stream",
            "X-Source": "pipecat-waves",
        }
        host = urlsplit(self._url).netloc
        try:
            async with self._http.post(
                self._url,
                json=self._body(text.strip()),
                headers=headers,
                # A redirect would carry the key wherever Location points.
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                self._responses[context_id] = response
                try:
                    if response.status != 200:
                        raise await self._refusal(response, host)
                    async for pcm in self._read_events(response):
                        yield pcm
                finally:
                    self._responses.pop(context_id, None)
        except _Failed:
            raise
        except TimeoutError:
            raise _Failed(
                f"Waves at {host} sent nothing for {self._stall_timeout_s:g} s "
                "(stall_timeout_s); this reply is cut short. The next reply tries again.",
                ErrorCategory.CONNECTIVITY,
            ) from None
        except aiohttp.ClientConnectorError as e:
            detail = scrub(f"{type(e).__name__}: {e}", self._api_key)
            raise _Failed(
                f"Cannot reach Waves at {host} ({detail}). Check base_url and the network; "
                "the next reply tries again.",
                ErrorCategory.CONNECTIVITY,
            ) from None
        except (aiohttp.ClientError, hp.SseError) as e:
            detail = scrub(f"{type(e).__name__}: {e}", self._api_key)
            raise _Failed(
                f"The connection to Waves at {host} failed mid-reply ({detail}); this reply "
                "is cut short. The next reply tries again.",
                ErrorCategory.CONNECTIVITY,
            ) from None

    async def _read_events(self, response: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
        decoder = hp.SseDecoder()
        aligner = PcmAligner()
        async for chunk in response.content.iter_any():
            for event in decoder.feed(chunk):
                for meaning in hp.read_sse_event(event):
                    if isinstance(meaning, hp.SseAudio):
                        pcm = aligner.feed(meaning.pcm)
                        logger.debug(f"{self}: {len(meaning.pcm)} bytes of audio")
                        if pcm:
                            yield pcm
                    elif isinstance(meaning, hp.SseDone):
                        if aligner.pending:
                            logger.warning(f"{self}: the stream ended half-way through a sample")
                        return
                    elif isinstance(meaning, hp.SseFailure):
                        raise self._stream_failure(meaning.error)
                    else:
                        logger.debug(f"{self}: ignoring an event it does not know: {meaning}")
        raise _Failed(
            "Waves ended the audio stream before its last event; this reply is cut short. "
            "The next reply tries again.",
            ErrorCategory.CONNECTIVITY,
        )

    async def _refusal(self, response: aiohttp.ClientResponse, host: str) -> _Failed:
        """What a non-200 answer means, and what to do about it."""
        status = response.status
        raw = await response.content.read(MAX_ERROR_BODY_BYTES)
        error = hp.error_from_http(status, raw)
        category = http_category(status, error)
        if category is ErrorCategory.AUTHENTICATION:
            return _Failed(_key_refused(status, host, self._api_key), category)
        if pe.status_kind(status) is pe.ErrorKind.RATE_LIMIT:
            wait = hp.retry_after_s(response.headers.get("Retry-After"))
            return _Failed(
                pe.rate_limited_message("this reply", wait) + "; the next reply tries again.",
                ErrorCategory.RATE_LIMIT,
            )
        if 300 <= status < 400:
            return _Failed(
                f"Waves at {host} redirected the request (HTTP {status}); redirects are not "
                "followed, so the API key goes only where you sent it. Set base_url to the "
                "server's own https:// origin.",
                ErrorCategory.INVALID_REQUEST,
            )
        if status >= 500:
            return _Failed(
                f"Waves failed to synthesize this reply (HTTP {status}: {error.message}). "
                "The next reply tries again.",
                ErrorCategory.SERVER,
            )
        refused = refused_model(error, self._settings.model)
        message = f"Waves refused this reply (HTTP {status}): {error.message}"
        message += fix_for(error, refused) or "."
        if status == 404:
            message += f" Check base_url: it must be the API's origin (the {c.LIVE_PATH} is added)."
        return _Failed(message, category)

    def _stream_failure(self, error: ServerError) -> _Failed:
        """An error event in the middle of a stream."""
        message = f"Waves could not finish this reply: {error.message}"
        if error.code:
            message += f" ({error.code})"
        message += fix_for(error, refused_model(error, self._settings.model))
        return _Failed(message, category_of(error))

    async def _failure_frame(self, failure: _Failed, context_id: str) -> ErrorFrame:
        """The one ErrorFrame of a failed request; the rest of its reply is not requested."""
        self._failed[context_id] = None
        while len(self._failed) > _FAILED_MEMORY:
            del self._failed[next(iter(self._failed))]
        if failure.category.is_permanent:
            # At once, so no other sentence already queued is sent to fail the
            # same way; the ErrorFrame carries the same verdict.
            await self.set_usable(False)
            failure.message += (
                " The service is marked unusable (a ServiceSwitcher fails over) until "
                "a settings update."
            )
        logger.warning(f"{self}: {failure.message}")
        return ErrorFrame(error=scrub(failure.message), category=failure.category)

    async def flush_audio(self, context_id: str | None = None):
        """End a failed reply's audio context now (Pipecat ends the others itself).

        Pipecat closes an HTTP service's context at the end of its turn only
        once audio came back; a reply that failed before any would otherwise
        hold the next one back until ``stop_frame_timeout_s`` passed.
        """
        if context_id and context_id in self._failed and self.audio_context_available(context_id):
            await self.remove_audio_context(context_id)

    # -------------------------------------------------------------- barge-in

    async def on_audio_context_interrupted(self, context_id: str):
        """Barge-in: close the reply's response now, so not one more byte of it is read."""
        await super().on_audio_context_interrupted(context_id)
        self._failed.pop(context_id, None)
        response = self._responses.pop(context_id, None)
        if response is not None:
            self._cut.add(context_id)
            response.close()
            logger.debug(f"{self}: closed the response of interrupted reply {context_id}")

    def _claim_reported_failure(self, context_id: str) -> bool:
        """A reply whose request failed was reported once, with its cause (see the adapter)."""
        if context_id in self._failed:
            del self._failed[context_id]
            return True
        return False

    # -------------------------------------------------------------- settings

    async def _update_settings(self, delta: TTSSettings) -> dict[str, Any]:  # type: ignore[override]
        """Apply a settings change; it takes effect with the next request.

        A change that cannot work (a speed out of range, a malformed voice
        id) is refused whole with one ErrorFrame naming it; the service goes
        on with the settings it had.
        """
        candidate = copy.deepcopy(self._settings)
        candidate.apply_update(copy.deepcopy(delta))  # type: ignore[arg-type]
        problem = settings_problem(candidate)
        if problem:
            # APPLICATION: the application sent a bad frame, the service still works.
            await self.push_error(
                f"Settings update refused, keeping the previous settings: {problem}",
                category=ErrorCategory.APPLICATION,
            )
            return {}
        self._warn_about(candidate)
        return await super()._update_settings(delta)

    def _warn_about(self, settings: WavesTTSSettings) -> None:
        """Warn once about what will not be sent as the user may expect."""
        name = unknown_model(settings.model)
        if name is not None and name not in self._models_warned:
            self._models_warned.add(name)
            logger.warning(
                f"{self}: model {name!r} is not one this version knows ({known_models()}); "
                "sending it as given, and Waves decides"
            )
        if _given(settings.content_filter) is not None:
            logger.warning(
                f"{self}: content_filter is not documented for Waves' HTTP endpoints and "
                "is not sent; use WavesTTSService for it"
            )

    async def push_error_frame(self, error: ErrorFrame, force_treat_as_permanent: bool = False):
        """Push an error upstream, never with a key in its text."""
        error.error = scrub(error.error)
        await super().push_error_frame(error, force_treat_as_permanent)
