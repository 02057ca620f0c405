"""Lesson 10's exercise: the receiver's de-duplication.

The learner writes a class with one method::

    receiver = Deduplicator()
    to_deliver, ack = receiver.receive(session, seq, body)

``receive`` gets every message frame as it arrives, resent copies included:
the sender's ``session`` (kept across reconnections), the message's number
``seq`` within that session (0, 1, 2...) and its ``body``. It returns the
bodies to hand to the application now, in order (a list, often empty or of
one), and the cumulative acknowledgement to send back: the last number of that
session delivered with nothing missing before it (-1 before the first).

:func:`check_deduplication` checks it in two stages and answers with a
:class:`~wslab.exercises.checking.Verdict`:

1. **scripted frames** (:func:`check_deduplication_offline`): first messages,
   a copy resent after a lost acknowledgement, a second session, an old copy,
   a message that arrives before the one ahead of it, then both resent. After
   every call the checker compares what was delivered with the only correct
   record (each number once, in order, per session) and the acknowledgement
   with the last number delivered in order. Holding an early message until
   the gap is filled is allowed; delivering it early is not. The first
   difference is the hint: which body, which number, which session, and why;
2. **a real run in the lab** (:func:`check_deduplication_in_lab`): two clients
   send through :func:`lab_scenario` (acknowledgements dropped, then half of
   them; a few message frames dropped), resending everything unacknowledged
   after 0.15 s without progress (go-back-N). The server calls the learner's
   ``receive`` for every frame and processes what it returns. A message
   processed twice, never processed or processed out of order is named with
   its session and number.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ..contract import Design
from ..faults import FaultPlan, FrameFault
from ..frames import TextContaining
from ..scenarios import Scenario, get_scenario
from ..workload import Workload, message_id
from .checking import Verdict, call_safely

ACK_TIMEOUT_S = 0.15  # the exercise client goes back after this long without progress
CLOSE_TIMEOUT_S = 0.1
RECONNECT_DELAY_S = 0.05


class _Problem(Exception):
    """What the checker found, worded for the learner."""


# Stage 1: scripted frames ------------------------------------------------------

A, B = "session-a", "session-b"

# (session, seq, body, what this frame is)
SCRIPT: list[tuple[str, int, str, str]] = [
    (A, 0, "a0", "the first message of session-a"),
    (A, 1, "a1", "the next one"),
    (A, 1, "a1", "a copy of a1, resent because its acknowledgement was lost"),
    (A, 2, "a2", "the next one"),
    (B, 0, "b0", "the first message of another session; each session numbers from 0"),
    (A, 0, "a0", "an old copy of a0, resent after a reconnection"),
    (A, 4, "a4", "a4, early: a3 was lost with a connection"),
    (A, 3, "a3", "a3, resent when the sender went back"),
    (A, 4, "a4", "a4 again, resent after a3"),
    (B, 1, "b1", "the next one of session-b"),
    (B, 1, "b1", "a copy of b1"),
    (A, 5, "a5", "the next one of session-a"),
]


def _normalise(result: object, call: str) -> tuple[list[Any], Any]:
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise _Problem(f"receive() must return a pair (to_deliver, ack); {call} returned {result!r}")
    to_deliver, ack = result
    if to_deliver is None:
        to_deliver = []
    if isinstance(to_deliver, str) or not isinstance(to_deliver, (list, tuple)):
        raise _Problem(f"to_deliver must be a list of bodies (empty when nothing is to be "
                       f"delivered); {call} returned {to_deliver!r}")
    return list(to_deliver), ack


def _check_call(delivered: dict[str, list[str]], received: dict[str, dict[int, str]],
                session: str, seq: int, body: str, what: str,
                to_deliver: list[Any], ack: Any) -> None:
    """One call's result against the only correct record; raises :class:`_Problem`."""
    call = f"receive({session!r}, {seq}, {body!r}) ({what})"
    done = delivered.setdefault(session, [])
    for item in to_deliver:
        position = len(done)  # the number this delivery stands for
        if item in done:
            raise _Problem(
                f"{call} delivered {item!r} a second time. A number below the next one you "
                f"expect for the session is a copy (the sender resent it because an "
                f"acknowledgement was lost): deliver nothing, but acknowledge again")
        wanted = received.get(session, {}).get(position)
        if wanted is None:
            owner = next((s for s, seen in received.items() if item in seen.values()), session)
            if owner != session:
                raise _Problem(f"{call} delivered {item!r}, a message of {owner!r}: keep what "
                               "you hold per session")
            raise _Problem(
                f"{call} delivered {item!r} while {session}'s seq {position} has not arrived: "
                f"deliver only the next number expected (or hold a later one until the gap is "
                f"filled). Delivered now, it would come before seq {position}, out of order; "
                f"and an acknowledgement above {position - 1} would make the sender forget "
                f"seq {position} for good")
        if item != wanted:
            raise _Problem(f"{call} delivered {item!r} where {session}'s seq {position} "
                           f"({wanted!r}) comes next: deliver in the session's order")
        done.append(item)
    expected_ack = len(done) - 1
    if seq == len(done) and body not in done:
        raise _Problem(
            f"{call} delivered nothing, but seq {seq} is exactly the next number expected for "
            f"{session!r}" + ("" if seq else ": each session numbers from 0, so keep the next "
                              "expected number per session, not one for everyone")
            + ". It would never be processed")
    if ack is None:
        raise _Problem(
            f"{call} returned no acknowledgement (None). Acknowledge every frame, copies "
            f"included: a copy came because an acknowledgement was lost, and without a new "
            f"one the sender resends for ever. Here: {expected_ack}")
    if not isinstance(ack, int) or isinstance(ack, bool):
        raise _Problem(f"the acknowledgement must be an int (the last number delivered in "
                       f"order); {call} returned {ack!r}")
    if ack != expected_ack:
        why = ("a higher one tells the sender to forget messages you never delivered"
               if ack > expected_ack else
               "a lower one makes the sender resend what you already have")
        raise _Problem(
            f"after {call} you acknowledged {ack}; the cumulative acknowledgement is the last "
            f"number of {session!r} delivered with nothing missing before it, {expected_ack}: "
            f"{why}")


