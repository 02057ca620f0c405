"""Lesson 05's exercise: a bounded queue with an overflow policy.

The learner writes a small class::

    class BoundedQueue:
        def __init__(self, capacity, policy, on_refused): ...
        async def put(self, message): ...   # what happens when full: the policy
        async def get(self): ...            # the oldest message, waiting for one
        def __len__(self): ...              # messages held now

``policy`` is ``"block"`` (``put`` waits for room), ``"reject"`` (``put``
refuses the new message: ``on_refused(message)``) or ``"drop_oldest"`` (``put``
makes room by dropping the oldest message: ``on_refused(oldest)``).

:func:`check_bounded_queue` first tries the class by itself (five messages into
a queue of three, for each policy), then runs it for real: as the outbound
queue of a client that sends with credit (at most ``window`` messages
unacknowledged) to a server four times slower than the producer, once per
policy. It answers with the first thing that went wrong, concretely.
"""

from __future__ import annotations

import asyncio
import os
import traceback

from ..contract import Design
from ..faults import FaultPlan, SlowConsumer
from ..lab import arun
from ..run import Run
from ..scenarios import Scenario
from ..workload import Workload
from .checking import Verdict, acall_safely, call_safely

POLICIES = ("block", "reject", "drop_oldest")
UNIT_CAPACITY = 3
LAB_CAPACITY = 16
LAB_WINDOW = 4
WAIT_S = 1.0  # a put or get that should return at once gets this long (a loaded machine)
BLOCKED_S = 0.05  # a put that should wait must still be waiting after this long

ACK = "ack"

# 150 messages at 1000/s, processed at 250/s: the queue fills within 0.03 s.
LAB_SCENARIO = Scenario(
    "burst",
    "The client produces 1000 messages/s for 0.15 s; the server processes one per 4 ms.",
    Workload(count=150, rate_per_s=1000, direction="up", size_bytes=256),
    FaultPlan([SlowConsumer(side="server", delay_s=0.004)]), seed=5, settle_s=1.0,
    time_limit_s=15.0)


def queue_design(queue_class: type, policy: str, *, capacity: int = LAB_CAPACITY,
                 window: int = LAB_WINDOW) -> Design:
    """A design whose client keeps its outbound messages in ``queue_class``.

    The client's feeder puts every message the application produces into the
    queue; its sender takes one only when it has credit (fewer than
    ``window`` messages unacknowledged) and sends it; the server processes each
    message and answers ``"ack"``, one credit back. So the queue fills while the
    server is slower, and its policy decides. A refusal is reported to the
    application (``app.reject``): refused, not lost.
    """

    async def handler(websocket, app) -> None:
        async for message in websocket:
            await app.process(message)
            await websocket.send(ACK)

    async def client(app) -> None:
        def refused(message: str) -> None:
            app.reject(message, f"refused by the {policy!r} policy")

        queue = queue_class(capacity, policy, refused)
        credit = asyncio.Semaphore(window)
        async with app.connect() as websocket:
            async def feed() -> None:
                async for message in app.outgoing():
                    await queue.put(message)

            async def send() -> None:
                while True:
                    await credit.acquire()
                    await websocket.send(await queue.get())

            async def read_acks() -> None:
                async for _ in websocket:
                    credit.release()

            async with asyncio.TaskGroup() as tasks:
                for work in (feed, send, read_acks):
                    tasks.create_task(work(), name=work.__name__)

    return Design(f"your queue, {policy}", handler=handler, client=client)


