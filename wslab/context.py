"""The run context: what the applications and the lab share during one run.

One :class:`RunContext` per run. The lab creates it on the run's loop and
hands it to every application (:class:`~wslab.contract.ServerApp`,
:class:`~wslab.contract.ClientApp`), which read the run's time, workload and
fault plan from it and record what happens in it: the ledger, errors,
gauges, metrics, logs, client connection events. The lab reads the record
from it when the run ends.

Guarantees:

- Every task created while the run is current (:data:`current_run`, on a loop
  that :func:`track_tasks` has seen) belongs to the run (:meth:`RunContext.adopt`):
  its failure is recorded, never lost, and the lab cancels it at teardown.
- Once the run is stopping, closes are the lab's doing and are not recorded
  as the design's (``stopping``); once it is tearing down, neither are errors
  (``tearing_down``).
- :meth:`RunContext.accounted_for` is done the moment no message is
  outstanding: the ledger signals it, nothing polls.
- The module-level functions of :mod:`random` (``random.uniform``,
  ``random.random``, ...: what generated code uses for jitter, and what
  ``websockets`` uses for its reconnection delay) draw, while a run is current,
  from that run's own generator, seeded from the run's seed
  (:attr:`RunContext.rng`). Code that never seeds anything is replayed exactly
  in virtual time; anywhere else they are :mod:`random`'s own. (An unseeded
  ``random.Random()`` or ``random.SystemRandom`` made by the design stays
  unseeded: that is its choice.)
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import traceback
from dataclasses import dataclass, field
from typing import Any

from .auth import TokenAuthority
from .faults import FaultPlan
from .ledger import Ledger
from .observability import Metrics
from .run import DesignFailure
from .workload import Workload

current_run: contextvars.ContextVar["RunContext | None"] = contextvars.ContextVar(
    "wslab_current_run", default=None
)


@dataclass
class RunContext:
    """The state of one run that the applications and the lab share (see the module docstring)."""

    workload: Workload
    plan: FaultPlan
    t0: float  # the loop's time when the run started: ``now()`` counts from here
    seed: int = 0
    auth: TokenAuthority = field(default_factory=lambda: TokenAuthority(b"wslab", 3600.0))
    ledger: Ledger = field(default_factory=Ledger)
    gauges: dict[tuple[str, int | None], float] = field(default_factory=dict)
    errors: list[DesignFailure] = field(default_factory=list)
    tasks: set[asyncio.Task] = field(default_factory=set)
    failed_tasks: list[tuple[float, asyncio.Task]] = field(default_factory=list)
    stopping: bool = False  # the run is over: closes from now on are the lab's doing
    tearing_down: bool = False  # the lab is stopping everything: errors are its doing
    metrics: Metrics = field(default_factory=Metrics)
    logs: list[dict] = field(default_factory=list)
    client_events: list[tuple[float, int, str]] = field(default_factory=list)
    consumer_due: dict[tuple[str, int | None], float] = field(default_factory=dict)
    rng: random.Random = field(init=False)  # what random.* draws from during the run

    def __post_init__(self) -> None:
        self.rng = random.Random(f"wslab run {self.seed}")
        self._accounted: list[asyncio.Future[None]] = []
        self.ledger.on_accounted_for = self._on_accounted_for

    def now(self) -> float:
        """Seconds since the run started, in the run's clock."""
        return asyncio.get_running_loop().time() - self.t0

    def accounted_for(self) -> asyncio.Future[None]:
        """A future done the moment no message is outstanding (produced and neither
        delivered nor rejected): within the ledger call that accounted for the
        last one, so ``done()`` is exact at any later instant. Done already when
        none is outstanding."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.ledger.outstanding:
            self._accounted.append(future)
        else:
            future.set_result(None)
        return future

    def _on_accounted_for(self) -> None:
        waiting, self._accounted = self._accounted, []
        for future in waiting:
            if not future.done():
                future.set_result(None)

    # Recording -------------------------------------------------------------

    def record_client_event(self, client_id: int, event: str) -> None:
        """A client connection opened or closed on the client's side (not at teardown)."""
        if not self.stopping:
            self.client_events.append((round(self.now(), 6), client_id, event))

    def fail(self, where: str, exc: BaseException) -> None:
        """Record an exception of the design (not those the lab causes at teardown)."""
        if self.tearing_down:
            return
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.errors.append(DesignFailure(round(self.now(), 4), where, text))

    # Tasks -----------------------------------------------------------------

    def adopt(self, task: asyncio.Task) -> None:
        """Own a task started during the run; its failure is recorded, never lost."""
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        # Not task.exception() here: that would mark it retrieved. Whether anybody
        # (a TaskGroup, an await) retrieves it is decided by the end of the run.
        if not task.cancelled() and not self.tearing_down:
            self.failed_tasks.append((self.now(), task))

    def record_unretrieved(self) -> None:
        """Record the exceptions of tasks that nobody awaited (fire and forget)."""
        for t, task in self.failed_tasks:
            if getattr(task, "_log_traceback", False):
                exc = task.exception()  # now retrieved: asyncio will not log it at exit
                text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                coro = task.get_coro()
                where = f"task {getattr(coro, '__qualname__', task.get_name())} (never awaited)"
                self.errors.append(DesignFailure(round(t, 4), where, text))
        self.failed_tasks.clear()
        self.errors.sort(key=lambda e: e.t_s)

    # Faults the applications feel -------------------------------------------

    async def consume_delay(self, side: str, client_id: int | None) -> None:
        """Hold a message for the SlowConsumer delays in force on this side.

        Each application is one consumer with a schedule: a message that comes
        while (or just after) the previous one was being handled starts when that
        one was due to finish, not when the event loop got round to it. So a
        consumer of "one per 4 ms" handles 250 per second on average even on a
        loaded machine, where every sleep overshoots a little.
        """
        t = self.now()
        delay = self.plan.consumer_delay_s(t, side, client_id)
        if delay:
            key = (side, client_id)
            due = self.consumer_due.get(key, -1.0)
            start = due if t - due < delay else t  # back to back: catch up with the schedule
            self.consumer_due[key] = start + delay
            await asyncio.sleep(max(0.0, start + delay - t))


# random.*, as seen from a run ------------------------------------------------

_GLOBAL_RANDOM = random._inst  # type: ignore[attr-defined]  # what random.* uses outside a run
_RANDOM_FUNCTIONS = [name for name in random.__all__
                     if getattr(random, name, None) == getattr(_GLOBAL_RANDOM, name, 0)]


def _random_of_run(name: str) -> Any:
    def draw(*args: Any, **kwargs: Any) -> Any:
        ctx = current_run.get()
        return getattr(_GLOBAL_RANDOM if ctx is None else ctx.rng, name)(*args, **kwargs)
    draw.__name__ = draw.__qualname__ = name
    draw.__doc__ = getattr(_GLOBAL_RANDOM, name).__doc__
    return draw


def _route_random() -> None:
    """Installed once, at import: before any design module does ``from random import uniform``."""
    for name in _RANDOM_FUNCTIONS:
        setattr(random, name, _random_of_run(name))


_route_random()


def track_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Make every task created on ``loop`` while a run is current belong to that run.

    Installed once per loop (lab loops are the lab's own; it is never removed).
    """
    if getattr(loop, "wslab_tracks_tasks", False):
        return
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        ctx = current_run.get()
        if ctx is not None:
            ctx.adopt(task)
        return task

    loop.set_task_factory(factory)
    loop.wslab_tracks_tasks = True  # type: ignore[attr-defined]