def _play(receiver_class: Callable[[], Any]) -> None:
    receiver, error = call_safely(receiver_class)
    if error:
        raise _Problem(f"creating your receiver: {error}")
    delivered: dict[str, list[str]] = {}
    received: dict[str, dict[int, str]] = {}
    for session, seq, body, what in SCRIPT:
        received.setdefault(session, {})[seq] = body
        result, error = call_safely(receiver.receive, session, seq, body)
        call = f"receive({session!r}, {seq}, {body!r}) ({what})"
        if error:
            raise _Problem(f"{call}: {error}")
        to_deliver, ack = _normalise(result, call)
        _check_call(delivered, received, session, seq, body, what, to_deliver, ack)
    for session, bodies in received.items():
        missing = [bodies[s] for s in sorted(bodies) if bodies[s] not in delivered.get(session, [])]
        if missing:
            raise _Problem(f"at the end, {', '.join(map(repr, missing))} of {session!r} were never "
                           "delivered, though every number arrived")


def check_deduplication_offline(receiver_class: Callable[[], Any]) -> Verdict:
    """Stage 1 only (no network, instant): the scripted frames."""
    try:
        _play(receiver_class)
    except _Problem as problem:
        return Verdict(False, str(problem))
    return Verdict(True, f"{len(SCRIPT)} scripted frames: copies dropped and acknowledged again, "
                         "sessions kept apart, an early message not delivered before the one "
                         "ahead of it")


# Stage 2: a real run ----------------------------------------------------------


def lab_scenario() -> Scenario:
    """Two clients send 120 messages each at 100/s. Every acknowledgement frame
    is dropped from 0.3 to 0.6 s, then half of them to the end; from 0.2 to
    1.0 s, 5% of the message frames are dropped too (each one leaves a gap the
    sender must fill by going back)."""
    return get_scenario("lost_acknowledgements").with_(
        name="lost acknowledgements and gaps",
        description="2 clients × 120 messages at 100/s; acknowledgements dropped (all, then "
                    "half), 5% of message frames dropped 0.2–1.0 s.",
        workload=Workload(count=120, rate_per_s=100, direction="up"),
        faults=FaultPlan([
            FrameFault(start_s=0.3, duration_s=0.3, direction="down", action="drop",
                       match=TextContaining('"ack"')),
            FrameFault(start_s=0.6, direction="down", action="drop", probability=0.5,
                       match=TextContaining('"ack"')),
            FrameFault(start_s=0.2, duration_s=0.8, direction="up", action="drop",
                       probability=0.05, match=TextContaining('"seq"')),
        ]),
        clients=2, seed=10, settle_s=0.8)


