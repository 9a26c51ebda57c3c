"""The WebSocket service carries out what its session asks, in order.

:class:`SessionOutputsMixin` is the one place where
:class:`~pipecat_waves.service.websocket.WavesTTSService` turns the session's
outputs (:mod:`pipecat_waves.protocol.session`) into effects: messages sent and
sockets closed or opened, audio and word timings handed to Pipecat (resampled
per reply when Waves speaks at another rate than the pipeline), replies ended,
and failures passed to the failure reports. A mixin of that service only: the
state it uses is the service's, declared below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipecat.frames.frames import TTSAudioRawFrame
from pipecat.services.tts_service import TTSService

from pipecat_waves.log import logger
from pipecat_waves.protocol import session as sn
from pipecat_waves.service.connection import LiveSocket
from pipecat_waves.service.resample import StreamResampler

__all__ = ["SessionOutputsMixin"]

if TYPE_CHECKING:
    # Type-checked as the service it is mixed into; a plain class at run time.
    _ServiceBase = TTSService
else:
    _ServiceBase = object


class SessionOutputsMixin(_ServiceBase):
    """Session outputs of ``WavesTTSService``, carried out (see the module docstring)."""

    # The service's state this mixin reads and writes (set in its __init__).
    _session: sn.WavesSession
    _connections: dict[int, LiveSocket]
    _resamplers: dict[str, StreamResampler]
    _wire_rate: int
    _spoken_voice: str | None
    _spoken_model: str | None

    if TYPE_CHECKING:

        def _open_connection(self, reason: str) -> None: ...

        async def _fail_context(self, output: sn.ContextFailed) -> None: ...

        async def _on_unattributed_error(self, output: sn.UnattributedError) -> None: ...

    def _act_on_control(self, outputs: list[sn.Output]) -> None:
        """Carry out the outputs that need no await (sends, closes, opens, logs)."""
        for output in outputs:
            if isinstance(output, sn.Send):
                connection = self._connections.get(output.conn)
                if connection is not None:
                    connection.send(output.message)
            elif isinstance(output, sn.CloseConnection):
                connection = self._connections.get(output.conn)
                if connection is not None:
                    logger.debug(f"{self}: closing connection {output.conn} ({output.reason})")
                    connection.close()
            elif isinstance(output, sn.AbortConnection):
                connection = self._connections.get(output.conn)
                if connection is not None:
                    logger.warning(f"{self}: dropping connection {output.conn} ({output.reason})")
                    connection.abort()
            elif isinstance(output, sn.OpenConnection):
                self._open_connection(output.reason)
            elif isinstance(output, sn.Notice):
                logger.log(output.level.upper(), f"{self}: {output.message}")
            elif isinstance(output, sn.ContextRetrying):
                when = (
                    "when our previous reply frees its slot"
                    if output.delay_s is None
                    else f"in {output.delay_s:.2f} s"
                )
                logger.info(f"{self}: Waves refused a reply ({output.error.message}); retry {when}")

    async def _act(self, outputs: list[sn.Output]) -> None:
        """Carry out what the session asked for, in order."""
        for output in outputs:
            if isinstance(output, sn.AudioOut):
                self._spoken_voice = self._session.voice_of(output.context_id) or self._spoken_voice
                self._spoken_model = self._session.model_of(output.context_id) or self._spoken_model
                await self._push_audio(output)
            elif isinstance(output, sn.WordOut):
                await self.add_word_timestamps([(output.word, output.time_s)], output.context_id)
            elif isinstance(output, sn.ContextFinished):
                await self._flush_resampler(output.context_id)
                if self.audio_context_available(output.context_id):
                    await self.remove_audio_context(output.context_id)
            elif isinstance(output, sn.ContextFailed):
                await self._fail_context(output)
            elif isinstance(output, sn.UnattributedError):
                await self._on_unattributed_error(output)
            else:
                self._act_on_control([output])

    async def _push_audio(self, output: sn.AudioOut) -> None:
        # Only a context Pipecat still plays may take audio: an interrupted
        # one is gone, and must not be brought back by late audio.
        if not self.audio_context_available(output.context_id):
            self._resamplers.pop(output.context_id, None)
            return
        pcm = output.pcm
        if self._wire_rate != self.sample_rate:
            resampler = self._resamplers.get(output.context_id)
            if resampler is None:
                resampler = StreamResampler(self._wire_rate, self.sample_rate)
                self._resamplers[output.context_id] = resampler
            pcm = resampler.feed(pcm)
        await self._append_audio(output.context_id, pcm)

    async def _append_audio(self, context_id: str, pcm: bytes) -> None:
        if not pcm:
            return  # the resampler is still filling its window
        frame = TTSAudioRawFrame(
            audio=pcm, sample_rate=self.sample_rate, num_channels=1, context_id=context_id
        )
        await self.append_to_audio_context(context_id, frame)

    async def _flush_resampler(self, context_id: str) -> None:
        """A reply's audio is complete: push what the resampler still holds."""
        resampler = self._resamplers.pop(context_id, None)
        if resampler is not None and self.audio_context_available(context_id):
            await self._append_audio(context_id, resampler.flush())
