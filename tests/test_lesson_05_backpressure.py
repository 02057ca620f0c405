"""Lesson 05 (backpressure): its checker, its experiments and its prompt code do
what notebooks/05_backpressure.ipynb says. Real runs on loopback, no timing asserted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import wslab
from wslab.exercises.backpressure import (
    LAB_CAPACITY,
    LAB_SCENARIO,
    LAB_WINDOW,
    check_bounded_queue,
    problem_in_run,
    queue_design,
)
from wslab.experiments import backpressure as experiment

pytestmark = pytest.mark.timeout(120)

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_backpressure.ipynb"
BURST = wslab.get_scenario("queue_overflow").with_(
    workload=wslab.Workload(count=320, rate_per_s=1000, direction="up", size_bytes=1024))


def notebook_cells() -> list[tuple[str, str, list[str]]]:
    """(cell type, source, tags) of every cell of the notebook."""
    return [(c["cell_type"], "".join(c["source"]), c["metadata"].get("tags", []))
            for c in json.loads(NOTEBOOK.read_text())["cells"]]


def solution_sources() -> list[str]:
    return [source for _, source, tags in notebook_cells() if "solution" in tags]


def worked_solution() -> type:
    """The class in the notebook's cell tagged "solution" that defines it (the other
    solution cell is the prompt exercise's)."""
    [source] = [text for text in solution_sources() if "class BoundedQueue" in text]
    namespace = {"asyncio": asyncio}
    exec(source, namespace)  # noqa: S102 (the notebook's own solution cell)
    return namespace["BoundedQueue"]


class SilentDrop:
    """drop_oldest that forgets to tell: the classic bug."""

    def __init__(self, capacity, policy, on_refused):
        self.items, self.policy, self.on_refused = asyncio.Queue(maxsize=capacity), policy, on_refused

    async def put(self, message):
        if self.items.full() and self.policy != "block":
            if self.policy == "reject":
                self.on_refused(message)
                return
            self.items.get_nowait()  # dropped, and nobody is told
        await self.items.put(message)

    async def get(self):
        return await self.items.get()

    def __len__(self):
        return self.items.qsize()


class Unbounded(SilentDrop):
    """Ignores the capacity: asyncio.Queue() with no maxsize."""

    def __init__(self, capacity, policy, on_refused):
        super().__init__(capacity, policy, on_refused)
        self.items = asyncio.Queue()


class PutNowaitEverywhere(SilentDrop):
    """Uses put_nowait for reject and drop_oldest, and lets QueueFull escape."""

    async def put(self, message):
        if self.policy == "block":
            await self.items.put(message)
        else:
            self.items.put_nowait(message)


class DropsTheNewest(SilentDrop):
    """"drop_oldest" that refuses the new message instead: that is reject."""

    async def put(self, message):
        if self.items.full() and self.policy != "block":
            self.on_refused(message)
            return
        await self.items.put(message)


def test_the_checker_passes_the_worked_solution_in_the_lab():
    verdict = asyncio.run(check_bounded_queue(worked_solution()))
    assert verdict, verdict.message
    assert "nothing was lost" in verdict.message


@pytest.mark.parametrize("wrong, hint", [
    (SilentDrop, "policy 'drop_oldest': m0, m1 vanished without on_refused"),
    (Unbounded, "policy 'block': put('m3') into a full queue of 3 returned at once"),
    (PutNowaitEverywhere, "policy 'reject': put('m3') raised QueueFull"),
    (DropsTheNewest, "on_refused got ['m3', 'm4']; expected ['m0', 'm1']"),
], ids=lambda x: x.__name__ if isinstance(x, type) else "")
def test_the_checker_names_what_a_wrong_queue_does(wrong, hint):
    verdict = asyncio.run(check_bounded_queue(wrong))
    assert not verdict
    assert hint in verdict.message
    assert "Traceback" not in verdict.message


def test_in_the_lab_a_silent_drop_is_a_loss_and_an_unbounded_queue_overshoots():
    dropped = wslab.run(queue_design(SilentDrop, "drop_oldest"), LAB_SCENARIO)
    assert dropped.summary()["lost"] > 0
    assert "never arrived and were never refused, first u0." in problem_in_run(dropped, "drop_oldest")
    unbounded = wslab.run(queue_design(Unbounded, "reject"), LAB_SCENARIO)
    assert unbounded.summary()["peak_queue"] > LAB_CAPACITY + LAB_WINDOW + 1
    assert "messages were waiting at once" in problem_in_run(unbounded, "reject")


def test_vague_code_grows_with_the_burst_and_better_code_stays_bounded():
    prompts = wslab.prompts.load("05_backpressure")
    vague = wslab.run(prompts.design("vague"), BURST).summary()
    better_run = wslab.run(prompts.design("better"), BURST)
    better = better_run.summary()
    assert vague["lost"] == 0 and better["lost"] == 0 and better["errors"] == 0
    assert better["peak_queue"] <= 100 + 16 + 1  # OUTBOX_SIZE + WINDOW + one in hand
    assert vague["peak_queue"] > 1.5 * better["peak_queue"]
    assert vague["peak_buffered_bytes"] < vague["peak_queue"] * 1024 / 3  # in the heap
    assert max(s["producer_backlog"] for s in better_run.samples) > 40  # the producer waits


def test_library_limits_bound_the_library_not_the_kernel():
    limits = asyncio.run(experiment.library_limits())
    assert limits.oversized_close_code == 1009
    assert limits.library_bound_bytes == 4 * 1024 + 16 * 1024
    assert limits.sent_before_send_waited > 10 * limits.library_bound_bytes
    assert limits.kernel_bytes > 0


def test_a_client_that_ignores_its_credit_is_closed_1008():
    assert asyncio.run(experiment.flood_close_code()) == 1008


def test_overflow_policies_are_bounded_refuse_explicitly_and_draw():
    short = BURST.with_(workload=wslab.Workload(count=150, rate_per_s=1000, direction="up",
                                                size_bytes=1024))
    runs = asyncio.run(experiment.overflow_policies(short, capacity=16, window=4))
    assert list(runs) == ["block", "reject", "drop_oldest"]
    for policy, run in runs.items():
        s = run.summary()
        assert s["lost"] == 0 and s["peak_queue"] <= 16 + 4, policy
        assert (s["rejected"] == 0) == (policy == "block"), policy
    figure = experiment.policies_figure(runs)
    assert len(figure.axes) == 6
    assert "reject" in figure.axes[1].get_title()


# The notebook's order: each exercise before what gives it away ---------------


def test_the_notebooks_prompt_passes_the_review_in_its_own_words():
    [source] = [text for text in solution_sources() if text.startswith("my_prompt = ")]
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 (the notebook's own solution cell)
    prompt = namespace["my_prompt"]
    review = wslab.prompts.review_prompt(prompt, "05_backpressure")
    assert review.passed, str(review)
    assert prompt.strip() != wslab.prompts.load("05_backpressure").better.strip()


def test_each_exercise_comes_before_the_cells_that_give_it_away():
    code = [(i, source, tags) for i, (kind, source, tags) in enumerate(notebook_cells())
            if kind == "code"]
    first = lambda text: next(i for i, source, _ in code if text in source)  # noqa: E731
    [prompt_cell] = [i for i, source, tags in code if "solution" in tags
                     and source.startswith("my_prompt = ")]
    [queue_cell] = [i for i, source, tags in code if "solution" in tags
                    and "class BoundedQueue" in source]
    assert first('prompts.prompt("vague")') < prompt_cell < first('prompts.prompt("better")')
    assert queue_cell < first("ReliableClient._feed)")
