"""Lesson 04's exercise: the outbound buffer that makes resending possible.

The learner writes a class with three methods::

    buffer = OutboundBuffer()
    seq = buffer.add(message)   # keep it; a new, larger number each time
    buffer.ack(upto_seq)        # the peer has everything up to upto_seq: forget those
    buffer.to_resend()          # every message not acknowledged, as (seq, message), oldest first

:func:`check_outbound_buffer` checks it in two stages and answers with a
:class:`~wslab.exercises.checking.Verdict`:

1. **scripted moments of a connection** (:func:`check_outbound_buffer_offline`):
   messages sent, a cumulative acknowledgement, a disconnection, a second
   disconnection before the resent copies were acknowledged, a stale
   acknowledgement. The first difference from what must be kept is the hint:
   which message would be lost (or sent again for ever), and why;
2. **a real run in the lab**: a client that keeps every message in the
   learner's buffer, sends ``{"seq", "body"}`` frames, and after each
   reconnection sends ``to_resend()`` first, against a server that acknowledges
   each message after processing it, through the network interruption of
   :func:`wslab.experiments.durability.interruption`. A lost message is named
   with its sequence number and what ``to_resend()`` returned instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ..contract import Design
from ..scenarios import Scenario
from ..workload import message_id
from .checking import Verdict, call_safely

RECONNECT_DELAY_S = 0.05
CLOSE_TIMEOUT_S = 0.1


# Stage 1: scripted moments -------------------------------------------------


class _Script:
    """Calls the learner's buffer; the first problem found stops the script."""

    def __init__(self, buffer_class: Callable[[], Any]) -> None:
        self.buffer_class = buffer_class
        self.messages: dict[int, str] = {}  # seq -> message, as add() numbered them
        self.returned: list[int] = []  # the seqs the previous to_resend() returned

    def new(self) -> Any:
        buffer, error = call_safely(self.buffer_class)
        if error:
            raise _Problem(f"creating your buffer: {error}")
        self.messages, self.returned, self.previous = {}, [], []
        return buffer

    def add(self, buffer: Any, message: str) -> int:
        seq, error = call_safely(buffer.add, message)
        if error:
            raise _Problem(f"add({message!r}): {error}")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise _Problem(f"add() must return the message's sequence number (an int); "
                           f"add({message!r}) returned {seq!r}")
        if seq in self.messages:
            raise _Problem(f"add({message!r}) returned {seq}, the number of {self.messages[seq]!r} "
                           "already: sequence numbers are never reused, or an acknowledgement "
                           "of one message would remove another (count with a counter, not len())")
        if self.messages and seq < max(self.messages):
            raise _Problem(f"add({message!r}) returned {seq}, smaller than {max(self.messages)}: "
                           "numbers must grow in the order messages are added, since an "
                           "acknowledgement n covers everything numbered up to n")
        self.messages[seq] = message
        return seq

    def ack(self, buffer: Any, upto: int) -> None:
        _, error = call_safely(buffer.ack, upto)
        if error:
            raise _Problem(f"ack({upto}): {error}")

    def to_resend(self, buffer: Any, when: str) -> list[tuple[int, str]]:
        got, error = call_safely(buffer.to_resend)
        if error:
            raise _Problem(f"to_resend() {when}: {error}")
        try:
            items = list(got)
        except TypeError:
            raise _Problem(f"to_resend() must return a list of (seq, message) pairs; "
                           f"{when} it returned {got!r}") from None
        for item in items:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise _Problem(f"to_resend() must return (seq, message) pairs, so that the resent "
                               f"frame carries its number; {when} it returned an item {item!r}")
        pairs = [(item[0], item[1]) for item in items]
        self.previous, self.returned = self.returned, [seq for seq, _ in pairs]
        return pairs

    def expect(self, got: list[tuple[int, str]], kept: list[int], when: str) -> None:
        """``got`` must be exactly the messages numbered ``kept``, oldest first."""
        wanted = [(seq, self.messages[seq]) for seq in kept]
        if got == wanted:
            return
        got_seqs = [seq for seq, _ in got]
        missing = [seq for seq in kept if seq not in got_seqs]
        extra = [seq for seq in got_seqs if seq not in kept]
        if missing:
            first = missing[0]
            if first in self.previous:
                raise _Problem(
                    f"{when}, to_resend() left out {self.messages[first]!r} (seq {first}): the "
                    f"previous call returned it, and your buffer forgot it then. Resent copies "
                    f"can be lost on the wire too; only an acknowledgement may remove a message, "
                    f"so to_resend() must leave the buffer as it was")
            raise _Problem(
                f"{when}, to_resend() left out {self.messages[first]!r} (seq {first}), which "
                f"the peer never acknowledged: if the connection drops now, it is lost "
                f"(expected seq {_span(kept)}, got {_span(got_seqs)})")
        if extra:
            first = extra[0]
            if first in self.messages:
                raise _Problem(
                    f"{when}, to_resend() still returned {self.messages[first]!r} (seq {first}), "
                    f"already acknowledged: an acknowledgement n is cumulative (everything up "
                    f"to n arrived); kept, it would be sent again after every reconnection and "
                    f"never forgotten (expected seq {_span(kept)}, got {_span(got_seqs)})")
            raise _Problem(f"{when}, to_resend() returned seq {first}, which add() never gave out")
        twice = sorted({seq for seq in got_seqs if got_seqs.count(seq) > 1})
        if twice:
            raise _Problem(f"{when}, to_resend() returned seq {_span(twice)} more than once: "
                           "each copy would be processed again")
        if sorted(got_seqs) == got_seqs:
            raise _Problem(f"{when}, to_resend() returned the right numbers with other messages: "
                           f"expected {wanted!r}, got {got!r}")
        raise _Problem(f"{when}, to_resend() returned seq {_span(got_seqs)}: resend oldest first "
                       f"({_span(kept)}), or the server processes them out of order")


