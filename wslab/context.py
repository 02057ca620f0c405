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
- A task started in a client's context or a server handler's
  (:data:`current_party`) is the design's work for that client: its start,
  and how it ended if it failed, are recorded the moment it happens
  (``task_starts``, ``task_exceptions``: :class:`~wslab.run.TaskException`),
  so a later ``await``, ``gather(return_exceptions=True)`` or ``cancel()``
  by the design cannot hide the cause.
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
import functools
import linecache
import os
import random
import site
import sysconfig
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .auth import TokenAuthority
from .faults import FaultPlan
from .ledger import Ledger
from .observability import Metrics
from .run import CodeLine, DesignFailure, TaskException
from .workload import Workload

current_run: contextvars.ContextVar["RunContext | None"] = contextvars.ContextVar(
    "wslab_current_run", default=None
)

# Whose work the code running now is: ("client", 3) in client 3's coroutine and
# every task it starts, ("server", 3) in the handler of client 3's connection
# and its tasks; None elsewhere (the lab, the server's listener). Set by the lab.
Party = tuple[str, "int | None"]
current_party: contextvars.ContextVar[Party | None] = contextvars.ContextVar(
    "wslab_current_party", default=None
)

# True in the lab's own work that runs library code which starts tasks (closing
# the design's server: websockets' Server._close and the closes it starts).
# Such a task is named "wslab ..." as it is adopted, like every task the lab
# starts itself: the lab's, never counted as a task the design left running.
lab_work: contextvars.ContextVar[bool] = contextvars.ContextVar("wslab_lab_work", default=False)
LAB_TASK_PREFIX = "wslab "


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
    task_exceptions: list[TaskException] = field(default_factory=list)
    task_starts: list[tuple[float, str, int | None, str]] = field(default_factory=list)
    stopping: bool = False  # the run is over: closes from now on are the lab's doing
    tearing_down: bool = False  # the lab is stopping everything: errors are its doing
    metrics: Metrics = field(default_factory=Metrics)
    logs: list[dict] = field(default_factory=list)
    client_events: list[tuple[float, int, str]] = field(default_factory=list)
    # The keepalive ping timeouts (s) of the run's connections, both sides: the
    # timing the loop's lag must stay under (wslab.checkers: overloaded).
    ping_timeouts_s: set[float] = field(default_factory=set)
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

    def fail(self, where: str, exc: BaseException, *, work: str) -> None:
        """Record an exception that ended the design's ``work`` ("client", "server
        handler"), unhandled: in ``errors`` (not those the lab causes at teardown)
        and, while the run is on, in ``task_exceptions`` for the current party."""
        if self.tearing_down:
            return
        self.errors.append(DesignFailure(round(self.now(), 4), where, _one_line(exc)))
        party = current_party.get()
        if party is not None and not self.stopping:
            self._record_failure(exc, party, work)

    # Tasks -----------------------------------------------------------------

    def record_start(self, party: Party, work: str) -> None:
        """A piece of ``party``'s work started: a task, a client, a connection's handler."""
        if not self.stopping:
            self.task_starts.append((round(self.now(), 6), party[0], party[1], work))

    def adopt(self, task: asyncio.Task, context: contextvars.Context | None = None) -> None:
        """Own a task started during the run (in ``context``, the current one by
        default); its failure is recorded, never lost. A task of a party (see
        :data:`current_party`) is recorded as it starts and, if it fails, as it ends."""
        self.tasks.add(task)
        context = context if context is not None else contextvars.copy_context()
        if context.get(lab_work) and not is_lab_task(task):
            task.set_name(LAB_TASK_PREFIX + task.get_name())
        party = context.get(current_party)
        work = getattr(task.get_coro(), "__qualname__", task.get_name())
        if party is not None:
            self.record_start(party, work)
        task.add_done_callback(functools.partial(self._task_done, party=party, work=work))

    def _task_done(self, task: asyncio.Task, *, party: Party | None, work: str) -> None:
        self.tasks.discard(task)
        if task.cancelled() or self.tearing_down:
            return
        # Its exception read without retrieving it (the attribute both the C and
        # the Python Task keep), so that "never retrieved" stays decidable.
        exc = getattr(task, "_exception", None)
        if exc is not None:
            # Not task.exception() here: that would mark it retrieved. Whether anybody
            # (a TaskGroup, an await) retrieves it is decided by the end of the run.
            # Only failed tasks are kept: a 1,000-client run finishes half a million.
            self.failed_tasks.append((self.now(), task))
        if party is None or self.stopping:
            return
        if exc is not None:
            self._record_failure(exc, party, work)
        elif task.cancelling():  # asked to stop, it returned instead: CancelledError caught
            self.task_exceptions.append(TaskException(
                round(self.now(), 4), party[0], party[1], work,
                "returned after it was cancelled (CancelledError caught and not re-raised)",
                _kinds(asyncio.CancelledError), stack=_definition(task), swallowed_cancel=True,
                starts_before=len(self.task_starts)))

    def _record_failure(self, exc: BaseException, party: Party, work: str) -> None:
        self.task_exceptions.append(
            _task_exception(exc, self.now(), party, work, len(self.task_starts)))

    def record_unretrieved(self) -> None:
        """Record the exceptions of tasks that nobody awaited (fire and forget)."""
        for t, task in self.failed_tasks:
            if getattr(task, "_log_traceback", False):
                exc = task.exception()  # now retrieved: asyncio will not log it at exit
                coro = task.get_coro()
                where = f"task {getattr(coro, '__qualname__', task.get_name())} (never awaited)"
                self.errors.append(DesignFailure(round(t, 4), where, _one_line(exc)))
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


