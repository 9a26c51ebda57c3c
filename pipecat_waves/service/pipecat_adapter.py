"""The two places the service needs more of Pipecat than its public interface.

Everything else in the package uses Pipecat's public API only: frames,
``TTSService``'s documented hooks (``run_tts``, ``flush_audio``,
``on_audio_context_interrupted``, ``_update_settings``), the audio-context
methods, ``push_error`` and the event handlers. Two things have no public
form in any Pipecat this package supports (1.13 and 1.14):

* ``TTSService._text_aggregator``: ``TTSService.__init__`` takes no aggregator,
  so the first-clause aggregator can only be installed by replacing this
  member (:func:`install_text_aggregator`). Without it the service sends
  whole sentences. (Fully public instead: ``first_clause=None`` on the
  service and an upstream
  ``LLMTextProcessor(text_aggregator=FirstClauseAggregator(FirstClause()))``.)
* ``TTSService._record_context_audio_outcome``: Pipecat reports every reply
  that ends without audio as an error of its own. A reply Waves refused was
  already reported once, with its cause; :class:`ReportedFailuresAdapter`
  keeps Pipecat from reporting it a second time. Without it such a reply is
  reported twice, and counts towards Pipecat's silent-replies limit.

Each is pinned by ``tests/service/test_pipecat_adapter.py``, and each falls
back to the behaviour just described if a Pipecat release moves it, rather
than failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipecat.services.tts_service import TTSService
from pipecat.utils.text.base_text_aggregator import BaseTextAggregator

from pipecat_waves.log import logger

__all__ = [
    "AUDIO_OUTCOME_HOOK",
    "TEXT_AGGREGATOR",
    "ReportedFailuresAdapter",
    "install_text_aggregator",
]

#: The members used, by name (the tests pin each).
TEXT_AGGREGATOR = "_text_aggregator"
AUDIO_OUTCOME_HOOK = "_record_context_audio_outcome"


def install_text_aggregator(
    service: TTSService, make: Callable[[BaseTextAggregator], BaseTextAggregator]
) -> bool:
    """Replace the sentence aggregator of ``service`` by ``make(current_aggregator)``.

    Args:
        service: A service whose ``TTSService.__init__`` has run.
        make: Builds the new aggregator from the one Pipecat made (to carry
            its language over, say).

    Returns:
        Whether it was replaced. If this Pipecat keeps its aggregator
        elsewhere, or as something else, nothing is changed and one warning
        says so.
    """
    current = getattr(service, TEXT_AGGREGATOR, None)
    if not isinstance(current, BaseTextAggregator):
        logger.warning(
            f"{service}: this Pipecat keeps no {TEXT_AGGREGATOR} of type BaseTextAggregator "
            f"(found {type(current).__name__}); sending whole sentences instead of cutting "
            "the first clause early"
        )
        return False
    setattr(service, TEXT_AGGREGATOR, make(current))
    return True


class ReportedFailuresAdapter:
    """Mixin for a ``TTSService``: a reply reported as failed is not reported again as silent.

    Put it before ``TTSService`` among the bases and override
    :meth:`_claim_reported_failure`. The override of Pipecat's private hook
    takes any arguments, so a changed signature in a later Pipecat costs a
    second report, never an exception in Pipecat's playback task; a hook that
    is gone is simply never called.
    """

    def _claim_reported_failure(self, context_id: str) -> bool:
        """Whether ``context_id`` failed and was reported already; forgets it if so."""
        return False

    async def _record_context_audio_outcome(self, *args: Any, **kwargs: Any) -> None:
        context_id = kwargs.get("context_id", args[0] if args else None)
        if isinstance(context_id, str) and self._claim_reported_failure(context_id):
            return
        pipecat_hook = getattr(super(), AUDIO_OUTCOME_HOOK, None)
        if pipecat_hook is not None:
            await pipecat_hook(*args, **kwargs)