class _Problem(Exception):
    """What the script found, worded for the learner."""


def _span(seqs: list[int]) -> str:
    if not seqs:
        return "none"
    if seqs == list(range(seqs[0], seqs[0] + len(seqs))) and len(seqs) > 2:
        return f"{seqs[0]}–{seqs[-1]}"
    return ", ".join(str(s) for s in seqs)


def _moments(script: _Script) -> None:
    """The scripted moments, in order; raises :class:`_Problem` at the first difference."""
    buffer = script.new()
    if script.to_resend(buffer, "on a new buffer"):
        raise _Problem("a new buffer has nothing to resend, but to_resend() returned something")
    seqs = [script.add(buffer, f"m{i}") for i in range(6)]  # six messages sent

    # The connection drops before any acknowledgement: everything comes back.
    script.expect(script.to_resend(buffer, "after a disconnection with nothing acknowledged"),
                  seqs, "after a disconnection with nothing acknowledged")

    # One cumulative acknowledgement for the first three.
    script.ack(buffer, seqs[2])
    when = f"after ack({seqs[2]}) (m0–m2 arrived)"
    script.expect(script.to_resend(buffer, when), seqs[3:], when)

    # The resent copies are lost too: a second disconnection before their
    # acknowledgement. to_resend() must not have forgotten them.
    when = "after a second disconnection (the resent copies were lost again)"
    script.expect(script.to_resend(buffer, when), seqs[3:], when)

    # A stale acknowledgement (it was delayed on the wire) changes nothing.
    script.ack(buffer, seqs[1])
    when = f"after a late ack({seqs[1]}) that arrived after ack({seqs[2]})"
    script.expect(script.to_resend(buffer, when), seqs[3:], when)

    # New messages keep new numbers, after the acknowledged ones.
    seqs += [script.add(buffer, f"m{i}") for i in range(6, 8)]
    script.ack(buffer, seqs[4])
    when = f"after adding m6, m7 and ack({seqs[4]})"
    script.expect(script.to_resend(buffer, when), seqs[5:], when)

    # Everything acknowledged: nothing left.
    script.ack(buffer, seqs[-1])
    when = f"after ack({seqs[-1]}) (everything arrived)"
    script.expect(script.to_resend(buffer, when), [], when)


def check_outbound_buffer_offline(buffer_class: Callable[[], Any]) -> Verdict:
    """Stage 1 only (no network, instant): the scripted moments of a connection."""
    try:
        _moments(_Script(buffer_class))
    except _Problem as problem:
        return Verdict(False, str(problem))
    return Verdict(True, "your buffer keeps exactly the unacknowledged messages, oldest first, "
                         "through acknowledgements, disconnections and a late acknowledgement")


# Stage 2: a real run -------------------------------------------------------


@dataclass
class LabRecord:
    """What the exercise design saw of the learner's buffer during a run."""

    seq_of: dict[str, int] = field(default_factory=dict)  # message id -> seq from add()
    resends: list[tuple[float, list[int]]] = field(default_factory=list)  # (t, seqs) per connection

    @property
    def resent(self) -> int:
        """Messages to_resend() gave on the connections after the first (those in
        flight at a cut and those produced while the network was down)."""
        return sum(len(seqs) for _, seqs in self.resends[1:])