def is_lab_task(task: asyncio.Task) -> bool:
    """True for a task of the lab's own (its name starts with "wslab "), not the design's."""
    return task.get_name().startswith(LAB_TASK_PREFIX)


# Exceptions, as recorded ------------------------------------------------------

_LAB_DIR = Path(__file__).resolve().parent  # wslab/: its modules are the lab, its packages designs
_LIBRARY_DIRS = tuple(sorted({
    str(Path(p).resolve()) for p in (
        *(sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")),
        *site.getsitepackages(), site.getusersitepackages())
    if p}, key=len, reverse=True))  # the deepest first: site-packages lies inside stdlib's parent
_MAX_FRAMES = 40  # the innermost ones, for a traceback of a deep recursion


def _one_line(exc: BaseException) -> str:
    """``"InvalidMessage: did not receive a valid HTTP response"``."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _kinds(cls: type) -> tuple[str, ...]:
    """The qualified names of ``cls`` and its bases, most derived first."""
    return tuple(f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__ if c is not object)


@functools.lru_cache(maxsize=512)
def _place(filename: str) -> tuple[str, bool]:
    """How a file is shown, and whether it is the design's own code.

    The design's: anything but the standard library, installed packages and the
    lab's own modules (``wslab/*.py``; ``wslab/designs/`` and the like are
    designs). Shown relative to the working directory (a library file: to its
    package root), or by its name when it lies elsewhere.
    """
    # "<frozen ...>", "<string>": not the design's; pasted source: "<wslab.submissions.x>"
    if filename.startswith("<"):
        return filename, filename.startswith("<wslab.submissions.")
    path = Path(filename).resolve()
    if path.is_relative_to(_LAB_DIR):
        inside = path.relative_to(_LAB_DIR)
        return f"wslab/{inside.as_posix()}", len(inside.parts) > 1
    for root in _LIBRARY_DIRS:
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix(), False
    relative = os.path.relpath(path)
    return (path.name if relative.startswith("..") else Path(relative).as_posix()), True


def _code_line(filename: str, line: int, function: str) -> CodeLine:
    shown, own = _place(filename)
    code = linecache.getline(filename, line).strip() if own else ""
    return CodeLine(shown, line, function, code, own)


def _task_exception(exc: BaseException, t: float, party: Party, work: str,
                    starts_before: int) -> TaskException:
    while isinstance(exc, BaseExceptionGroup):  # a TaskGroup's: its first failure is the cause
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        if not inner:
            break
        exc = inner[0]
    stack = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        stack.append(_code_line(code.co_filename, tb.tb_lineno, code.co_qualname))
        tb = tb.tb_next
    rcvd = getattr(exc, "rcvd", None)  # websockets' ConnectionClosed: the close frame received
    response = getattr(exc, "response", None)  # websockets' InvalidStatus: the HTTP response
    code = (getattr(rcvd, "code", None) if rcvd is not None
            else getattr(response, "status_code", None))
    return TaskException(round(t, 4), party[0], party[1], work, _one_line(exc), _kinds(type(exc)),
                         code if isinstance(code, int) else None, tuple(stack[-_MAX_FRAMES:]),
                         starts_before=starts_before)


def _definition(task: asyncio.Task) -> tuple[CodeLine, ...]:
    """Where the task's coroutine function is defined (its frames are gone once it returned)."""
    code = getattr(task.get_coro(), "cr_code", None)
    if code is None:
        return ()
    return (_code_line(code.co_filename, code.co_firstlineno, code.co_qualname),)


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
            ctx.adopt(task, kwargs.get("context"))
        return task

    loop.set_task_factory(factory)
    loop.wslab_tracks_tasks = True  # type: ignore[attr-defined]
