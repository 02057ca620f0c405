"""Lesson 07 (separate reading and writing): the checker, the experiments and the
prompt codes behave as the notebook says. Real runs on loopback; robust facts,
no timing assertions beyond wide margins."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

import wslab
from wslab.exercises.reading_and_writing import check_three_tasks
from wslab.experiments import reading_and_writing as rw

LESSON = "07_reading_and_writing"
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / f"{LESSON}.ipynb"


# The worked solution, and wrong answers people write --------------------------------


async def worked_solution(websocket, app):
    inbox, outbox = asyncio.Queue(maxsize=64), asyncio.Queue(maxsize=64)

    async def read():
        try:
            async for message in websocket:
                await inbox.put(message)
        except ConnectionClosed:
            pass

    async def work():
        while True:
            reply = await app.process(await inbox.get())
            if reply is not None:
                await outbox.put(reply)

    async def write():
        try:
            while True:
                await websocket.send(await outbox.get())
        except ConnectionClosed:
            pass

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(job) for job in (read(), work(), write())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()


async def single_loop(websocket, app):
    async for message in websocket:
        reply = await app.process(message)
        if reply is not None:
            await websocket.send(reply)


async def group_never_cancelled(websocket, app):
    """Three tasks in a TaskGroup; the reader ends, the other two wait forever."""
    inbox, outbox = asyncio.Queue(64), asyncio.Queue(64)

    async def read():
        async for message in websocket:
            await inbox.put(message)

    async def work():
        while True:
            await outbox.put(await app.process(await inbox.get()))

    async def write():
        while True:
            await websocket.send(await outbox.get())

    async with asyncio.TaskGroup() as group:
        group.create_task(read())
        group.create_task(work())
        group.create_task(write())


async def closed_escapes(websocket, app):
    """recv() in the reader: ConnectionClosedOK escapes and fails the group."""
    inbox, outbox = asyncio.Queue(64), asyncio.Queue(64)

    async def read():
        while True:
            await inbox.put(await websocket.recv())

    async def work():
        while True:
            await outbox.put(await app.process(await inbox.get()))

    async def write():
        while True:
            await websocket.send(await outbox.get())

    async with asyncio.TaskGroup() as group:
        group.create_task(read())
        group.create_task(work())
        group.create_task(write())


async def fire_and_forget(websocket, app):
    inbox, outbox = asyncio.Queue(64), asyncio.Queue(64)

    async def work():
        while True:
            await outbox.put(await app.process(await inbox.get()))

    async def write():
        while True:
            await websocket.send(await outbox.get())

    asyncio.create_task(work())
    asyncio.create_task(write())
    async for message in websocket:
        await inbox.put(message)


# The checker ---------------------------------------------------------------------------


def test_checker_passes_the_worked_solution():
    verdict = asyncio.run(check_three_tasks(worked_solution))
    assert verdict, verdict.message
    assert "none lost" in verdict.message


@pytest.mark.parametrize("answer, words", [
    (single_loop, ["waited", "pong", "stopped reading", "u0."]),
    (group_never_cancelled, ["still running", "cancel them"]),
    (closed_escapes, ["ExceptionGroup", "ConnectionClosedOK", "line", "return when it sees"]),
    (fire_and_forget, ["task(s)", "TaskGroup"]),
], ids=lambda v: getattr(v, "__name__", "words"))
def test_checker_fails_wrong_answers_with_the_right_hint(answer, words):
    verdict = asyncio.run(check_three_tasks(answer))
    assert not verdict
    for word in words:
        assert word in verdict.message, verdict.message
    assert "Traceback" not in verdict.message


def test_checker_refuses_a_function_that_is_not_a_handler():
    def not_async(websocket, app):
        return None

    async def one_argument(websocket):
        return None

    assert "async def" in asyncio.run(check_three_tasks(not_async)).message
    assert "two arguments" in asyncio.run(check_three_tasks(one_argument)).message


# The prompt codes and the experiments ---------------------------------------------------


def test_vague_code_makes_requests_wait_and_better_code_does_not():
    async def both():
        return await wslab.prompts.side_by_side(LESSON, rw.request_reply_scenario(),
                                                kind="latency")

    vague, better, figure = asyncio.run(both())
    assert figure is not None
    assert vague.summary()["lost"] == 0 and better.summary()["lost"] == 0
    assert vague.errors == [] and better.errors == []
    assert rw.peak_backlog(vague) > 20 and rw.peak_backlog(better) < 10
    vague_ms, better_ms = rw.request_latency_ms(vague), rw.request_latency_ms(better)
    assert vague_ms["p50"] > 10 * better_ms["p50"]
    assert vague_ms["p99"] > 2 * better_ms["p99"]


def test_single_loop_leaves_pings_behind_requests_and_three_tasks_do_not():
    runs = asyncio.run(rw.ping_experiment())
    single, split = runs["single loop"], runs["three tasks"]
    assert len(rw.ping_waits(single)) >= 5 and len(rw.ping_waits(split)) >= 10
    assert all(wait >= 0 for _, wait in rw.ping_waits(split))
    assert rw.longest_ping_wait_s(single) > 0.25
    assert rw.longest_ping_wait_s(split) < 0.05
    for run in (single, split):
        assert run.summary()["lost"] == 0 and run.summary()["tasks_left"] == 0
        assert rw.request_latency_ms(run)["p99"] > 200  # processing stays sequential
    rw.plot_ping_waits(single, split, timeout_s=0.5)


def test_tight_keepalive_trips_the_naive_loop_not_the_production_channel():
    runs = asyncio.run(rw.keepalive_experiment())
    naive, production = runs["naive + tight keepalive"], runs["production"]
    assert naive.summary()["lost"] > 0
    assert any("keepalive ping timeout" in e.error for e in naive.errors)
    assert production.summary()["lost"] == 0
    assert production.summary()["reconnects"] == 0 and production.errors == []


def test_helpers_on_a_run_without_pings():
    run = wslab.run("naive", rw.request_reply_scenario(count=10, settle_s=0.5).with_(faults=[]))
    assert rw.ping_waits(run) == [] and math.isnan(rw.longest_ping_wait_s(run))
    latency = rw.request_latency_ms(run)
    assert latency["max"] == latency["p50"] == 0  # in virtual time loopback takes no time


# The notebook's order: each exercise before what gives it away ---------------


def code_cells() -> list[tuple[int, str, list[str]]]:
    """(index, source, tags) of every code cell of the notebook."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return [(i, "".join(c["source"]), c["metadata"].get("tags", []))
            for i, c in enumerate(cells) if c["cell_type"] == "code"]


def test_the_exercise_comes_before_every_source_that_solves_it():
    code = code_cells()
    first = lambda text: next(i for i, source, _ in code if text in source)  # noqa: E731
    [prompt_cell] = [i for i, source, tags in code if "solution" in tags
                     and source.startswith("my_prompt = ")]
    [handler_cell] = [i for i, source, tags in code if "solution" in tags
                      and "async def three_task_handler" in source]
    assert first('prompts.prompt("vague")') < prompt_cell < first('prompts.prompt("better")')
    for reveal in ('prompts.code("better")', "Channel.run", "Channel._read", "self.inbox"):
        assert handler_cell < first(reveal), reveal
