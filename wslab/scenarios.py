"""The standard failure scenarios: a workload, a fault plan and a seed each.

Time is scaled down: a run takes a few seconds of lab time, outages last
tenths of a second, in virtual lab time (:mod:`wslab.clock`): the same
result on any machine. Lesson 03 runs its storms with the CPU-charged clock,
where handshakes cost what they cost. Every scenario plans to end ``settle_s``
after its last message was produced and its last fault window closed
(:attr:`Scenario.planned_s`). A run ends there, or ``horizon_s`` later while
messages are still in flight: a message delivered after the planned end is
late, one neither delivered nor refused by the end of the run is lost. The
grader gives every run a generous horizon (:meth:`Scenario.settling`); in
virtual time the wait costs next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .clock import check_clock
from .errors import ConfigError, UnknownNameError
from .faults import (BlackHole, Cut, FaultPlan, FrameFault, Latency, Revoke, ServerRestart,
                     SlowConsumer)
from .frames import TextContaining
from .workload import Workload


# In real time (processes, the bench) the lab's own application runs on the machine's
# CPU, so a busy machine makes it slower: a slow consumer's 4 ms per message takes
# longer. Measured: the Node production pair delivered its last of 500 messages 2.5 s
# after production, past the planned end at 3.0 s, with two CPU hogs and three test
# workers beside it. So in real time a delivery is late only past twice the plan.
REAL_TIME_STRETCH = 2.0


@dataclass(frozen=True)
class Scenario:
    """A named, seeded, repeatable failure scenario."""

    name: str
    description: str
    workload: Workload = field(default_factory=Workload)
    faults: FaultPlan = field(default_factory=FaultPlan)
    clients: int = 1
    seed: int = 0
    settle_s: float = 1.0
    time_limit_s: float = 30.0
    token_ttl_s: float = 3600.0  # how long the lab's tokens live (lesson 09)
    clock: str = "virtual"  # which clock the run keeps (wslab.clock.CLOCKS)
    # Lab seconds past the planned end a run goes on while messages are in flight.
    horizon_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.faults, FaultPlan):
            object.__setattr__(self, "faults", FaultPlan(self.faults))
        if not isinstance(self.clients, int) or not 1 <= self.clients <= 1000:
            raise ConfigError(f"clients must be an integer from 1 to 1000, got {self.clients!r}")
        if not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.settle_s, (int, float)) or self.settle_s < 0:
            raise ConfigError(f"settle_s must be seconds >= 0, got {self.settle_s!r}")
        if not isinstance(self.token_ttl_s, (int, float)) or self.token_ttl_s <= 0:
            raise ConfigError(f"token_ttl_s must be seconds > 0, got {self.token_ttl_s!r}")
        if not isinstance(self.horizon_s, (int, float)) or self.horizon_s < 0:
            raise ConfigError(f"horizon_s must be seconds >= 0, got {self.horizon_s!r}")
        check_clock(self.clock)
        if not isinstance(self.time_limit_s, (int, float)) or self.time_limit_s <= 0:
            raise ConfigError(f"time_limit_s must be seconds > 0, got {self.time_limit_s!r}")

    def with_(self, **changes) -> "Scenario":
        """A copy with some fields changed (``workload``, ``seed``, ``clients``...)."""
        return replace(self, **changes)

    @property
    def planned_s(self) -> float:
        """When the run is planned to end: a message delivered later is late (in
        real time, only after :attr:`late_after_s`)."""
        return max(self.workload.production_s, self.faults.last_end_s) + self.settle_s

    @property
    def late_after_s(self) -> float:
        """A message first delivered after this is late: the planned end, or, in
        real time, the planned end times :data:`REAL_TIME_STRETCH`."""
        return self.planned_s * (REAL_TIME_STRETCH if self.clock == "real" else 1.0)

    @property
    def horizon_end_s(self) -> float:
        """When the run ends at the latest: a message not delivered by then is lost."""
        return self.planned_s + self.horizon_s

    def settling(self, horizon_s: float) -> "Scenario":
        """A copy that goes on up to ``horizon_s`` past its planned end while messages
        are in flight, its hard time limit raised to leave room for that."""
        longer = self.with_(horizon_s=horizon_s)
        return longer.with_(time_limit_s=max(self.time_limit_s, longer.horizon_end_s + 10.0))


def _scenarios() -> dict[str, Scenario]:
    # An outage's flavours take turns from its start (FaultPlan.admission). A flavour that a
    # reconnect loop often fails to catch comes first, where a prompt retry meets it.
    up = Workload(count=300, rate_per_s=100, direction="up")
    return {s.name: s for s in [
        Scenario(
            "network_interruption",
            "The network drops every connection mid-stream (reset) for 0.4 s; meanwhile a new "
            "connection is met, 0.1 s each in turn, by a reset during the handshake "
            "(InvalidMessage) and by silence (accepted, never answered: only open_timeout ends "
            "the wait).",
            up, FaultPlan([Cut(start_s=1.0, duration_s=0.4,
                               flavours=("reset_in_handshake", "silent"))]), seed=1,
            # A silent attempt waits out open_timeout (10 s by default in websockets):
            # the run settles long enough to see such a client back (free in virtual time).
            settle_s=12.0),
        Scenario(
            "server_restart",
            "The server restarts mid-stream (close 1012, memory lost) and is down for 0.5 s; "
            "meanwhile a new connection is, 0.1 s each in turn, answered 503 by the load "
            "balancer in front (InvalidStatus), refused (nothing listens: OSError), or reset "
            "during the handshake (InvalidMessage).",
            up, FaultPlan([ServerRestart(start_s=1.0, duration_s=0.5,
                                         flavours=("http_503", "refused", "reset_in_handshake"))]),
            clients=3, seed=2),
        Scenario(
            "slow_consumer",
            "The server pushes 1000 messages/s for 0.5 s; the client application handles "
            "one per 4 ms (250/s).",
            Workload(count=500, rate_per_s=1000, direction="down", size_bytes=1024),
            FaultPlan([SlowConsumer(side="client", delay_s=0.004)]), seed=3, settle_s=2.5),
        Scenario(
            "queue_overflow",
            "The client produces 1000 messages/s for 0.5 s; the server application processes "
            "one per 4 ms (250/s).",
            Workload(count=500, rate_per_s=1000, direction="up", size_bytes=1024),
            FaultPlan([SlowConsumer(side="server", delay_s=0.004)]), seed=4, settle_s=2.5),
        # The flow is busy (50 messages/s) when it dies: a middlebox losing its state, not
        # idle expiry (that is IdleTimeout, measured in lesson 06). The name is the grader's.
        Scenario(
            "idle_black_hole",
            "A middlebox loses the flow's state at 0.5 s (a NAT reboot or failover, a route "
            "change): bytes vanish both ways, no socket closes.",
            Workload(count=100, rate_per_s=50, direction="up"),
            FaultPlan([BlackHole(start_s=0.5, duration_s=0.5)]), seed=5),
        Scenario(
            "latency_spike",
            "Latency jumps to 150 ms (± 30 ms) each way for 1 s; echoes measure it. A keepalive "
            "timeout shorter than the round trip (about 0.3 s) sees a dead peer that is not.",
            Workload(count=200, rate_per_s=100, direction="up", echo=True),
            FaultPlan([Latency(start_s=0.6, duration_s=1.0, delay_s=0.15, jitter_s=0.03)]), seed=6),
        Scenario(
            "lost_acknowledgements",
            "Every acknowledgement frame from the server is dropped for 0.6 s "
            "(frames containing '\"ack\"'), then half of them until the end.",
            Workload(count=200, rate_per_s=100, direction="up"),
            FaultPlan([FrameFault(start_s=0.5, duration_s=0.6, direction="down", action="drop",
                                  match=TextContaining('"ack"')),
                       FrameFault(start_s=1.1, direction="down", action="drop", probability=0.5,
                                  match=TextContaining('"ack"'))]), seed=7),
        Scenario(
            "shutdown_in_flight",
            "The server shuts down (close 1001) while its slow worker holds about 40 "
            "messages, and is back 0.5 s later; meanwhile a new connection is reset during "
            "the handshake (InvalidMessage).",
            Workload(count=200, rate_per_s=100, direction="up"),
            FaultPlan([SlowConsumer(side="server", delay_s=0.02, duration_s=1.0),
                       ServerRestart(start_s=0.8, duration_s=0.5, close_code=1001)]),
            seed=8, settle_s=1.5),
        Scenario(
            "token_expiry",
            "Tokens live 0.6 s, so clients must refresh mid-stream; client 1's session is "
            "revoked at 1.2 s (its later messages can only be refused).",
            Workload(count=200, rate_per_s=100, direction="up"),
            FaultPlan([Revoke(start_s=1.2, clients=frozenset({1}))]), clients=2, seed=10,
            token_ttl_s=0.6),
        Scenario(
            "reconnect_storm",
            "200 clients; the server restarts and every client must come back at once (while "
            "it is down, a new connection is reset during the handshake: InvalidMessage).",
            Workload(count=10, rate_per_s=5, direction="up"),
            FaultPlan([ServerRestart(start_s=0.8, duration_s=0.4)]), clients=200, seed=9,
            settle_s=1.5),
    ]}


SCENARIOS: dict[str, Scenario] = _scenarios()


def get_scenario(scenario: "str | Scenario") -> Scenario:
    """A scenario by name (see :data:`SCENARIOS`), or the scenario itself."""
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, str) and scenario in SCENARIOS:
        return SCENARIOS[scenario]
    raise UnknownNameError("scenario", str(scenario), list(SCENARIOS))