async def check_bounded_queue(queue_class: type, *, lab: bool = True) -> Verdict:
    """Lesson 05: ``queue_class(capacity, policy, on_refused)`` keeps at most
    ``capacity`` messages and applies ``policy`` when full (see the module
    docstring). With ``lab=False`` only the quick checks run."""
    for policy in POLICIES:
        problem = await _check_alone(queue_class, policy)
        if problem:
            return Verdict(False, f"policy {policy!r}: {problem}")
    if not lab:
        return Verdict(True, "your queue keeps its bound and applies every policy "
                             "(the lab runs were skipped)")
    runs = []
    for policy in POLICIES:
        run = await arun(queue_design(queue_class, policy), LAB_SCENARIO)
        problem = problem_in_run(run, policy)
        if problem:
            return Verdict(False, f"in the lab, policy {policy!r}: {problem}")
        runs.append(run)
    told = ", ".join(f"{policy} {run.summary()['rejected']}" for policy, run in zip(POLICIES, runs))
    peaks = ", ".join(str(run.summary()["peak_queue"]) for run in runs)
    return Verdict(True, f"your queue keeps its bound and applies every policy; in the lab "
                         f"nothing was lost, at most {peaks} messages waited (capacity "
                         f"{LAB_CAPACITY} + {LAB_WINDOW} in flight), refused: {told}")


async def _check_alone(queue_class: type, policy: str) -> str | None:
    """Five messages into a queue of three; the first problem, said plainly."""
    refused: list[str] = []
    queue, error = call_safely(queue_class, UNIT_CAPACITY, policy, refused.append)
    if error:
        return f"creating BoundedQueue({UNIT_CAPACITY}, {policy!r}, on_refused): {error}"
    messages = [f"m{i}" for i in range(5)]
    for message in messages[:UNIT_CAPACITY]:
        if problem := await _put_returns(queue, message, "while the queue had room"):
            return problem
    if refused:
        return (f"on_refused was called with {refused!r} while the queue still had room "
                f"(capacity {UNIT_CAPACITY})")
    if policy == "block":
        return await _check_block(queue, messages, refused)
    for message in messages[UNIT_CAPACITY:]:
        if problem := await _put_returns(queue, message, f"with the {policy!r} policy a "
                                         "full queue refuses at once, it never waits"):
            return problem
        if (size := _size(queue)) is None or size > UNIT_CAPACITY:
            return (f"after putting {message!r} into a full queue of {UNIT_CAPACITY} it holds "
                    f"{size}: a full queue must not grow")
    expected_refused = ["m3", "m4"] if policy == "reject" else ["m0", "m1"]
    expected_kept = [m for m in messages if m not in expected_refused]
    if refused != expected_refused:
        missing = [m for m in expected_refused if m not in refused]
        if missing and not refused:
            return (f"{', '.join(missing)} vanished without on_refused being called: the "
                    "producer never learns, and the ledger counts it as lost")
        what = ("the new message, the one that did not fit" if policy == "reject"
                else "the oldest message, to make room for the new one")
        return (f"putting m0..m4 into a queue of {UNIT_CAPACITY}, on_refused got "
                f"{refused!r}; expected {expected_refused!r} ({what})")
    got = await _get_all(queue, len(expected_kept))
    if isinstance(got, str):
        return got
    if got != expected_kept:
        return f"get() returned {got!r}; expected {expected_kept!r}, oldest first"
    return None


async def _check_block(queue, messages: list[str], refused: list[str]) -> str | None:
    waiting = asyncio.ensure_future(_put(queue, messages[3]))
    await asyncio.sleep(BLOCKED_S)
    if waiting.done():
        if waiting.exception() is not None:
            error = waiting.exception()
            return (f"put({messages[3]!r}) into a full queue raised {_describe(error)}; "
                    "with 'block' it waits for room")
        if refused:
            return (f"put({messages[3]!r}) into a full queue refused {refused!r}; with "
                    "'block' nothing is refused: put waits for room")
        return (f"put({messages[3]!r}) into a full queue of {UNIT_CAPACITY} returned at once "
                f"(it now holds {_size(queue)}); with 'block' it waits until a get() makes room")
    got = await _get_all(queue, 1)
    if isinstance(got, str):
        waiting.cancel()
        return got
    try:
        await asyncio.wait_for(waiting, WAIT_S)
    except TimeoutError:
        return (f"put({messages[3]!r}) still waits after get() made room: wake the waiting "
                "producer when a message leaves (asyncio.Queue(maxsize=...) does it for you)")
    except Exception as exc:  # noqa: BLE001 - reported to the learner
        return f"put({messages[3]!r}) raised {_describe(exc)}"
    rest = await _get_all(queue, UNIT_CAPACITY)
    if isinstance(rest, str):
        return rest
    if got + rest != messages[:4]:
        return f"get() returned {got + rest!r}; expected {messages[:4]!r}, oldest first"
    if refused:
        return f"on_refused got {refused!r}; with 'block' nothing is refused"
    return None


