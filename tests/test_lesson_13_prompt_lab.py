"""Lesson 13 (prompt lab): its checker, its experiment helpers and its prompt code do
what notebooks/13_prompt_lab.ipynb says. Real runs on loopback, no timing asserted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets

import wslab
from wslab.audit import LESSONS, AuditReport, Finding, audit
from wslab.exercises.prompt_lab import check_adapted
from wslab.experiments import prompt_lab as experiment
from wslab.grading import CRITERIA, Check, ScenarioGrade, Scorecard

pytestmark = pytest.mark.timeout(120)

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "13_prompt_lab.ipynb"


def worked_solution() -> tuple:
    """handler and client from the notebook's cell tagged "solution" that defines them (the
    other solution cell is the prompt exercise's)."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    [source] = ["".join(c["source"]) for c in cells if "solution" in c["metadata"].get("tags", [])
                and "def handler(" in "".join(c["source"])]
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 (the notebook's own solution cell)
    return namespace["handler"], namespace["client"]


# Wrong answers a learner writes -------------------------------------------------

async def good_handler(websocket, app):
    async for message in websocket:
        reply = await app.process(message)
        if reply is not None:
            await websocket.send(reply)


async def good_client(app):
    async with app.connect() as websocket:
        async for message in app.outgoing():
            await websocket.send(message)
            await app.deliver(await websocket.recv())


async def path_handler(websocket, path):  # the tutorial's signature, kept
    async for message in websocket:
        await websocket.send(f"Echo: {message}")


async def echo_text_handler(websocket, app):  # processes, but sends its own text back
    async for message in websocket:
        await app.process(message)
        await websocket.send(f"Echo: {message}")


async def send_only_client(app):  # never reads the echoes
    async with app.connect() as websocket:
        async for message in app.outgoing():
            await websocket.send(message)


async def localhost_client(app):  # the tutorial's URI
    async with websockets.connect("ws://localhost:8765", proxy=None) as websocket:
        async for message in app.outgoing():
            await websocket.send(message)
            await app.deliver(await websocket.recv())


CONNECTED = set()


async def broadcast_handler(websocket, app):  # keeps the tutorial's broadcast
    CONNECTED.add(websocket)
    try:
        async for message in websocket:
            await websocket.send(await app.process(message))
            for other in CONNECTED:
                if other is not websocket:
                    await other.send(message)
    finally:
        CONNECTED.discard(websocket)


async def reading_client(app):  # sends and reads in two tasks (any number of replies)
    async with app.connect() as websocket:
        async def receive():
            async for reply in websocket:
                await app.deliver(reply)

        receiver = asyncio.create_task(receive())
        async for message in app.outgoing():
            await websocket.send(message)
        await asyncio.sleep(0.3)
        receiver.cancel()


# The checker ---------------------------------------------------------------------

def test_the_worked_solution_passes():
    verdict = asyncio.run(check_adapted(*worked_solution()))
    assert verdict, verdict.message
    assert "120 of 120" in verdict.message


@pytest.mark.parametrize("handler, client, hint", [
    (path_handler, good_client, "'path' parameter"),
    (echo_text_handler, good_client, "never produced"),
    (good_handler, send_only_client, "must read its connection"),
    (good_handler, localhost_client, "connect with app.connect()"),
    (broadcast_handler, reading_client, "delivered 2 times"),
], ids=["path", "echo-text", "never-reads", "localhost", "broadcast"])
def test_wrong_adaptations_get_the_right_hint(handler, client, hint):
    verdict = asyncio.run(check_adapted(handler, client))
    assert not verdict
    assert hint in verdict.message, verdict.message
    assert "Traceback" not in verdict.message


def test_a_handler_that_never_processes_names_the_first_lost_message():
    async def forgetful_handler(websocket, app):
        async for message in websocket:
            await websocket.send(message)  # echoes the text, never tells the application

    verdict = asyncio.run(check_adapted(forgetful_handler, good_client))
    assert not verdict
    assert "u0.0" in verdict.message and "app.process" in verdict.message


# The prompts and their code --------------------------------------------------------

def test_better_md_is_the_template_filled_with_the_lab_numbers():
    pair = wslab.prompts.load("13_prompt_lab")
    template = experiment.template()
    assert set(experiment.placeholders(template)) == set(experiment.LAB_ASSUMPTIONS)
    assert experiment.fill(template, experiment.LAB_ASSUMPTIONS) == pair.better
    assert "[[" not in pair.better and "make it production-ready" in pair.vague.lower()
    with pytest.raises(wslab.ConfigError, match="detection_target"):
        experiment.fill(template, {**experiment.LAB_ASSUMPTIONS, "detection_target": " "})
    with pytest.raises(wslab.ConfigError, match="no placeholder is named detection_taget"):
        experiment.fill(template, {**experiment.LAB_ASSUMPTIONS, "detection_taget": "1 s"})
    assert "InvalidMessage" in experiment.SELF_AUDIT.read_text()


def test_vague_code_loses_the_black_hole_and_better_code_passes_it():
    async def both():
        pair = wslab.prompts.load("13_prompt_lab")
        vague = await wslab.arun(pair.design("vague"), "idle_black_hole")
        book = await wslab.agrade(pair.design("better"), progress=False,
                                  scenarios=["idle_black_hole", "network_interruption",
                                             "lost_acknowledgements"])
        return vague, book

    vague, better = asyncio.run(both())
    s = vague.summary()
    assert s["lost"] > s["sent"] / 2 and s["detection_s"] != s["detection_s"]  # never noticed
    assert better.passed, better.text()
    reading = audit(wslab.prompts.load("13_prompt_lab").code("vague"))
    assert "no-keepalive-settings" not in reading.rules  # 20 s is "a setting"


def test_the_loader_explains_each_standalone_sample_and_loads_the_others():
    assert "line 33 calls run()" in experiment.load_error(experiment.sample_path("tutorial_echo.py"))
    assert "defines no client" in experiment.load_error(
        experiment.sample_path("background_worker_queue.py"))
    sensor = experiment.load_error(experiment.sample_path("sensor_reconnect_loop.py"))
    assert "defines no handler" in sensor and "defines no client" in sensor
    for name in experiment.FITTING:
        assert experiment.load_error(experiment.sample_path(name)) is None, name
    with pytest.raises(wslab.ConfigError, match="no sample"):
        experiment.sample_path("nope.py")
    report = experiment.audit_sample("chat_tutorial.py")
    assert report.source_name == "data/submissions/chat_tutorial.py"
    assert "fire-and-forget-send" in report.rules


# The reading against the runs -------------------------------------------------------

def criterion(scenario: str, key: str):
    return next(c for c in CRITERIA[scenario] if c.key == key)


def finding(rule: str) -> Finding:
    return Finding(rule, 1, "", "", LESSONS[rule])


def test_compare_sorts_failures_and_findings():
    card = Scorecard("synthetic", [
        ScenarioGrade("queue_overflow", None, [
            Check(criterion("queue_overflow", "no loss"), True, "0 lost"),
            Check(criterion("queue_overflow", "bounded"), False, "peak queue 400")]),
        ScenarioGrade("token_expiry", None, [
            Check(criterion("token_expiry", "revocation enforced"), False, "29 delivered")]),
        ScenarioGrade("shutdown_in_flight", None, [], error="ignored cancellation"),
    ])
    report = AuditReport([finding("unbounded-queue"), finding("gather-without-cancel"),
                          finding("print-instead-of-logging")], "synthetic")
    result = experiment.compare(card, report)
    assert result.caught == ["bounded"]
    assert result.missed == ["revocation enforced", "did not finish"]
    assert result.no_consequence == ["gather-without-cancel"]
    assert result.not_measured == ["print-instead-of-logging"]
    assert [result.state(k) for k in ("bounded", "revocation enforced", "nothing left running",
                                      "no loss")] == ["caught", "missed", "no consequence", "clean"]
    table = experiment.ComparisonTable([result])
    assert "bounded (1)" in table.text() and "<table>" in table._repr_html_()
    figure = experiment.reading_figure([result, result])
    assert len(figure.axes[0].patches) == 2 * len(experiment.CRITERION_KEYS)


def test_every_audit_rule_has_a_prediction_the_grader_can_measure_or_none():
    assert set(experiment.PREDICTS) == set(LESSONS)
    for predicted in experiment.PREDICTS.values():
        assert predicted <= set(experiment.CRITERION_KEYS)
    assert {"no duplicates", "revocation enforced"} <= set(experiment.unread_criteria())
    assert "no loss" not in experiment.unread_criteria()


def test_a_graded_sample_against_its_reading():
    [storm] = [s for s in experiment.GRADED_SCENARIOS if s.name == "reconnect_storm"]
    assert storm.clients == experiment.STORM_CLIENTS
    book = asyncio.run(experiment.grade_samples(["queues_without_bound.py"], progress=False))
    card = book if isinstance(book, Scorecard) else book.cards[0]
    result = experiment.compare(card, experiment.audit_sample("queues_without_bound.py"))
    assert "bounded" in result.caught  # asyncio.Queue() without maxsize, measured
    assert "no loss" in result.missed  # 85 pushes lost in slow_consumer: no rule predicts it
    assert "revocation enforced" not in result.missed  # no tokens used: not applicable
    assert "receive-loop-no-shutdown" in result.no_consequence


def test_the_closing_lesson_assembles_the_learners_template():
    """The learner's own template is assembled, named by its file (never an absolute path),
    with the lessons still missing; and three rungs are graded, the article's in the middle."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells]
    [at] = [i for i, s in enumerate(sources) if s.startswith("## Your template, assembled")]
    assembled = next(s for c, s in zip(cells[at + 1:], sources[at + 1:]) if c["cell_type"] == "code")
    assert "template = wslab.prompts.assemble_template()" in assembled
    assert "template.path.name" in assembled and "template.missing" in assembled
    assert "str(template.path)" not in assembled
    [ladder] = [s for s in sources if "await wslab.agrade(" in s and "design(\"article\")" in s]
    assert "dataclasses.replace" in ladder and "prompts.design(\"better\")" in ladder
