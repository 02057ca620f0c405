"""The ledger: every message's fate, and the checkers that read it.

Pure bookkeeping, no I/O and no clock: the lab calls :meth:`Ledger.produced`
when an application creates a message (before any fault can touch it),
:meth:`Ledger.accepted` when the design takes it from the application,
:meth:`Ledger.rejected` when the design refuses it explicitly, and
:meth:`Ledger.delivered` each time the receiving application processes a
message. Times are seconds from the start of the run. The one thing it tells
the outside is when nothing is outstanding any more (``on_accounted_for``), so
that the lab can end a run without polling.

From that record :meth:`Ledger.summary` computes, in the spirit of Jepsen's
total-queue checker:

- ``lost``: produced, never delivered, never explicitly rejected;
- ``duplicated``: deliveries beyond the first of the same id;
- ``unexpected``: deliveries of ids that were never produced;
- ``out_of_order``: first deliveries of a message after a later message of
  the same source (client and stream) had already been delivered;
- ``peak_queue``: the most messages at once that a design had accepted and
  not yet delivered (wherever they were: a queue, a buffer, the network);
- ``late``: messages first delivered after ``late_after_s`` (the planned end of
  the run), with ``late_s``, the p50 / max of their production-to-delivery time
  (None when nothing was late);
- ``peak_backlog``: the most messages at once produced and not yet processed,
  split at that moment into those the design held (``peak_backlog_in_design``)
  and those it had not taken yet (``peak_backlog_not_taken``): for a design
  that pulls its messages, what waits to be pulled is its buffer too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .workload import split_id


@dataclass(slots=True)
class MessageRecord:
    """What happened to one message id (slots: a 1,000-client run keeps 300,000)."""

    msg_id: str
    produced_s: float
    accepted_s: float | None = None
    rejected_s: float | None = None
    reject_reason: str | None = None
    deliveries: list[float] = field(default_factory=list)


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation; nan when empty."""
    if not sorted_values:
        return math.nan
    k = (len(sorted_values) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


class Ledger:
    """Every message id with its production, acceptance and deliveries."""

    def __init__(self, on_accounted_for: Callable[[], None] | None = None) -> None:
        self.records: dict[str, MessageRecord] = {}
        self.unexpected: list[tuple[float, str | None]] = []
        self._first_deliveries: list[tuple[float, str]] = []
        self._outstanding = 0
        # Called, synchronously, each time the last outstanding message is delivered or rejected.
        self.on_accounted_for = on_accounted_for

    # Recording ------------------------------------------------------------

    def produced(self, msg_id: str, t: float) -> None:
        if msg_id in self.records:
            raise ValueError(f"message id {msg_id!r} produced twice")
        self.records[msg_id] = MessageRecord(msg_id, t)
        self._outstanding += 1

    def accepted(self, msg_id: str, t: float) -> None:
        record = self.records[msg_id]
        if record.accepted_s is None:
            record.accepted_s = t

    def rejected(self, msg_id: str, t: float, reason: str) -> None:
        record = self.records[msg_id]
        if record.rejected_s is None:
            if not record.deliveries:
                self._settle_one()
            record.rejected_s, record.reject_reason = t, reason

    def delivered(self, msg_id: str | None, t: float) -> None:
        record = self.records.get(msg_id) if msg_id is not None else None
        if record is None:
            self.unexpected.append((t, msg_id))
            return
        first = not record.deliveries
        if first:
            self._first_deliveries.append((t, record.msg_id))  # one string per id, not two
        record.deliveries.append(t)
        if first and record.rejected_s is None:
            self._settle_one()

    def _settle_one(self) -> None:
        self._outstanding -= 1
        if not self._outstanding and self.on_accounted_for is not None:
            self.on_accounted_for()

    # Reading --------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Messages produced and neither delivered nor rejected yet."""
        return self._outstanding

    def lost_ids(self) -> list[str]:
        return [
            r.msg_id for r in self.records.values()
            if not r.deliveries and r.rejected_s is None
        ]

    def latencies_s(self) -> list[float]:
        """First-delivery latency of every delivered message, sorted."""
        return sorted(r.deliveries[0] - r.produced_s for r in self.records.values() if r.deliveries)

    def out_of_order_ids(self) -> list[str]:
        """First deliveries that came after a later message of the same source,
        in arrival order (the order :meth:`delivered` was called). Not sorted by
        time: deliveries at the same instant (a virtual clock) would then be
        ordered by id string, and "u0.10" < "u0.9"."""
        highest: dict[str, int] = {}
        late: list[str] = []
        for _, msg_id in self._first_deliveries:
            parts = split_id(msg_id)
            if parts is None:
                continue
            source, seq = parts
            if seq < highest.get(source, -1):
                late.append(msg_id)
            else:
                highest[source] = seq
        return late

    def backlog_peak(self, include: Callable[[str], bool] | None = None) -> tuple[int, int]:
        """The most messages at once produced and neither processed nor refused, as
        ``(held by the design, not taken by it yet)`` at that moment; only the ids
        for which ``include(msg_id)`` is true, when given. A message never
        processed waits until the end of the record."""
        steps: list[tuple[float, int, int, int]] = []  # (t, order, d_held, d_not_taken)
        for r in self.records.values():
            if include is not None and not include(r.msg_id):
                continue
            end = r.deliveries[0] if r.deliveries else r.rejected_s
            taken = r.accepted_s if r.accepted_s is not None and (end is None or r.accepted_s < end) else end
            if taken is None or taken > r.produced_s:
                steps.append((r.produced_s, 1, 0, +1))
                if taken is not None:
                    steps.append((taken, 0, 0, -1))
            if taken is not None and r.accepted_s == taken and (end is None or end > taken):
                steps.append((taken, 1, +1, 0))
                if end is not None:
                    steps.append((end, 0, -1, 0))
        # At the same instant departures (order 0) before arrivals: a zero-length
        # overlap is not a backlog.
        steps.sort(key=lambda s: (s[0], s[1]))
        held = not_taken = 0
        peak = (0, 0)
        for _, _, d_held, d_not_taken in steps:
            held, not_taken = held + d_held, not_taken + d_not_taken
            if held + not_taken > sum(peak):
                peak = (held, not_taken)
        return peak

    def late(self, after_s: float) -> list[tuple[str, float]]:
        """``(msg_id, production-to-first-delivery seconds)`` of every message first
        delivered after ``after_s``, by delay."""
        return sorted(((r.msg_id, r.deliveries[0] - r.produced_s) for r in self.records.values()
                       if r.deliveries and r.deliveries[0] > after_s), key=lambda x: x[1])

    def queue_series(self, include: Callable[[str], bool] | None = None
                     ) -> tuple[list[float], list[int]]:
        """Messages accepted and not yet delivered (nor rejected), as a step series;
        only the ids for which ``include(msg_id)`` is true, when given."""
        steps: list[tuple[float, int]] = []
        for r in self.records.values():
            if include is not None and not include(r.msg_id):
                continue
            if r.accepted_s is None:
                continue
            end = r.deliveries[0] if r.deliveries else r.rejected_s
            if end is not None and end <= r.accepted_s:
                continue  # handed over and delivered at the same instant: never queued
            steps.append((r.accepted_s, +1))
            if end is not None:
                steps.append((end, -1))
        # By time, and at the same instant departures (-1) before arrivals (+1):
        # a zero-length overlap is not a queue. Sorting on the step, never on an
        # id, so arrival order within an instant does not matter here.
        steps.sort(key=lambda s: (s[0], s[1]))
        times, depth, level = [0.0], [0], 0
        for t, step in steps:
            level += step
            times.append(t)
            depth.append(level)
        return times, depth

    def summary(self, late_after_s: float = math.inf) -> dict:
        """The record as plain numbers (see the module docstring); a message first
        delivered after ``late_after_s`` is late."""
        records = self.records.values()
        late = [delay for _, delay in self.late(late_after_s)]
        held, not_taken = self.backlog_peak()
        latencies = self.latencies_s()
        delivered = sum(1 for r in records if r.deliveries)
        return {
            "sent": len(self.records),
            "delivered": delivered,
            "lost": len(self.lost_ids()),
            "rejected": sum(1 for r in records if r.rejected_s is not None and not r.deliveries),
            "duplicated": sum(max(0, len(r.deliveries) - 1) for r in records),
            "unexpected": len(self.unexpected),
            "out_of_order": len(self.out_of_order_ids()),
            "latency_ms": {
                name: round(percentile(latencies, q) * 1000, 2)
                for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
            },
            "peak_queue": max(self.queue_series()[1]),
            "late": len(late),
            # None when nothing was late (never nan: a summary equals itself)
            "late_s": {name: round(percentile(late, q), 3) if late else None
                       for name, q in (("p50", 50), ("max", 100))},
            "peak_backlog": held + not_taken,
            "peak_backlog_in_design": held,
            "peak_backlog_not_taken": not_taken,
        }

