"""The Pipecat services and their helpers.

``websocket`` holds :class:`WavesTTSService` (one persistent WebSocket per
voice); ``connection`` is one open WebSocket (a ``LiveSocket``). ``http`` holds
:class:`WavesHttpTTSService` (server-sent events). The other modules are what
both services share: first-clause aggregation, language mapping, resampling,
settings checks, tracing, and the thin adapter over Pipecat internals
(``pipecat_adapter``, the one place that touches a private Pipecat member).
Import the services from :mod:`pipecat_waves`.
"""
