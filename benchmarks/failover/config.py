"""The failover benchmark's conversation, scenarios and settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipecat_waves.server import ServerBehaviour

#: The conversation: one sentence per turn, no word shared between turns and
#: no two words sounding alike, so every word heard names its turn.
TURNS = (
    "Good evening and welcome to the harbour grill.",
    "Tonight our chef recommends grilled sea bass.",
    "Every main course comes with seasonal vegetables.",
    "Would you like seating near an open window?",
    "Your booking is confirmed for half past eight.",
    "Thanks so much, see everybody soon!",
)


# ----------------------------------------------------------------- config


@dataclass(frozen=True)
class Scenario:
    """What happens to server A after turn 1.

    Attributes:
        key: Short name.
        label: What the table says.
        comes_back: Server A is started again on the same port.
        blip: It comes back ``blip_s`` after going away (otherwise after
            turn ``back_after_turn``).
    """

    key: str
    label: str
    comes_back: bool
    blip: bool = False


OUTAGE = Scenario("outage", "server A gone for good after turn 1", comes_back=False)
SWITCH_BACK = Scenario("switch_back", "server A gone after turn 1, back later", comes_back=True)
BLIP = Scenario("blip", "server A drops every socket and refuses briefly", True, blip=True)
SCENARIOS = (OUTAGE, SWITCH_BACK, BLIP)


@dataclass
class FailoverConfig:
    """Everything a run can vary.

    Attributes:
        sample_rate: Output rate asked of every service.
        runs: Runs of each scenario per service.
        turns: The conversation, one LLM reply per turn.
        turn_gap_s: From one turn's first LLM frame to the next one's.
        warmup_s: Wait after the pipeline started before turn 1, so every
            service has its socket open.
        kill_after_s: Server A goes away this long after turn 1 was sent
            (and not before turn 1 was heard whole).
        back_after_turn: In the switch-back scenario, server A comes back
            after this turn (1-based) ...
        back_delay_s: ... this long after that turn was sent.
        blip_s: How long the blip refuses connections.
        tail_s: After the last turn, wait this long for turns not yet heard
            (longer than any reply budget, so their ErrorFrames are counted).
        settle_s: Once every turn was heard, wait this long for late frames.
        server: How both servers behave.
        concurrent_scenarios: Run the three scenarios at once (both
            services always run at once).
    """

    sample_rate: int = 24000
    runs: int = 3
    turns: tuple[str, ...] = TURNS
    turn_gap_s: float = 4.0
    warmup_s: float = 1.0
    kill_after_s: float = 3.5
    back_after_turn: int = 4
    back_delay_s: float = 2.0
    blip_s: float = 0.5
    tail_s: float = 12.0
    settle_s: float = 1.0
    server: ServerBehaviour = field(
        default_factory=lambda: ServerBehaviour(
            handshake_delay_ms=100,
            ttfb_ms=150,
            chunk_ms=150,
            # 150 ms of audio every 30 ms: five times faster than real time.
            chunk_interval_ms=30,
        )
    )
    concurrent_scenarios: bool = False

    @classmethod
    def quick(cls) -> FailoverConfig:
        """One run of each scenario, all at once: about 40 s."""
        return cls(runs=1, concurrent_scenarios=True)

    @classmethod
    def tiny(cls) -> FailoverConfig:
        """The smallest run that still exercises every scenario (for tests).

        Four turns 1.5 s apart; the clock is compressed, so the numbers say
        nothing about either service, only that every part of the run works.
        """
        return cls(
            runs=1,
            turns=TURNS[:4],
            turn_gap_s=1.5,
            warmup_s=0.5,
            kill_after_s=1.2,
            back_after_turn=2,
            back_delay_s=0.6,
            blip_s=0.3,
            tail_s=3.0,
            settle_s=0.3,
            concurrent_scenarios=True,
        )

    def back_at_s(self) -> float:
        """When server A comes back in the switch-back scenario, from turn 1's send."""
        return (self.back_after_turn - 1) * self.turn_gap_s + self.back_delay_s
