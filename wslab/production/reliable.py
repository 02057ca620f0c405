"""At-least-once on the wire, exactly-once and in order at the application (lessons 04 and 10).

Pure state, no I/O: the :class:`OutboundWindow` of a sender and the
:class:`InboundSequence` of a receiver. The protocol is go-back-N with
cumulative acknowledgements:

- the sender numbers messages 0, 1, 2...; keeps each until acknowledged;
  never has more than ``window`` of them unacknowledged on the wire (this is
  the credit that bounds the receiver's queue, so the receiver always keeps
  reading its socket and its pings are always answered); resends everything
  unacknowledged, in order, after a reconnection or when no acknowledgement
  came for a while;
- the receiver delivers only the next expected number; an older number is a
  duplicate (dropped, acknowledged again), a newer one is a gap (dropped: the
  sender will go back); its acknowledgement ``n`` means "everything up to n".

Guarantees: a message added to the window is delivered to the receiving
application exactly once and in order, as long as the window and the
receiver's next expected number survive (the server keeps both in its
durable store, so they survive a restart).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class OutboundWindow:
    """Messages kept until acknowledged; at most ``capacity``, ``window`` in flight."""

    capacity: int = 64
    window: int = 16
    next_seq: int = 0
    unacked: deque[tuple[int, str]] = field(default_factory=deque)
    _send_index: int = 0  # index in ``unacked`` of the next message to (re)send
    _highest_sent: int = -1

    def __post_init__(self) -> None:
        if not 1 <= self.window <= self.capacity:
            raise ValueError(f"need 1 <= window <= capacity, got {self.window}, {self.capacity}")

    @property
    def full(self) -> bool:
        return len(self.unacked) >= self.capacity

    @property
    def in_flight(self) -> int:
        return self._send_index

    def add(self, body: str, *, force: bool = False) -> int:
        """Keep ``body`` until acknowledged; return its sequence number.

        ``force``: keep it even beyond capacity. For a message already taken
        from the application, keeping it is the only way not to lose it; the
        callers wait for room *before* taking one, so this overshoots by little.
        """
        if self.full and not force:
            raise OverflowError("the outbound window is full")
        seq = self.next_seq
        self.next_seq += 1
        self.unacked.append((seq, body))
        return seq

    def acknowledge(self, upto: int) -> int:
        """Everything up to ``upto`` arrived; forget it. Returns how many.

        An acknowledgement of a number never sent is ignored beyond what was sent.
        """
        upto = min(upto, self._highest_sent)
        removed = 0
        while self.unacked and self.unacked[0][0] <= upto:
            self.unacked.popleft()
            removed += 1
        self._send_index = max(0, self._send_index - removed)
        return removed

    def drop_oldest_unsent(self) -> str | None:
        """Drop the oldest message never put on the wire, to make room (the
        drop-oldest policy, for data a newer message supersedes). Later unsent
        messages are renumbered so the receiver sees no gap. Returns the body
        dropped, or None when everything kept was already sent once."""
        for index, (seq, body) in enumerate(self.unacked):
            if seq > self._highest_sent:
                del self.unacked[index]
                for later in range(index, len(self.unacked)):
                    later_seq, later_body = self.unacked[later]
                    self.unacked[later] = (later_seq - 1, later_body)
                self.next_seq -= 1
                if index < self._send_index:
                    self._send_index -= 1
                return body
        return None

    def clear(self) -> list[str]:
        """Give up on everything kept; return the bodies (to report them)."""
        bodies = [body for _, body in self.unacked]
        self.unacked.clear()
        self._send_index = 0
        return bodies

    def next_to_send(self) -> tuple[int, str] | None:
        """The next message to put on the wire, if the window allows one."""
        if self._send_index < len(self.unacked) and self._send_index < self.window:
            item = self.unacked[self._send_index]
            self._send_index += 1
            self._highest_sent = max(self._highest_sent, item[0])
            return item
        return None

    def peek(self) -> tuple[int, str] | None:
        """What :meth:`next_to_send` would return, without taking it."""
        if self._send_index < len(self.unacked) and self._send_index < self.window:
            return self.unacked[self._send_index]
        return None

    def rewind(self) -> int:
        """Go back: resend everything unacknowledged, from the oldest. Returns how many."""
        resent, self._send_index = self._send_index, 0
        return resent


@dataclass
class InboundSequence:
    """The receiver's side: which number comes next."""

    next_expected: int = 0

    def classify(self, seq: int) -> str:
        """``"deliver"``, ``"duplicate"`` (already delivered) or ``"gap"`` (too early)."""
        if seq == self.next_expected:
            return "deliver"
        return "duplicate" if seq < self.next_expected else "gap"

    def delivered(self, seq: int, *, force: bool = False) -> None:
        """``seq`` was delivered. ``force``: without de-duplication, whatever came."""
        if force:
            self.next_expected = max(self.next_expected, seq + 1)
            return
        assert seq == self.next_expected, (seq, self.next_expected)
        self.next_expected += 1

    @property
    def ack(self) -> int:
        """The cumulative acknowledgement to send: the last number delivered."""
        return self.next_expected - 1
