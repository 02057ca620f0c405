"""Lesson 04's experiments: what a reconnecting client still loses, and what
acknowledgements change (notebooks/04_durability.ipynb).

The standard scenarios run on a loopback link with no latency, where almost
nothing is ever "in flight" when a connection dies. This lesson's scenarios
add what makes in-flight messages visible, each a :class:`~wslab.scenarios.Scenario`
a few seconds of lab time:

- :func:`interruption`: a mobile link (50 ms each way) cut for ``outage_s``;
  about ``rate × latency`` messages are on the wire when it dies;
- :func:`busy_restart`: a server whose application is slow for a moment (a
  busy database) restarts while it holds messages it has read but not processed.

:func:`fate` and :func:`produced_s_of_lost` read a run's ledger for the claims the
lesson makes about *which* messages were lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..faults import Cut, FaultPlan, Latency, ServerRestart, SlowConsumer
from ..run import Run
from ..scenarios import Scenario, get_scenario
from ..workload import Workload

LINK_DELAY_S = 0.05  # one way: a mobile network
CUT_AT_S = 0.5
RESTART_AT_S = 0.6


def interruption(outage_s: float = 0.3) -> Scenario:
    """One client sends 200 messages/s for 1 s over a link with 50 ms latency
    each way; the network resets the connection at 0.5 s and refuses new ones
    for ``outage_s``. About 10 messages (200/s × 50 ms) are on the wire at the cut."""
    return get_scenario("network_interruption").with_(
        name="interruption on a mobile link",
        description=f"200 messages/s over a link with {LINK_DELAY_S * 1000:.0f} ms latency each "
                    f"way; the connection is reset at {CUT_AT_S} s, down for {outage_s:g} s.",
        workload=Workload(count=200, rate_per_s=200, direction="up"),
        faults=FaultPlan([Latency(delay_s=LINK_DELAY_S),
                          Cut(start_s=CUT_AT_S, duration_s=outage_s)]),
        # Time to come back: a client whose backoff has grown to a second may
        # wait that long after the network is back (a run ends early once
        # every message is accounted for, so a long settle costs nothing then).
        settle_s=1.5)


def busy_restart() -> Scenario:
    """Three clients send 100 messages/s each for 1.2 s. From 0.2 s the server
    application takes 20 ms per message (it falls behind: about 20 messages per
    client wait, read but not processed); at 0.6 s the server restarts (close
    1012, memory lost) and is back 0.4 s later."""
    return get_scenario("server_restart").with_(
        name="restart of a busy server",
        description="3 clients × 100 messages/s; the server processes one message per 20 ms "
                    f"from 0.2 s and restarts at {RESTART_AT_S} s (down 0.4 s).",
        workload=Workload(count=120, rate_per_s=100, direction="up"),
        # The server is still slow when it restarts: what it holds then is lost with it
        # (slowness ending at the restart instead would race the close).
        faults=FaultPlan([SlowConsumer(side="server", delay_s=0.02, start_s=0.2, duration_s=0.6),
                          ServerRestart(start_s=RESTART_AT_S, duration_s=0.4)]),
        settle_s=0.6)


@dataclass(frozen=True)
class Fate:
    """How a run's messages ended: numbers a sentence can quote."""

    sent: int
    lost: int
    duplicated: int
    resent: int  # message frames the design sent again (its own metric; 0 if it has none)
    lost_produced_s: tuple[float, float] | None  # when the first and last lost message were produced

    def __str__(self) -> str:
        window = ("" if self.lost_produced_s is None else
                  f" (produced {self.lost_produced_s[0]:.2f}–{self.lost_produced_s[1]:.2f} s)")
        return (f"sent {self.sent}, lost {self.lost}{window}, resent {self.resent}, "
                f"processed twice {self.duplicated}")


def fate(run: Run) -> Fate:
    """The counts of :class:`Fate` for ``run``, from its ledger and metrics."""
    summary = run.summary()
    lost = produced_s_of_lost(run)
    return Fate(sent=summary["sent"], lost=summary["lost"], duplicated=summary["duplicated"],
                resent=int(run.metrics.total("wslab_messages_resent_total")),
                lost_produced_s=(min(lost), max(lost)) if lost else None)


def produced_s_of_lost(run: Run) -> list[float]:
    """When each lost message was produced (seconds), sorted: for the claim that
    a reconnecting client loses what was on the wire at the cut, not what the
    application produced while the network was down."""
    return sorted(r.produced_s for r in run.ledger.records.values()
                  if not r.deliveries and r.rejected_s is None)