@dataclass
class LabRecord:
    """What the exercise design saw during a run."""

    where: dict[str, tuple[str, int]] = field(default_factory=dict)  # msg id -> (session, seq)
    sends: dict[tuple[str, int], int] = field(default_factory=dict)  # (session, seq) -> frames sent
    acked: dict[str, int] = field(default_factory=dict)  # session -> highest ack received
    # (session, seq) -> the acknowledgement the server had sent that session when
    # the message first arrived (-1: none yet)
    arrived: dict[tuple[str, int], int] = field(default_factory=dict)
    server_ack: dict[str, int] = field(default_factory=dict)  # session -> last ack sent
    problems: list[str] = field(default_factory=list)  # what receive() did wrong, first first

    @property
    def resent(self) -> int:
        return sum(n - 1 for n in self.sends.values())


def exercise_design(receiver_class: Callable[[], Any], record: LabRecord | None = None) -> Design:
    """A server that hands every message frame to one ``receiver_class()`` (kept
    in the durable store) and processes what ``receive`` returns, then sends its
    acknowledgement; clients that number their messages per session and go back
    to the oldest unacknowledged one after ``ACK_TIMEOUT_S`` without progress."""
    record = record if record is not None else LabRecord()

    async def handler(websocket, app) -> None:
        receiver = app.store.get("receiver")
        if receiver is None:
            receiver = app.store["receiver"] = receiver_class()
        try:
            async for raw in websocket:
                frame = json.loads(raw)
                session, seq, body = frame["session"], frame["seq"], frame["body"]
                record.arrived.setdefault((session, seq), record.server_ack.get(session, -1))
                call = f"receive({session!r}, {seq}, <{message_id(body)}>)"
                result, error = call_safely(receiver.receive, session, seq, body)
                if error:
                    record.problems.append(f"{call}: {error}")
                    continue
                try:
                    to_deliver, ack = _normalise(result, call)
                except _Problem as problem:
                    record.problems.append(str(problem))
                    continue
                for item in to_deliver:
                    await app.process(item)
                if isinstance(ack, int) and not isinstance(ack, bool):
                    record.server_ack[session] = ack
                    await websocket.send(json.dumps({"ack": ack}))
        except ConnectionClosed:
            pass

    async def client(app) -> None:
        session = f"client-{app.client_id}"
        pending: list[tuple[int, str]] = []  # (seq, body), oldest first
        wake = asyncio.Event()
        state = {"next_seq": 0, "progress_at": 0.0}
        loop = asyncio.get_running_loop()

        async def take() -> None:
            async for message in app.outgoing():
                if not pending:
                    state["progress_at"] = loop.time()
                seq = state["next_seq"]
                state["next_seq"] += 1
                record.where[message_id(message) or message] = (session, seq)
                pending.append((seq, message))
                wake.set()

        async def send(websocket) -> None:
            sent_upto = -1
            while True:
                for seq, body in [item for item in pending if item[0] > sent_upto]:
                    await websocket.send(json.dumps({"session": session, "seq": seq, "body": body}))
                    record.sends[(session, seq)] = record.sends.get((session, seq), 0) + 1
                    sent_upto = seq
                if pending and loop.time() - state["progress_at"] > ACK_TIMEOUT_S:
                    state["progress_at"] = loop.time()
                    sent_upto = -1  # go back: resend everything unacknowledged
                    continue
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), ACK_TIMEOUT_S / 4)
                except TimeoutError:
                    pass

        async def read(websocket) -> None:
            async for raw in websocket:
                upto = json.loads(raw)["ack"]
                record.acked[session] = max(record.acked.get(session, -1), upto)
                before = len(pending)
                pending[:] = [item for item in pending if item[0] > upto]
                if len(pending) < before:
                    state["progress_at"] = loop.time()
                    wake.set()

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(take())
            while True:
                try:
                    async with app.connect(close_timeout=CLOSE_TIMEOUT_S) as websocket:
                        jobs = [asyncio.create_task(send(websocket)),
                                asyncio.create_task(read(websocket))]
                        try:
                            await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
                        finally:
                            for job in jobs:
                                job.cancel()
                            await asyncio.gather(*jobs, return_exceptions=True)
                except (ConnectionClosed, InvalidHandshake, OSError):
                    pass
                await asyncio.sleep(RECONNECT_DELAY_S)

    return Design(f"de-duplication ({getattr(receiver_class, '__name__', 'yours')})",
                  handler=handler, client=client, serve_options={"close_timeout": CLOSE_TIMEOUT_S},
                  description="Lesson 10's exercise: your receive() decides what is processed.")


