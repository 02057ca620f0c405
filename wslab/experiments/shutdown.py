"""Lesson 08's experiments: what a stop costs, on each side (notebooks/08_shutdown.ipynb).

A stop happens twice in a run of the lab: the server shuts down mid-stream
(:func:`shutdown_scenario`, a steadier ``shutdown_in_flight``: ``serve()``'s
``close()`` sends 1001 to every client), and the run itself ends, which for
the client is a process being stopped (``app.stopping`` is set, and after
``Design.stop_grace_s`` its task is cancelled and the network is pulled).
This module measures both:

- :func:`stop_scenario`: a server still busy when the client is stopped, so
  about 30 events are unacknowledged at the stop;
- :func:`run_observed`: a run plus, for every connection the server saw, who
  started the closing handshake and with which code (:class:`ServerConnection`).
  The lab counts no leaked socket by itself; here a connection **left open** is one
  the design never closed: it ended with no closing handshake at all (1006) when
  the lab pulled the network at the end of the run. A real process that exits
  without closing leaves its peers the same 1006, and loses what was in flight;
- :func:`hang_at_shutdown`: the vague code with a bare ``except:`` in its worker,
  which swallows the cancellation; the lab gives up after its teardown grace and
  raises :class:`~wslab.errors.DesignHangError`, naming the line the task waits on
  (and the grader, on the same design, says "did not finish");
- :func:`asyncio_run_at_exit`: what ``asyncio.run()`` does with a task still
  running when ``main()`` returns (cancels it, then waits for it);
- :func:`lost_produced_s`, :func:`resent_after_restart` and :func:`heartbeats_after`
  read a run for the lesson's claims: when the lost events were produced, how
  many events in flight at the shutdown were processed after it (sent again),
  and how often a task wrote to a connection that had closed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from websockets.exceptions import ConnectionClosed

from ..clock import in_lab_loop
from ..contract import Design
from ..errors import DesignHangError
from ..faults import FaultPlan, ServerRestart, SlowConsumer
from ..lab import arun
from ..run import Run
from ..scenarios import Scenario, get_scenario
from ..workload import Workload

log = logging.getLogger("wslab.submissions.lesson08")

SHUTDOWN_AT_S = 0.8  # shutdown_in_flight: the server closes with 1001 then
BACK_AT_S = 1.3  # ... and is back
SLOW_UNTIL_S = 1.0  # shutdown_scenario: the server's application is slow until then
STOP_AT_S = 1.0  # stop_scenario: the client is asked to stop then (the end of the run)


def shutdown_scenario() -> Scenario:
    """``shutdown_in_flight`` with the server's application still slow (20 ms an
    event) until 1.0 s, through the shutdown at 0.8 s.

    In the standard scenario the slowness ends at 0.8 s, the very moment of the
    shutdown: a worker then empties its queue in about a millisecond, so whether
    the events queued at the shutdown are lost depends on which comes first, the
    empty queue or the closing handshake (a race a loaded machine can tip).
    Here the queue can only shrink by one event every 20 ms."""
    standard = get_scenario("shutdown_in_flight")
    restart = next(f for f in standard.faults if isinstance(f, ServerRestart))
    return standard.with_(
        name="shutdown while busy",
        description="The server shuts down (close 1001) at 0.8 s while its slow worker "
                    "(20 ms an event until 1.0 s) holds about 40 events; it is back 0.5 s later.",
        faults=FaultPlan([SlowConsumer(side="server", delay_s=0.02, duration_s=SLOW_UNTIL_S),
                          restart]))


def stop_scenario(*, count: int = 80) -> Scenario:
    """One client sends ``count`` events at 100/s to a server whose application
    takes 20 ms each (50/s); the run ends 0.2 s after the last one. At the stop
    the server has processed at most 50 of 80: about 30 are unacknowledged."""
    return get_scenario("shutdown_in_flight").with_(
        name="stop while the server is busy",
        description=f"{count} events at 100/s to a server that processes 50/s; the client "
                    "is stopped 0.2 s after its last event, about 30 still unprocessed.",
        workload=Workload(count=count, rate_per_s=100, direction="up"),
        faults=FaultPlan([SlowConsumer(side="server", delay_s=0.02)]),
        settle_s=0.2)


# Closing handshakes, as the server saw them --------------------------------


@dataclass(frozen=True)
class ServerConnection:
    """One connection the server's handler served, and how it closed.

    ``initiated_by`` is ``"client"`` or ``"server"`` (who sent the first close
    frame), or ``"nobody"`` when the connection ended with no closing handshake
    (reset: the close code is then 1006, which is never sent on the wire).
    """

    client: int | None
    opened_s: float
    ended_s: float | None  # when the handler returned
    initiated_by: str
    code: int

    @property
    def left_open(self) -> bool:
        """Never closed by the design: it ended with no closing handshake."""
        return self.initiated_by == "nobody"

    def __str__(self) -> str:
        return (f"opened at {self.opened_s:.2f} s, closed by {self.initiated_by} "
                f"with {self.code}" + (" (left open)" if self.left_open else ""))


@dataclass
class _Seen:
    websocket: Any
    client: int | None
    opened_s: float
    ended_s: float | None = None

    def closing(self) -> ServerConnection:
        protocol = self.websocket.protocol
        if protocol.close_rcvd_then_sent is True:
            by, code = "client", protocol.close_rcvd.code
        elif protocol.close_rcvd_then_sent is False:
            by, code = "server", protocol.close_sent.code
        else:
            by, code = "nobody", 1006
        return ServerConnection(self.client, round(self.opened_s, 3),
                                None if self.ended_s is None else round(self.ended_s, 3), by, code)


def observed(design: Design) -> tuple[Design, list[_Seen]]:
    """``design`` with a handler that notes every server connection (the list
    fills during the run; read it with ``[s.closing() for s in seen]`` after)."""
    seen: list[_Seen] = []
    inner = design.handler

    async def handler(websocket, app) -> None:
        entry = _Seen(websocket, app.client_id, app.now())
        seen.append(entry)
        try:
            await inner(websocket, app)
        finally:
            entry.ended_s = app.now()

    return replace(design, handler=handler), seen


@dataclass(frozen=True)
class Observed:
    """A run and the server connections it had, in the order they opened."""

    run: Run
    connections: list[ServerConnection] = field(default_factory=list)

    @property
    def left_open(self) -> int:
        return sum(c.left_open for c in self.connections)

    @property
    def last(self) -> ServerConnection:
        return self.connections[-1]


async def run_observed(design: Any, scenario: str | Scenario) -> Observed:
    """Run ``design`` (a :class:`Design`) and read how each server connection closed."""
    wrapped, seen = observed(design)
    run = await arun(wrapped, scenario)
    return Observed(run, [s.closing() for s in seen])


def stop_table(results: dict[str, Observed]) -> str:
    """One line per design: lost, reported undelivered, and the last close the server saw."""
    rows = [("design", "lost", "reported", "the server's last connection")]
    for name, result in results.items():
        s = result.run.summary()
        rows.append((name, str(s["lost"]), str(s["rejected"]),
                     f"closed by {result.last.initiated_by}, code {result.last.code}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# The lost events ------------------------------------------------------------


def lost_produced_s(run: Run) -> list[float]:
    """When each lost message was produced (seconds), sorted."""
    return sorted(r.produced_s for r in run.ledger.records.values()
                  if not r.deliveries and r.rejected_s is None)


def resent_after_restart(run: Run) -> int:
    """Events produced before the shutdown and first processed after the server
    came back: they were in flight at the shutdown, and the client sent them again."""
    return sum(1 for r in run.ledger.records.values()
               if r.produced_s <= SHUTDOWN_AT_S and r.deliveries and r.deliveries[0] >= BACK_AT_S)


def heartbeats_after(run: Run, t_s: float) -> int:
    """Log lines "heartbeat failed" written after ``t_s``: a task still looping
    on a connection that is closed (the vague code's heartbeat)."""
    return sum(1 for entry in run.logs
               if entry["t"] > t_s and "heartbeat failed" in str(entry.get("event", "")))


# A cancellation swallowed -----------------------------------------------------


def asyncio_run_at_exit() -> list[str]:
    """What ``asyncio.run()`` does with a task still running when ``main()``
    returns, in order: it cancels the task and waits for it to finish before it
    returns itself (run in a thread of its own, with its own event loop)."""
    happened: list[str] = []

    async def leftover() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            happened.append("the leftover task is cancelled")
            await asyncio.sleep(0.05)  # still cleaning up: asyncio.run() waits
            happened.append("the leftover task finishes its cleanup")
            raise

    async def main() -> None:
        asyncio.get_running_loop().create_task(leftover())
        await asyncio.sleep(0)
        happened.append("main() returns")

    asyncio.run(main())
    happened.append("asyncio.run() returns")
    return happened



class _Released:
    """The notebook's way out of a hang (a real process has none: it is killed)."""

    def __init__(self) -> None:
        self.released = False


async def process_events_swallowing(queue: asyncio.Queue, app: Any, way_out: _Released) -> None:
    """The vague code's worker, with ``except:`` instead of ``except Exception:``."""
    while True:
        try:
            event = await queue.get()
            await app.process(event)
        except:  # noqa: E722 - "keep the worker alive whatever happens": a cancellation too
            log.warning("failed to process an event; carrying on")
            if way_out.released:  # not part of the bug: lets the notebook free this task
                return


def hanging_design() -> tuple[Design, _Released, list[asyncio.Task]]:
    """The vague server with the swallowing worker, and the handles to free it."""
    way_out, workers = _Released(), []

    async def handler(websocket, app) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        worker = asyncio.create_task(process_events_swallowing(queue, app, way_out))
        workers.append(worker)
        try:
            async for message in websocket:
                await queue.put(message)
        except ConnectionClosed:
            pass
        finally:
            worker.cancel()  # swallowed: the worker goes on waiting for its queue

    async def client(app) -> None:
        async with app.connect() as websocket:
            async for event in app.outgoing():
                await websocket.send(event)
            await asyncio.Future()  # connected until stopped

    return (Design("bare except in the worker", handler=handler, client=client),
            way_out, workers)


@dataclass(frozen=True)
class Hang:
    """What :func:`hang_at_shutdown` saw: the lab's error, how long teardown
    waited, and the grader's verdict on the same design."""

    error: str  # str(DesignHangError)
    tasks: list[str]  # the stuck tasks' names
    run_s: float  # lab seconds from the start of the run to the error
    planned_s: float  # what the run would have taken without the hang
    graded: str  # the grader's verdict for the same scenario


@in_lab_loop()
async def hang_at_shutdown(scenario: str | Scenario | None = None) -> Hang:
    """Run :func:`hanging_design` (a short run by default) and return the
    :class:`~wslab.errors.DesignHangError` it ends with; grade it on the same
    scenario at the same time. The stuck tasks are then released and awaited,
    so nothing is left in the caller's loop."""
    from ..grading import agrade

    chosen = get_scenario(scenario) if scenario is not None else get_scenario(
        "shutdown_in_flight").with_(name="a short run", workload=Workload(count=30),
                                    faults=FaultPlan([]), settle_s=0.1)
    design, way_out, workers = hanging_design()

    async def run_it() -> tuple[DesignHangError | None, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await arun(design, chosen)
        except DesignHangError as exc:
            return exc, loop.time() - started
        return None, loop.time() - started

    try:
        (error, run_s), card = await asyncio.gather(
            run_it(), agrade(design, scenarios=[chosen], progress=False))
    finally:
        way_out.released = True
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.wait(workers, timeout=1.0)
    if error is None:  # pragma: no cover - the bug is deterministic
        raise AssertionError("the bare except did not hang the teardown")
    return Hang(str(error), list(error.tasks), run_s, chosen.planned_s,
                card[chosen.name].verdict())
