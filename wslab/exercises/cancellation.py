"""Lesson 08b's exercise: a worker that survives errors, and not cancellation.

The learner writes::

    async def resilient_worker(inbox, process): ...

It takes items from ``inbox`` (an ``asyncio.Queue``) forever and awaits
``process(item)`` for each, in order. An item whose processing raises an
``Exception`` is skipped (logged) and the worker goes on; a cancellation ends it:
the ``CancelledError`` goes through, so that whoever cancelled it sees it stop.

:func:`check_worker` runs it in a lab loop (virtual time, so a worker that
never ends is found at once, without waiting): three items and a bad one
between them, then a cancellation while it waits for the next item, then a
cancellation while it is in the middle of processing one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..clock import run_in_lab_loop
from .checking import Verdict, describe_error

ITEMS = [1, 2, "bad", 3]
WAIT_S = 1.0  # lab seconds the checker gives the worker for each step


class _Bad(ValueError):
    """What ``process`` raises for the bad item."""


class _Yield:
    def __await__(self):  # type: ignore[no-untyped-def]
        yield


class _Inbox(asyncio.Queue):
    """An ``asyncio.Queue`` safe to hand a worker that catches everything.

    A worker with a bare ``except:`` catches even the ``GeneratorExit`` that the
    garbage collector throws into it when its loop is gone. It then calls
    ``get()`` again, which an ``asyncio.Queue`` answers at once with a
    RuntimeError (no running loop, or another test's loop running), which it
    catches too: a busy loop that never ends, in whatever thread collects it.
    This ``get()`` yields instead, so Python gives up on the coroutine
    ("ignored GeneratorExit") and it ends.
    """

    async def get(self):  # type: ignore[no-untyped-def]
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is None or (self._loop is not None and running is not self._loop):
            await _Yield()  # collected outside its own loop
        return await super().get()


async def _check(resilient_worker: Callable) -> Verdict:
    done: list = []
    slow = asyncio.Event()

    async def process(item: object) -> None:
        if item == "bad":
            raise _Bad("cannot process 'bad'")
        if item == "slow":
            slow.set()
            await asyncio.sleep(3600)
        done.append(item)

    inbox: asyncio.Queue = _Inbox()
    for item in ITEMS:
        inbox.put_nowait(item)
    worker = asyncio.ensure_future(resilient_worker(inbox, process))
    try:
        async with asyncio.timeout(WAIT_S):
            while done != [1, 2, 3] and not worker.done():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pass
    if worker.done():
        error = worker.exception() if not worker.cancelled() else None
        why = describe_error(error) if error is not None else "it returned"
        if done != [1, 2]:
            return Verdict(False, f"the worker ended after processing {done}, before the bad item "
                                  f"({why}): it must take items from inbox and await process(item) "
                                  f"for each, forever")
        return Verdict(False, f"the worker stopped at the bad item ({why}); processed {done}: catch "
                              f"Exception around one item's processing, log it, and go on")
    if done != [1, 2, 3]:
        return Verdict(False, f"after {WAIT_S:g} s the worker had processed {done} of 1, 2, 3 "
                              f"(the bad one skipped): it must take every item, in order")
    await asyncio.sleep(0.01)  # the worker waits for the next item
    if (verdict := await _cancelled(worker, "waiting for the next item")) is not None:
        return verdict
    worker = asyncio.ensure_future(resilient_worker(inbox, process))
    inbox.put_nowait("slow")
    try:
        async with asyncio.timeout(WAIT_S):
            await slow.wait()
    except TimeoutError:
        worker.cancel()
        return Verdict(False, "started again, the worker did not take the next item from inbox")
    if (verdict := await _cancelled(worker, "processing an item")) is not None:
        return verdict
    return Verdict(True, "errors skipped (1, 2, 3 processed, the bad one logged), and a cancellation "
                         "ends it, whether it waits for an item or processes one")


async def _cancelled(worker: asyncio.Future, moment: str) -> Verdict | None:
    """Cancel ``worker``: None if the cancellation ended it, else the hint."""
    worker.cancel()
    try:
        async with asyncio.timeout(WAIT_S):
            await asyncio.wait([worker])
    except TimeoutError:
        return Verdict(False, f"cancelled while {moment}, the worker went on: it caught the "
                              f"CancelledError (a bare except:, except BaseException, or except "
                              f"CancelledError that does not re-raise). Catch Exception, which a "
                              f"cancellation is not")
    if not worker.cancelled():
        error = worker.exception()
        how = f"raised {type(error).__name__}" if error else "returned normally"
        return Verdict(False, f"cancelled while {moment}, the worker {how} instead of letting "
                              f"the CancelledError through: whoever cancelled it cannot tell it "
                              f"stopped. Clean up in finally, or re-raise it")
    return None


async def check_worker(resilient_worker: Callable) -> Verdict:
    """Check ``resilient_worker(inbox, process)`` (see the module docstring)."""
    if not asyncio.iscoroutinefunction(resilient_worker):
        return Verdict(False, "write it as `async def resilient_worker(inbox, process):`")
    return await run_in_lab_loop(lambda: _check(resilient_worker), name="resilient_worker check",
                                 wall_limit_s=30.0)
