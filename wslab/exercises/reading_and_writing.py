"""Lesson 07's exercise: a server handler made of reader, worker and writer tasks.

:func:`check_three_tasks` runs the learner's ``handler(websocket, app)`` for
real in the lab, behind the pipelined probe client of
:mod:`wslab.experiments.reading_and_writing` (at most 32 requests in flight,
a ping every 50 ms), under a server that is slower than the requests for
0.7 s. Halfway, the client closes its connection (1000) and opens a new one,
so the handler must also *end* well. It checks, in this order:

1. the handler of the first connection raised nothing (no ``ExceptionGroup``
   from a task that let ``ConnectionClosed`` escape);
2. the first 40 requests were all answered on the first connection;
3. that handler returned soon after its connection closed (its worker and
   writer did not wait on their queues forever);
4. no task was left running at the end of the run;
5. nothing was lost, duplicated or reordered;
6. no ping waited long for its pong: the reader kept reading while the
   worker was busy (a single loop leaves pings behind the requests).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from ..contract import Design
from ..errors import DesignContractError, DesignHangError
from ..experiments.reading_and_writing import (
    busy_server_scenario,
    ping_waits,
    probe_client,
)
from ..lab import arun
from ..run import Run
from ..scenarios import Scenario
from .checking import Verdict

MAX_IN_FLIGHT = 32  # the probe client's credit: an inbox this large never fills
SWITCH_AFTER = 40  # requests answered on the first connection before the client closes it
END_WITHIN_S = 0.3  # how soon the first connection's handler must return after the close
PING_WAIT_LIMIT_S = 0.15  # a reader that keeps reading answers in about a millisecond


@dataclass
class _Watch:
    """What the checker's wrapper saw of each handler call."""

    started_s: list[float] = field(default_factory=list)
    ended: dict[int, tuple[str, float, BaseException | None]] = field(default_factory=dict)
    switched_s: list[float] = field(default_factory=list)


def _wrap(fn: Callable, watch: _Watch) -> Callable:
    async def handler(websocket, app) -> None:
        index = len(watch.started_s)
        watch.started_s.append(app.now())
        try:
            await fn(websocket, app)
        except asyncio.CancelledError:
            watch.ended[index] = ("cancelled", app.now(), None)
            raise
        except Exception as exc:
            watch.ended[index] = ("raised", app.now(), exc)
            raise
        watch.ended[index] = ("returned", app.now(), None)

    return handler


