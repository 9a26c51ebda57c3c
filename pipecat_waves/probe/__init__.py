"""``pipecat-waves probe``: learn how a Waves server answers the protocol's open points.

The protocol leaves some behaviour open (see the ``[?]`` points of the
protocol notes): whether request ids are echoed, how text is cut into
segments, when ``complete`` comes, what ``cancel_request`` stops, the error
shapes. The probe asks the server with a handful of short requests and
reports what it did; :meth:`pipecat_waves.server.ServerBehaviour.from_probe`
turns a report into local server switches.
"""

from pipecat_waves.probe.findings import (
    Finding,
    FindingKey,
    IdleFacts,
    OutcomeFacts,
    PingFacts,
    ProbeReport,
)
from pipecat_waves.probe.runner import ProbeConfig, probe_characters, probe_texts, run_probe

__all__ = [
    "Finding",
    "FindingKey",
    "IdleFacts",
    "OutcomeFacts",
    "PingFacts",
    "ProbeConfig",
    "ProbeReport",
    "probe_characters",
    "probe_texts",
    "run_probe",
]
