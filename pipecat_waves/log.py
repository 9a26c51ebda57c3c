"""The package's logger.

Use ``from pipecat_waves.log import logger`` in the services and the command
line: it is loguru's logger with one patch, which passes every message (and
the text of a logged exception) through :func:`pipecat_waves.credentials.scrub`,
so an API key never reaches a sink. Per-chunk detail goes at debug level.
"""

from __future__ import annotations

from typing import Any

from loguru import logger as _logger

from pipecat_waves.credentials import scrub


def _scrub_record(record: Any) -> None:
    record["message"] = scrub(record["message"])
    exception = record["exception"]
    if exception is not None and exception.value is not None:
        text = f"{exception.type.__name__}: {exception.value}"
        clean = scrub(text)
        if clean != text:
            # The traceback would print the exception as is: keep only its scrubbed text.
            record["exception"] = None
            record["message"] += f" ({clean})"


#: The package's logger: every message is scrubbed of known keys before any sink sees it.
logger = _logger.patch(_scrub_record)