def exercise_design(buffer_class: Callable[[], Any], record: LabRecord | None = None) -> Design:
    """A design whose client keeps every message in a ``buffer_class()`` and,
    after each (re)connection, sends ``to_resend()`` before anything new; its
    server acknowledges each message after processing it. ``record`` collects
    what the buffer did, for the checker's hints."""
    record = record if record is not None else LabRecord()

    async def handler(websocket, app) -> None:
        try:
            async for frame in websocket:
                message = json.loads(frame)
                await app.process(message["body"])
                await websocket.send(json.dumps({"ack": message["seq"]}))  # after processing
        except ConnectionClosed:
            pass

    async def client(app) -> None:
        buffer = buffer_class()
        fresh: asyncio.Queue[tuple[int, str]] = asyncio.Queue()

        async def take() -> None:
            async for message in app.outgoing():
                seq = buffer.add(message)
                record.seq_of[message_id(message) or message] = seq
                fresh.put_nowait((seq, message))

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(take())
            while True:
                try:
                    async with app.connect(close_timeout=CLOSE_TIMEOUT_S) as websocket:
                        await _serve(websocket, app, buffer, fresh, record)
                except (ConnectionClosed, InvalidHandshake, OSError):
                    pass
                await asyncio.sleep(RECONNECT_DELAY_S)

    return Design(f"outbound buffer ({getattr(buffer_class, '__name__', 'yours')})",
                  handler=handler, client=client, serve_options={"close_timeout": CLOSE_TIMEOUT_S},
                  description="Lesson 04's exercise: your buffer decides what is resent.")


async def _serve(websocket, app, buffer, fresh: asyncio.Queue, record: LabRecord) -> None:
    resend = [(seq, message) for seq, message in buffer.to_resend()]
    record.resends.append((round(app.now(), 3), [seq for seq, _ in resend]))

    async def send() -> None:
        last = -1
        for seq, message in resend:
            await websocket.send(json.dumps({"seq": seq, "body": message}))
            last = max(last, seq)
        while True:
            seq, message = await fresh.get()
            if seq > last:  # not already resent above
                await websocket.send(json.dumps({"seq": seq, "body": message}))
                last = seq

    async def read_acks() -> None:
        async for frame in websocket:
            buffer.ack(json.loads(frame)["ack"])

    sender, reader = asyncio.create_task(send()), asyncio.create_task(read_acks())
    try:
        await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sender.cancel()
        reader.cancel()
        results = await asyncio.gather(sender, reader, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, ConnectionClosed):
            raise result


async def check_outbound_buffer(buffer_class: Callable[[], Any], *,
                                scenario: Scenario | None = None) -> Verdict:
    """Lesson 04: the scripted moments, then a real run through a network
    interruption (``scenario``, by default the lesson's). Passes when no
    message is lost."""
    offline = check_outbound_buffer_offline(buffer_class)
    if not offline:
        return offline
    in_lab = await check_outbound_buffer_in_lab(buffer_class, scenario=scenario)
    if not in_lab:
        return in_lab
    return Verdict(True, f"{offline.message}; {in_lab.message}")


async def check_outbound_buffer_in_lab(buffer_class: Callable[[], Any], *,
                                       scenario: Scenario | None = None) -> Verdict:
    """Stage 2 only: a real run of :func:`exercise_design` with ``buffer_class``."""
    from ..experiments.durability import interruption
    from ..lab import arun

    record = LabRecord()
    run = await arun(exercise_design(buffer_class, record), scenario or interruption())
    summary = run.summary()
    if run.errors:
        first = run.errors[0]
        return Verdict(False, f"in the lab, {first.where} failed at {first.t_s:.2f} s: {first.error}")
    lost = run.ledger.lost_ids()
    if lost:
        first = lost[0]
        seq = record.seq_of.get(first)
        if seq is None:
            return Verdict(False, f"in the lab, message {first} was lost before add() saw it")
        said = "; ".join(f"at {t:.2f} s it returned seq {_span(seqs)}"
                         for t, seqs in record.resends[1:])
        return Verdict(False, f"in the lab, {len(lost)} message(s) were lost, the first {first} "
                              f"(seq {seq}): to_resend() never returned it after a reconnection"
                              + (f" ({said})" if said else " (the client never reconnected)"))
    reconnections = len(record.resends) - 1
    return Verdict(True, f"in the lab, {summary['sent']} messages through a cut, "
                         f"{reconnections} reconnection(s) with {record.resent} message(s) "
                         f"from to_resend(), 0 lost")
