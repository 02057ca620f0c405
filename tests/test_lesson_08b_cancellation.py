"""Lesson 08b's checker: the idiom passes, and each way of getting it wrong is named."""

from __future__ import annotations

import asyncio
import gc

import pytest

from wslab.exercises.cancellation import check_worker


async def resilient(inbox, process):
    while True:
        item = await inbox.get()
        try:
            await process(item)
        except Exception:
            pass


async def swallows(inbox, process):
    while True:
        try:
            await process(await inbox.get())
        except:  # noqa: E722 - the mistake under test
            pass


async def dies_at_an_error(inbox, process):
    while True:
        await process(await inbox.get())


async def returns_when_cancelled(inbox, process):
    while True:
        try:
            item = await inbox.get()
        except asyncio.CancelledError:
            return
        try:
            await process(item)
        except Exception:
            pass


async def stops_early(inbox, process):
    await process(await inbox.get())


def not_async(inbox, process):
    return None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker, hint", [
    (swallows, "caught the CancelledError"),
    (dies_at_an_error, "stopped at the bad item"),
    (returns_when_cancelled, "returned normally"),
    (stops_early, "before the bad item"),
    (not_async, "async def resilient_worker"),
])
def test_each_mistake_gets_its_hint(worker, hint):
    verdict = asyncio.run(check_worker(worker))
    assert not verdict and hint in verdict.message, verdict


@pytest.mark.timeout(60)
def test_the_idiom_passes():
    verdict = asyncio.run(check_worker(resilient))
    assert verdict, verdict


@pytest.mark.timeout(30)
def test_a_worker_that_catches_everything_is_not_left_spinning():
    # Such a worker catches the GeneratorExit the garbage collector throws into it;
    # collected while another loop runs (the next test's), it used to spin forever.
    assert not asyncio.run(check_worker(swallows))

    async def collect_while_another_loop_runs():
        gc.collect()

    asyncio.run(collect_while_another_loop_runs())
    gc.collect()