def _name(record: LabRecord, msg_id: str) -> str:
    session, seq = record.where.get(msg_id, ("?", -1))
    sent = record.sends.get((session, seq), 0)
    return f"{msg_id} ({session}, seq {seq}, sent {sent} time{'s' if sent != 1 else ''})"


async def check_deduplication_in_lab(receiver_class: Callable[[], Any], *,
                                     scenario: Scenario | None = None) -> Verdict:
    """Stage 2 only: a real run of :func:`exercise_design` under ``scenario``
    (by default :func:`lab_scenario`)."""
    from ..lab import arun

    record = LabRecord()
    run = await arun(exercise_design(receiver_class, record), scenario or lab_scenario())
    if record.problems:
        return Verdict(False, f"in the lab, {record.problems[0]}")
    if run.errors:
        first = run.errors[0]
        return Verdict(False, f"in the lab, {first.where} failed at {first.t_s:.2f} s: {first.error}")
    twice = [r.msg_id for r in run.ledger.records.values() if len(r.deliveries) > 1]
    if twice:
        return Verdict(False, f"in the lab, {len(twice)} message(s) were processed more than once, "
                              f"the first {_name(record, twice[0])}: your receive() returned the "
                              "copy again when a resend came (its acknowledgement had been dropped)")
    late = run.ledger.out_of_order_ids()
    if late:
        session, seq = record.where.get(late[0], ("?", -1))
        return Verdict(False, f"in the lab, {len(late)} message(s) were processed out of order, the "
                              f"first {_name(record, late[0])}: your receive() delivered later "
                              f"numbers of {session} before it")
    lost = run.ledger.lost_ids()
    if lost:
        first = lost[0]
        session, seq = record.where.get(first, ("?", -1))
        hold = (f"when a later number arrives first, do not deliver it, and hold the "
                f"acknowledgement at the last number delivered in order ({seq - 1}), so the "
                f"sender goes back")
        covered = record.acked.get(session, -1)
        if (session, seq) not in record.arrived:
            because = (f"its frame was dropped on the way, and your acknowledgements (up to "
                       f"{covered}) covered it, so the client forgot it: {hold}"
                       if covered >= seq else
                       "it never arrived, and the client was still resending it at the end")
        elif record.arrived[(session, seq)] >= seq:
            because = (f"its first frame was dropped; a later number was delivered before it, "
                       f"so when its copy came your receive() took it for a duplicate: {hold}")
        else:
            because = ("it arrived, and your receive() never returned it (is the next expected "
                       "number kept per session?)")
        return Verdict(False, f"in the lab, {len(lost)} message(s) were never processed, the first "
                              f"{_name(record, first)}: {because}")
    summary = run.summary()
    return Verdict(True, f"in the lab, {summary['sent']} messages from {run.clients} sessions, "
                         f"{record.resent} frames resent (acknowledgements and messages dropped): "
                         "each message processed once, in order")


async def check_deduplication(receiver_class: Callable[[], Any], *,
                              scenario: Scenario | None = None) -> Verdict:
    """Lesson 10: the scripted frames, then a real run (``scenario``, by default
    :func:`lab_scenario`). Passes when every message is processed exactly once,
    in its session's order."""
    offline = check_deduplication_offline(receiver_class)
    if not offline:
        return offline
    in_lab = await check_deduplication_in_lab(receiver_class, scenario=scenario)
    if not in_lab:
        return in_lab
    return Verdict(True, f"{offline.message}; {in_lab.message}")