async def _put(queue, message: str) -> None:
    result = queue.put(message)
    if hasattr(result, "__await__"):
        await result


async def _put_returns(queue, message: str, why: str) -> str | None:
    try:
        await asyncio.wait_for(_put(queue, message), WAIT_S)
    except TimeoutError:
        return f"put({message!r}) was still waiting after {WAIT_S:g} s {why}"
    except Exception as exc:  # noqa: BLE001 - reported to the learner
        return f"put({message!r}) raised {_describe(exc)}"
    return None


def _describe(exc: Exception) -> str:
    """The exception and the line of the learner's code it came through."""
    text = f"{type(exc).__name__}" + (f": {exc}" if str(exc) else "")
    if isinstance(exc, asyncio.QueueFull):
        text += (" (put_nowait on a full asyncio.Queue): check full() first, or catch "
                 "asyncio.QueueFull, and apply the policy")
    theirs = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if frame.filename != __file__ and f"{os.sep}asyncio{os.sep}" not in frame.filename]
    if theirs:
        text += f" at line {theirs[-1].lineno}: {theirs[-1].line!r}"
    return text


async def _get_all(queue, count: int) -> list[str] | str:
    got = []
    for _ in range(count):
        try:
            item, error = await asyncio.wait_for(acall_safely(queue.get), WAIT_S)
        except TimeoutError:
            return (f"get() waited {WAIT_S:g} s with {count - len(got)} message(s) still to "
                    f"come (after {got!r}): the queue lost them")
        if error:
            return f"get(): {error}"
        got.append(item)
    return got


def _size(queue) -> int | None:
    size, error = call_safely(len, queue)
    return size if error is None else None


def problem_in_run(run: Run, policy: str) -> str | None:
    """What went wrong in a lab run of :func:`queue_design` with ``policy``, or None."""
    if run.errors:
        first = run.errors[0]
        return f"the client failed at {first.t_s:.2f} s ({first.where}): {first.error}"
    s = run.summary()
    records = run.ledger.records
    lost = sorted(run.ledger.lost_ids(), key=lambda i: records[i].produced_s)
    if lost:
        return (f"{len(lost)} message(s) never arrived and were never refused, first "
                f"{lost[0]} (produced at {records[lost[0]].produced_s:.3f} s): a message "
                "dropped without on_refused is lost")
    bound = LAB_CAPACITY + LAB_WINDOW + 1
    if s["peak_queue"] > bound:
        return (f"{s['peak_queue']} messages were waiting at once; capacity {LAB_CAPACITY} "
                f"plus {LAB_WINDOW} in flight allows {bound}")
    refused = [r for r in records.values() if r.rejected_s is not None and not r.deliveries]
    if policy == "block":
        if refused:
            return f"{len(refused)} message(s) refused; with 'block' the producer waits instead"
        backlog = max((sample["producer_backlog"] for sample in run.samples), default=0)
        if backlog <= LAB_CAPACITY:
            return ("the producer never had to wait: put() should wait while the queue "
                    "is full")
        return None
    if not refused:
        return "nothing was refused, though the producer was four times faster"
    # Robust facts only: the queue starts empty, so 'reject' keeps the first
    # `capacity` messages; nothing comes after the last one, so 'drop_oldest'
    # keeps it. (Whether the newest is refused under 'reject' depends on
    # whether a slot had just freed: timing, not a property.)
    by_age = sorted(records.values(), key=lambda r: r.produced_s)
    if policy == "reject":
        if dropped := [r.msg_id for r in by_age[:LAB_CAPACITY] if not r.deliveries]:
            return (f"{dropped[0]} was refused although it came while the queue still had "
                    "room: 'reject' refuses only what does not fit")
    elif not by_age[-1].deliveries:
        return (f"the newest message, {by_age[-1].msg_id}, was not delivered: 'drop_oldest' "
                "drops the oldest message to keep the newest")
    return None
