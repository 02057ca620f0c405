"""Lesson 10 (notebooks/10_ordering.ipynb): duplicates, de-duplication and order.

An acknowledgement that never arrives looks, to the sender, exactly like a
message that never arrived: it resends, and a receiver that does not check
sequence numbers processes the message again. This module holds the runs the
lesson compares and reads their ledgers for the claims it makes:

- scenarios, each short enough for a notebook: :func:`acks_dropped` (a share
  of acknowledgement frames dropped, the playground's knob),
  :func:`busy_restart` (three clients, a server restart mid-stream),
  :func:`away` (the server pushes to a client whose network is down for a
  while) and :func:`several_producers` (three clients on links of different
  latency, with jitter);
- the production design with one mechanism changed (:func:`without_dedup`,
  :func:`memory_sessions`, :func:`with_replay_window`);
- readings of a run: :func:`copies` (extra deliveries, by the time the message
  was produced), :func:`processing_order` and :func:`cross_sender_inversions`
  (what "in order" can mean with several producers), :func:`first_deliveries_after`;
- two figures: :func:`plot_copies` and :func:`plot_interleavings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..contract import Design
from ..designs.production import design
from ..faults import Cut, FaultPlan, FrameFault, Latency, ServerRestart
from ..frames import TextContaining
from ..plots import DELIVERED, FAULT_ALPHA, FAULT_COLORS
from ..production.settings import DEFAULT
from ..run import Run
from ..scenarios import Scenario, get_scenario
from ..workload import Workload, split_id

ACK_FRAMES = TextContaining('"ack"')  # acknowledgement frames, in every design of the lesson
RESTART_AT_S, RESTART_FOR_S = 0.5, 0.3
AWAY_AT_S, AWAY_FOR_S = 0.3, 0.5
SLOW_LINK_S, FAST_LINK_S = 0.04, 0.01  # one way, for several_producers
COPY = "#9467bd"  # extra deliveries


# Scenarios -------------------------------------------------------------------


def acks_dropped(share: float = 0.3) -> Scenario:
    """One client sends 100 messages at 100/s; from 0.2 s to the end the network
    drops ``share`` of the acknowledgement frames (server → client, frames
    containing ``"ack"``). Every dropped acknowledgement is a resend waiting to
    happen."""
    return get_scenario("lost_acknowledgements").with_(
        name=f"{share:.0%} of acknowledgements dropped",
        description=f"100 messages at 100/s; from 0.2 s, {share:.0%} of the acknowledgement "
                    "frames are dropped.",
        workload=Workload(count=100, rate_per_s=100, direction="up"),
        faults=FaultPlan([FrameFault(start_s=0.2, direction="down", action="drop",
                                     probability=share, match=ACK_FRAMES)]),
        settle_s=0.6)


def busy_restart() -> Scenario:
    """Three clients send 80 messages at 100/s each; the server restarts at
    0.5 s (close 1012, its memory lost; ``app.store`` survives) and is back
    0.3 s later."""
    return get_scenario("server_restart").with_(
        name="server restart",
        description=f"3 clients × 80 messages at 100/s; the server restarts at {RESTART_AT_S} s, "
                    f"down {RESTART_FOR_S} s.",
        workload=Workload(count=80, rate_per_s=100, direction="up"),
        faults=FaultPlan([ServerRestart(start_s=RESTART_AT_S, duration_s=RESTART_FOR_S)]),
        settle_s=1.0)  # a client's backoff may keep it away up to about 0.8 s more


def away() -> Scenario:
    """The server pushes 120 messages at 100/s to one client; the network resets
    the connection at 0.3 s and refuses new ones for 0.5 s, so the client comes
    back having missed about 50 messages."""
    return get_scenario("network_interruption").with_(
        name="client away",
        description=f"the server pushes 120 messages at 100/s; the client is cut off "
                    f"{AWAY_AT_S}–{AWAY_AT_S + AWAY_FOR_S:g} s.",
        workload=Workload(count=120, rate_per_s=100, direction="down"),
        faults=FaultPlan([Cut(start_s=AWAY_AT_S, duration_s=AWAY_FOR_S)]),
        settle_s=0.8)


def several_producers(seed: int = 1) -> Scenario:
    """Three clients each send 40 messages at 50/s, all starting together:
    client 0 over a slow link (40 ms ± 20 ms each way), client 1 over a fast
    one (10 ms ± 8 ms), client 2 over loopback. ``seed`` draws the jitter."""
    return get_scenario("network_interruption").with_(
        name="three producers",
        description="3 clients × 40 messages at 50/s; links of 40, 10 and 0 ms with jitter.",
        workload=Workload(count=40, rate_per_s=50, direction="up"),
        faults=FaultPlan([
            Latency(delay_s=SLOW_LINK_S, jitter_s=SLOW_LINK_S / 2, clients=frozenset({0})),
            Latency(delay_s=FAST_LINK_S, jitter_s=FAST_LINK_S * 0.8, clients=frozenset({1})),
        ]),
        clients=3, seed=seed, settle_s=0.5)


# Designs: the production code with one mechanism changed -----------------------


def without_dedup() -> Design:
    """Production with ``deduplicate=False``: acknowledgements and resend, and the
    receiver delivers whatever arrives (at least once)."""
    return design("production without de-duplication", replace(DEFAULT, deduplicate=False))


def memory_sessions() -> Design:
    """Production with ``durable_sessions=False``: the server keeps its sessions
    (the next number it expects from each client) in memory, lost in a restart."""
    return design("production, sessions in memory", replace(DEFAULT, durable_sessions=False))


def with_replay_window(messages: int) -> Design:
    """Production keeping at most ``messages`` server→client messages for a client
    that is away; the welcome tells it how many older ones it missed."""
    return design(f"production, replay window {messages}", replace(DEFAULT, replay_window=messages))


# Readings of a run ----------------------------------------------------------------


def copies(run: Run) -> dict[str, int]:
    """Extra deliveries of each message delivered more than once: id -> copies beyond the first."""
    return {r.msg_id: len(r.deliveries) - 1
            for r in run.ledger.records.values() if len(r.deliveries) > 1}


def produced_s(run: Run, msg_ids: Sequence[str]) -> list[float]:
    """When each of ``msg_ids`` was produced, sorted."""
    return sorted(run.ledger.records[m].produced_s for m in msg_ids)


def processing_order(run: Run) -> list[str]:
    """Message ids in the order the receiving application first processed them."""
    delivered = [(r.deliveries[0], r.msg_id) for r in run.ledger.records.values() if r.deliveries]
    return [msg_id for _, msg_id in sorted(delivered)]


def sender_of(msg_id: str) -> str:
    """``"u3.17"`` → ``"u3"``: the source whose order the ledger checks."""
    parts = split_id(msg_id)
    return parts[0] if parts else msg_id


def cross_sender_inversions(run: Run, *, margin_s: float = 0.005) -> int:
    """Pairs of messages from *different* senders processed in the opposite order
    to the one they were produced in, ``margin_s`` or more apart. Zero would mean
    the receiver saw one global order; within one sender the ledger's
    ``out_of_order`` counts the same thing."""
    order = processing_order(run)
    produced = [run.ledger.records[m].produced_s for m in order]
    senders = [sender_of(m) for m in order]
    count = 0
    for i in range(len(order)):
        for j in range(i + 1, len(order)):
            if senders[i] != senders[j] and produced[i] > produced[j] + margin_s:
                count += 1
    return count


def first_deliveries_after(run: Run, t_s: float) -> int:
    """Messages first delivered after ``t_s`` (seconds from the start of the run)."""
    return sum(1 for r in run.ledger.records.values() if r.deliveries and r.deliveries[0] > t_s)


# Figures ---------------------------------------------------------------------------


def _shade_frame_faults(ax, run: Run, span_s: float) -> None:
    for fault in run.faults:
        if isinstance(fault, FrameFault):
            end = fault.end_s if fault.end_s is not None else span_s
            ax.axvspan(fault.start_s, end, color=FAULT_COLORS["frame fault"],
                       alpha=FAULT_ALPHA * (0.5 + fault.probability / 2), linewidth=0)


def plot_copies(runs: Sequence[Run], labels: Sequence[str], *, bucket_s: float = 0.1) -> Figure:
    """For each run, the messages produced in each ``bucket_s`` (green) and the
    extra copies the receiving application processed of them (purple, drawn
    downwards), with the windows where acknowledgements were dropped shaded
    (darker: all of them, lighter: a share)."""
    span = max(max((r.produced_s for r in run.ledger.records.values()), default=0.0)
               for run in runs) + bucket_s
    edges = np.arange(0.0, span + bucket_s, bucket_s)
    fig, axes = plt.subplots(1, len(runs), sharey=True, figsize=(5.2 * len(runs), 3.4),
                             layout="constrained", squeeze=False)
    for ax, run, label in zip(axes[0], runs, labels):
        records = list(run.ledger.records.values())
        produced = np.histogram([r.produced_s for r in records], edges)[0]
        extra = np.histogram([r.produced_s for r in records for _ in r.deliveries[1:]], edges)[0]
        ax.bar(edges[:-1], produced, width=bucket_s, align="edge", color=DELIVERED,
               edgecolor="white", linewidth=0.4)
        ax.bar(edges[:-1], -extra, width=bucket_s, align="edge", color=COPY,
               edgecolor="white", linewidth=0.4)
        _shade_frame_faults(ax, run, span)
        ax.axhline(0, color="0.3", linewidth=0.8)
        ax.set_xlim(0, span)
        ax.set_xlabel("lab time the message was produced (s)")
        ax.set_title(f"{label}: {int(extra.sum())} extra copies processed", fontsize="medium")
    axes[0][0].set_ylabel(f"messages per {bucket_s * 1000:g} ms\n(copies below the line)")
    axes[0][-1].legend(handles=[Patch(color=DELIVERED, label="produced"),
                                Patch(color=COPY, label="extra copies processed"),
                                Patch(color=FAULT_COLORS["frame fault"], alpha=0.3,
                                      label="acknowledgements dropped")],
                       loc="lower right", fontsize="small")
    return fig


SENDER_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")


def plot_interleavings(runs: Sequence[Run], labels: Sequence[str], *, first: int = 45) -> Figure:
    """The first ``first`` messages each run's server processed, left to right,
    one tile per message coloured by its sender and labelled with its number
    within that sender."""
    fig, ax = plt.subplots(figsize=(11, 0.55 + 0.55 * len(runs)), layout="constrained")
    senders = sorted({sender_of(m) for run in runs for m in processing_order(run)})
    for row, run in enumerate(runs):
        for col, msg_id in enumerate(processing_order(run)[:first]):
            sender, seq = split_id(msg_id) or (msg_id, -1)
            color = SENDER_COLORS[senders.index(sender) % len(SENDER_COLORS)]
            ax.add_patch(plt.Rectangle((col, -row - 0.4), 0.92, 0.8, color=color))
            ax.text(col + 0.46, -row, str(seq), ha="center", va="center", fontsize=6,
                    color="white")
    ax.set_xlim(-0.2, first)
    ax.set_ylim(-len(runs) + 0.45, 0.55)
    ax.set_yticks([-row for row in range(len(runs))], labels)
    ax.set_xlabel("processing order at the server")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.legend(handles=[Patch(color=SENDER_COLORS[i % len(SENDER_COLORS)],
                             label=f"client {s[1:]}") for i, s in enumerate(senders)],
              loc="upper center", bbox_to_anchor=(0.5, 1.0 + 0.9 / len(runs)),
              ncol=len(senders), fontsize="small", frameon=False)
    return fig
