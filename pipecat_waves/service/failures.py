"""How the WebSocket service reports what failed: once, with its cause and its fix.

:class:`FailureReportsMixin` turns the session's failures into Pipecat errors
for :class:`~pipecat_waves.service.websocket.WavesTTSService`: a reply Waves
refused (one ``ErrorFrame`` in the reply's audio, going back to the last voice
or model that spoke when the refusal names one), an error no reply waits on
(fatal only for the key), an outage past the failover threshold (one error for
every reply it drops, and the service unusable), and a failure no retry can
fix (reported once, and reconnecting stops). Which errors are which is decided
in :mod:`pipecat_waves.errors`. A mixin of that service only: the state it uses
is the service's, declared below.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pipecat.frames.frames import ErrorFrame
from pipecat.services.tts_service import TTSService
from pipecat.utils.errors import ErrorCategory

from pipecat_waves.credentials import scrub
from pipecat_waves.errors import category_of as _category
from pipecat_waves.errors import fix_for as _fix_for
from pipecat_waves.errors import refused_model as _refused_model
from pipecat_waves.log import logger
from pipecat_waves.protocol import errors as pe
from pipecat_waves.protocol import reconnect as rc
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol import session as sn
from pipecat_waves.service.resample import StreamResampler
from pipecat_waves.service.settings import WavesTTSSettings

__all__ = ["FailureReportsMixin"]

if TYPE_CHECKING:
    # Type-checked as the service it is mixed into; a plain class at run time.
    _ServiceBase = TTSService
else:
    _ServiceBase = object


class FailureReportsMixin(_ServiceBase):
    """Failure reporting of ``WavesTTSService`` (see the module docstring)."""

    # The service's state this mixin reads and writes (set in its __init__).
    _settings: WavesTTSSettings
    _session: sn.WavesSession
    _policy: rc.ReconnectPolicy
    _last_failure: str
    _failed_contexts: set[str]
    _resamplers: dict[str, StreamResampler]
    _spoken_voice: str | None
    _spoken_model: str | None

    if TYPE_CHECKING:

        async def _act(self, outputs: list[sn.Output]) -> None: ...

        async def _on_policy(
            self,
            actions: list[rc.Action],
            *,
            give_up: tuple[str, ErrorCategory] | None = None,
        ) -> None: ...

    async def _report_unreachable(self, verdict: rc.Unusable) -> None:
        """Waves is gone for longer than the failover threshold: one error, unusable.

        Replies waiting for a connection are dropped under this one error
        (each would otherwise be reported on its own); the policy keeps
        reconnecting and the service becomes usable again when Waves answers.
        """
        down = f"{verdict.down_for_s:.1f} s"
        if verdict.refused:
            message = (
                f"Waves turned every connection away for {down}: the account's concurrency "
                "limit is reached. Run fewer sessions at once or raise the account's concurrency."
            )
            category = ErrorCategory.RATE_LIMIT
        elif verdict.closed_at_once:
            message = (
                f"Waves closed every connection right after opening it for {down} "
                f"(last: {self._last_failure}). Check the api_key, base_url and the "
                "account's concurrency limit."
            )
            category = ErrorCategory.CONNECTIVITY
        else:
            message = f"No connection to Waves for {down}. {self._last_failure}".rstrip()
            category = ErrorCategory.CONNECTIVITY
        message += (
            " The service is marked unusable (a ServiceSwitcher fails over now); it keeps "
            "retrying and becomes usable again when Waves answers."
        )
        outputs = self._session.unreachable(time.monotonic(), sn.UNREACHABLE_REASON)
        for output in outputs:
            if isinstance(output, sn.ContextFailed):
                await self._drop_context(output.context_id)
            else:
                await self._act([output])
        await self.push_error(scrub(message), category=category, force_treat_as_permanent=True)

    async def _drop_context(self, context_id: str) -> None:
        """End a reply the outage report covers, with no error of its own."""
        self._resamplers.pop(context_id, None)
        if self.audio_context_available(context_id):
            self._failed_contexts.add(context_id)
            await self.remove_audio_context(context_id)

    async def _give_up(self, message: str, category: ErrorCategory) -> None:
        """Report a failure no retry can fix, once, and stop reconnecting."""
        await self._on_policy(
            self._policy.give_up(auth=category is ErrorCategory.AUTHENTICATION),
            give_up=(message, category),
        )

    async def _on_unattributed_error(self, output: sn.UnattributedError) -> None:
        """An error that failed no reply: fatal only if it is about the key."""
        category = _category(output.error)
        if category is ErrorCategory.AUTHENTICATION:
            await self._give_up(pe.auth_error_message(output.error.message), category)
        else:
            logger.warning(
                f"{self}: Waves reported an error on connection {output.conn} that no reply "
                f"waits on: {output.error.message}"
            )

    def _claim_reported_failure(self, context_id: str) -> bool:
        # A reply the server refused was already reported once, with its cause;
        # Pipecat's generic "completed with no audio" would report it twice.
        if context_id in self._failed_contexts:
            self._failed_contexts.discard(context_id)
            return True
        return False

    def _keep_working_voice(self, error: rs.ServerError) -> str | None:
        """After a voice the server does not know, go back to the last one that spoke.

        A mistyped voice in a settings update would otherwise fail every later
        reply; this way it fails one, reported once, and the service keeps
        speaking. Returns the voice gone back to, if any.
        """
        spoken = self._spoken_voice
        if not pe.names(error, pe.Subject.VOICE):
            return None
        if spoken is None or self._settings.voice == spoken:
            return None
        logger.warning(f"{self}: voice {self._settings.voice!r} refused; back to {spoken!r}")
        self._settings.voice = spoken
        return spoken

    def _keep_working_model(self) -> str | None:
        """After a model the server refused, go back to the last one that spoke.

        As with a voice: a settings update naming a model Waves does not offer
        fails one reply, reported once, and the service keeps speaking.
        Returns the model gone back to, if any.
        """
        spoken = self._spoken_model
        if spoken is None or self._settings.model == spoken:
            return None
        logger.warning(f"{self}: model {self._settings.model!r} refused; back to {spoken!r}")
        self._settings.model = spoken
        return spoken

    async def _fail_context(self, output: sn.ContextFailed) -> None:
        error = output.error
        self._resamplers.pop(output.context_id, None)
        if _category(error) is ErrorCategory.AUTHENTICATION:
            await self._give_up(pe.auth_error_message(error.message), ErrorCategory.AUTHENTICATION)
            return
        message = scrub(f"Waves could not synthesize this reply: {error.message}")
        if error.code:
            message += f" ({error.code})"
        refused_model = _refused_model(error, self._settings.model)
        message += _fix_for(error, refused_model)
        # A model the server does not offer names something that does not exist.
        category = ErrorCategory.INVALID_REQUEST if refused_model else _category(error)
        if refused_model:
            kept, what = self._keep_working_model(), "model"
        else:
            kept, what = self._keep_working_voice(error), "voice"
        if kept:
            message += f" Going on with {what} {kept!r}, the last one that spoke."
            # The service recovered: a permanent category would mark it unusable.
            category = ErrorCategory.APPLICATION
        frame = ErrorFrame(error=message, category=category)
        if self.audio_context_available(output.context_id):
            # Only a context Pipecat still plays reaches the audio-outcome hook.
            self._failed_contexts.add(output.context_id)
            # Through the audio queue, so the error and the TTSStoppedFrame that
            # follows come out in order with the audio already received.
            await self.append_to_audio_context(output.context_id, frame)
            await self.remove_audio_context(output.context_id)
        else:
            await self.push_error_frame(frame)