def _describe(exc: BaseException, filename: str | None = None) -> str:
    """``ExceptionGroup`` (ConnectionClosedOK in one of its tasks, line 12: ...);
    the line is the last one of ``filename`` (the learner's code) when there is one."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(exc)
    first = leaves[0] if leaves else exc
    frames = traceback.extract_tb(first.__traceback__)
    yours = [f for f in frames if f.filename == filename] or frames
    where = f", line {yours[-1].lineno}: {yours[-1].line!r}" if yours else ""
    if isinstance(exc, BaseExceptionGroup):
        return (f"{type(exc).__name__} ({type(first).__name__}: {first} in one of its "
                f"tasks{where})")
    return f"{type(exc).__name__}: {exc}{where}"


def _closed_error(leaf_types: set[str]) -> bool:
    return any(name.startswith("ConnectionClosed") for name in leaf_types)


def _leaf_types(exc: BaseException) -> set[str]:
    if isinstance(exc, BaseExceptionGroup):
        return set().union(*(_leaf_types(e) for e in exc.exceptions))
    return {type(exc).__name__}


def _ping_hint(run: Run) -> str | None:
    """Which ping waited too long, and behind which requests."""
    waits = ping_waits(run)
    if len(waits) < 5:
        return ("the client's pings got almost no pongs back: is your reader reading the "
                "socket (`async for message in websocket`)?")
    sent_s, wait_s = max(waits, key=lambda w: w[1])
    if wait_s <= PING_WAIT_LIMIT_S:
        return None
    behind = sorted((r.deliveries[0], r.msg_id) for r in run.ledger.records.values()
                    if r.msg_id.startswith("u") and r.deliveries
                    and sent_s <= r.deliveries[0] <= sent_s + wait_s)
    queue = (f": it came back only after the worker had processed {len(behind)} requests "
             f"({behind[0][1]} to {behind[-1][1]})" if behind else "")
    return (f"a ping sent at {sent_s:.2f} s waited {wait_s * 1000:.0f} ms for its pong{queue}. "
            f"Your reader stopped reading while the worker was busy: does it wait for "
            f"processing (one loop), or is the inbox smaller than the {MAX_IN_FLIGHT} requests "
            f"the client keeps in flight? (a reader that keeps reading answers in about 1 ms)")


async def check_three_tasks(fn: Callable, *, scenario: Scenario | None = None) -> Verdict:
    """Lesson 07: ``fn(websocket, app)`` serves one connection with a reader, a
    worker and a writer task (see the module docstring for what is checked)."""
    if not inspect.iscoroutinefunction(fn):
        return Verdict(False, "write it as `async def ...(websocket, app):` (a coroutine "
                              "function): the server awaits it once per connection")
    watch = _Watch()
    try:
        design = Design("your three tasks", handler=_wrap(fn, watch),
                        client=probe_client(max_in_flight=MAX_IN_FLIGHT, ping_every_s=0.05,
                                            switch_after=SWITCH_AFTER,
                                            on_switch=watch.switched_s.append))
        inspect.signature(fn).bind(None, None)
    except (DesignContractError, TypeError):
        return Verdict(False, "your function must take two arguments, (websocket, app), "
                              "like the handler of lesson 01")
    try:
        run = await arun(design, scenario or busy_server_scenario())
    except DesignHangError as exc:
        return Verdict(False, f"{exc} Your tasks must let themselves be cancelled.")

    first = watch.ended.get(0)
    closed_s = watch.switched_s[0] if watch.switched_s else None
    if first is not None and first[0] == "raised" and (closed_s is None or first[1] < run.end_s):
        exc = first[2]
        assert exc is not None
        when = (f"when the client closed its first connection at {closed_s:.2f} s"
                if closed_s is not None and first[1] >= closed_s - 0.01 else f"at {first[1]:.2f} s")
        hint = ("A closed connection is the normal end of a connection: let the reader "
                "return when it sees ConnectionClosed (so does the writer), then cancel "
                "the other tasks, as Channel.run does."
                if _closed_error(_leaf_types(exc)) else "Look at that line.")
        filename = getattr(getattr(fn, "__code__", None), "co_filename", None)
        return Verdict(False, f"your handler raised {_describe(exc, filename)} {when}. {hint}")
    if closed_s is None:
        unanswered = sorted(
            (r.produced_s, r.msg_id) for r in run.ledger.records.values()
            if r.msg_id.startswith("e") and not r.deliveries)
        missing = sorted((r.produced_s, r.msg_id) for r in run.ledger.records.values()
                         if r.msg_id.startswith("u") and not r.deliveries)
        if missing:
            detail = f"request {missing[0][1]} was never processed"
        elif unanswered:
            detail = (f"request {unanswered[0][1].replace('e', 'u', 1)} was processed but its "
                      f"reply {unanswered[0][1]} never reached the client: does your writer "
                      "send what the worker puts in its queue?")
        else:
            detail = "the client never got its replies"
        return Verdict(False, f"the first {SWITCH_AFTER} requests were not all answered on the "
                              f"first connection: {detail}")
    if first is None or first[0] == "cancelled" or first[1] - closed_s > END_WITHIN_S:
        late = ("was still running when the run ended (the lab cancelled it)"
                if first is None or first[0] == "cancelled" or first[1] >= run.end_s
                else f"returned only {first[1] - closed_s:.2f} s later")
        return Verdict(False, f"the client closed its first connection at {closed_s:.2f} s and "
                              f"your handler for it {late}. When the reader ends, the worker "
                              "and the writer still wait on their queues: cancel them (wait for "
                              "the first task to finish, then cancel the others).")
    if run.tasks_left:
        return Verdict(False, f"{run.tasks_left} task(s) of yours were still running at the end "
                              "of the run: a task started with create_task outside a TaskGroup "
                              "outlives its connection. Start them in an asyncio.TaskGroup.")
    s = run.summary()
    if s["lost"]:
        lost = run.ledger.lost_ids()
        return Verdict(False, f"{s['lost']} message(s) lost, the first {lost[0]}: every request "
                              "read must be processed and its reply sent")
    if s["duplicated"] or s["out_of_order"]:
        return Verdict(False, f"{s['duplicated']} duplicated and {s['out_of_order']} out-of-order "
                              "deliveries: one worker, taking requests in the order read")
    hint = _ping_hint(run)
    if hint is not None:
        return Verdict(False, hint)
    longest = max(w for _, w in ping_waits(run))
    assert not math.isnan(longest)
    return Verdict(True, f"{s['delivered']} messages, none lost; the handler of the closed "
                         f"connection ended {first[1] - closed_s:.3f} s after its close; the "
                         f"longest ping wait was {longest * 1000:.1f} ms while the worker was busy")
