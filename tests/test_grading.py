"""The grader: production passes everything, each sample fails exactly what it
should, a file that does not fit gets a clear message, the CLI exits 0/1/2."""

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import wslab
from wslab.errors import DesignContractError
from wslab.grading import CRITERIA, Gradebook, Scorecard, grade
from wslab.loader import load_design

from test_readme_scorecard import assert_readme_row

ROOT = Path(__file__).resolve().parent.parent
SUBMISSIONS = ROOT / "data" / "submissions"

# sample -> {failed scenario: exactly the checks that fail there}. None of these
# samples uses the lab's tokens, so "revocation enforced" is not applicable to any.
EXPECTED = {
    "chat_tutorial.py": {
        "network_interruption": {"no loss", "came back"},
        "server_restart": {"no loss", "came back"},
        "slow_consumer": {"bounded"},
        "queue_overflow": {"bounded"},
        "idle_black_hole": {"dead peer noticed", "no loss", "came back"},
        "shutdown_in_flight": {"no loss", "came back"},
        "reconnect_storm": {"no loss", "came back"},
    },
    "reconnects_but_loses.py": {  # like the tutorial, except that it comes back
        "network_interruption": {"no loss"},
        "server_restart": {"no loss"},
        "slow_consumer": {"bounded"},
        "queue_overflow": {"bounded"},
        "idle_black_hole": {"dead peer noticed", "no loss", "came back"},
        "shutdown_in_flight": {"no loss"},
        "reconnect_storm": {"no loss"},
    },
    "queues_without_bound.py": {
        "slow_consumer": {"bounded", "no loss"},
        "queue_overflow": {"bounded"},
    },
    "acks_without_dedup.py": {  # every resend is processed again
        "network_interruption": {"no duplicates", "in order"},
        "server_restart": {"no duplicates"},
        "slow_consumer": {"bounded"},  # its window bounds the client, not the server's pushes
        "queue_overflow": {"no duplicates"},
        "idle_black_hole": {"dead peer noticed", "no loss", "came back", "no duplicates"},
        "latency_spike": {"no duplicates"},
        "lost_acknowledgements": {"no duplicates"},
        "shutdown_in_flight": {"no duplicates", "in order"},
        "token_expiry": {"no duplicates"},
        "reconnect_storm": {"no duplicates"},
    },
}
COMES_BACK = {"reconnects_but_loses.py", "queues_without_bound.py", "acks_without_dedup.py"}


def failures(card: Scorecard) -> dict[str, set[str]]:
    return {row.scenario: {c.criterion.key for c in row.failures} | ({"error"} if row.error else set())
            for row in card.rows if not row.passed}


@pytest.mark.timeout(120)
def test_production_passes_every_scenario():
    card = grade("production", progress=False)
    assert [row.scenario for row in card.rows] == list(wslab.SCENARIOS)
    assert card.passed, card.text()
    assert all(row.checks for row in card.rows)  # every scenario has criteria
    assert all(c.applicable for row in card.rows for c in row.checks)  # and it is judged on all
    assert card.lessons() == []
    assert_readme_row(card)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_fails_exactly_what_it_should(name):
    card = grade(SUBMISSIONS / name, progress=False)
    failed = failures(card)
    assert set(failed) == set(EXPECTED[name]), card.text()
    for scenario, expected in EXPECTED[name].items():
        assert failed[scenario] == expected, (scenario, card.text())
    tokens = card["token_expiry"].checks[-1]
    assert tokens.criterion.key == "revocation enforced" and not tokens.applicable
    assert "does not use the lab's tokens" in tokens.measured
    if name in COMES_BACK:
        assert not any("came back" in keys for scenario, keys in failed.items()
                       if scenario in ("network_interruption", "server_restart")), card.text()
    # every failure names the lesson that teaches the fix
    for row in card.rows:
        if not row.passed:
            assert row.lessons and all("notebooks/" in lesson for lesson in row.lessons)
    assert card.audit is not None  # a file is also read
    assert_readme_row(card)


def test_every_criterion_names_an_existing_lesson():
    for scenario, criteria in CRITERIA.items():
        assert scenario in wslab.SCENARIOS
        for criterion in criteria:
            assert wslab.course.lesson(criterion.lesson)


# A design that does not finish: the grader reports it and goes on --------------

async def _stubborn_handler(websocket, app):
    refusals = 0
    while True:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            refusals += 1
            if refusals > 1:  # ignores the lab's cancellation, not the loop's cleanup
                raise


async def _quiet_client(app):
    async with app.connect() as websocket:
        async for message in app.outgoing():
            await websocket.send(message)


@pytest.mark.timeout(60)
def test_a_design_that_hangs_fails_its_scenario_and_grading_goes_on():
    stubborn = wslab.Design("stubborn", handler=_stubborn_handler, client=_quiet_client)
    card = grade(stubborn, scenarios=["lost_acknowledgements", "network_interruption"],
                 progress=False)
    assert len(card.rows) == 2  # the grader went on after the first hang
    for row in card.rows:
        assert row.run is None and not row.passed
        assert "ignored cancellation" in row.error and "_stubborn_handler" in row.error
        assert row.lessons == [str(wslab.course.lesson("08b"))]


# Display ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_scorecard_table_json_and_grid(capsys):
    book = grade("naive", "production", scenarios=["network_interruption", "slow_consumer"],
                 progress=True)
    assert "naive × slow_consumer" in capsys.readouterr().err  # the terminal progress bar
    assert isinstance(book, Gradebook) and not book.passed
    naive, production = book["naive"], book["production"]
    assert naive.failed == ["network_interruption", "slow_consumer"]
    assert "04_durability" in naive.text() and "FAIL" in naive.text()
    assert "pass    in order: 0 out of order" in naive.text()  # every check is listed
    page = naive._repr_html_()
    assert page.count("<tr") == 3 and "lesson for the fix" in page
    assert "<b>FAIL</b> no loss" in page and "<b>pass</b> no duplicates" in page
    data = json.loads(json.dumps(book.to_json()))
    assert [c["passed"] for c in data] == [False, True]
    check = data[0]["scenarios"][0]["checks"][0]
    assert set(check) == {"criterion", "requires", "passed", "applicable", "status", "measured",
                          "lesson"}
    assert [c["criterion"] for c in data[0]["scenarios"][0]["checks"]] == [
        "no loss", "no duplicates", "in order", "on time", "came back"]
    figure = book.plot()
    cells = [p for p in figure.axes[0].patches]
    assert len(cells) == 4
    colors = [tuple(round(x, 2) for x in p.get_facecolor()[:3]) for p in cells]
    assert colors[0] != colors[2]  # naive failed where production passed
    assert "<table>" in book._repr_html_()
    # a scenario that cannot apply (200 client processes) is grey and says so, not green
    row = production.rows[1]
    production.rows[1] = dataclasses.replace(row, not_run="200 client processes", checks=[])
    figure = book.plot()
    grid = figure.axes[0]
    grey = tuple(round(x, 2) for x in grid.patches[3].get_facecolor()[:3])
    assert grey not in colors and "not run" in [t.get_text() for t in grid.texts]
    assert "1/1 passed" in [t.get_text().split("\n")[1] for t in grid.get_yticklabels()]


def test_bad_input_to_grade():
    with pytest.raises(wslab.ConfigError, match="grade what"):
        grade()
    with pytest.raises(wslab.UnknownNameError):
        grade("naive", scenarios=["no_such_scenario"])
    with pytest.raises(DesignContractError, match="__main__"):
        grade(SUBMISSIONS / "tutorial_echo.py")  # asyncio.run(main()) at import time


# Loading a learner's file ------------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("def f(:\n    pass\n", "not valid Python: .* line 1"),
    ("import os\nx = 1 / 0\n", "raised ZeroDivisionError at line 2"),
    ("import flask_sockets_helper\n", "'flask_sockets_helper' is not installed"),
    ("async def echo(websocket):\n    pass\n", "(?s)defines no handler. It defines echo.*defines no client"),
    ("async def handler(websocket):\n    pass\nasync def client(app):\n    pass\n",
     "must accept 2 positional argument"),
    ("async def handler(websocket, path):\n    pass\nasync def client(app):\n    pass\n",
     "before version 10.1"),
    ("import asyncio\nasync def main():\n    pass\nasyncio.run(main())\n", "line 4 calls run()"),
    ("def handler(websocket, app):\n    pass\nasync def client(app):\n    pass\n",
     "not 'async def'"),
])
def test_a_file_that_does_not_fit_gets_a_clear_message(source, expected):
    with pytest.raises(DesignContractError, match=expected) as info:
        load_design(source)
    assert "Traceback" not in str(info.value)


def test_a_file_that_hangs_at_import_is_refused_in_time():
    with pytest.raises(DesignContractError, match="did not finish within 0.5 s"):
        load_design("import time\nwhile True:\n    time.sleep(0.05)\n", import_timeout_s=0.5)


def test_a_missing_file_and_a_guarded_main():
    with pytest.raises(DesignContractError, match="no such file"):
        load_design("nowhere/mine.py")
    design = load_design(
        "import asyncio\n"
        "async def handler(websocket, app):\n    await websocket.wait_closed()\n"
        "async def client(app):\n    pass\n"
        "if __name__ == '__main__':\n    asyncio.run(main())\n", name="guarded")
    assert design.name == "guarded"


@pytest.mark.timeout(60)
def test_what_a_loaded_file_logs_is_kept_in_the_run_not_printed(capfd):
    run = wslab.run(SUBMISSIONS / "reconnects_but_loses.py", "network_interruption")
    assert any("connection lost" in entry["event"] and entry["logger"].startswith("wslab.submissions")
               for entry in run.logs)
    assert "connection lost" not in capfd.readouterr().err


# The command line -------------------------------------------------------------------

def wslab_cli(*args):
    return subprocess.run([sys.executable, "-m", "wslab", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


@pytest.mark.timeout(150)
def test_cli_grade_exit_status():
    passed = wslab_cli("grade", "production", "--scenario", "network_interruption", "--json")
    assert passed.returncode == 0, passed.stderr
    assert json.loads(passed.stdout)["passed"] is True
    failed = wslab_cli("grade", "naive", "--scenario", "network_interruption")
    assert failed.returncode == 1 and "FAIL" in failed.stdout and "04_durability" in failed.stdout
    wrong = wslab_cli("grade", "data/submissions/tutorial_echo.py")
    assert wrong.returncode == 2 and "__main__" in wrong.stderr and "Traceback" not in wrong.stderr
    unknown = wslab_cli("grade", "nope")
    assert unknown.returncode == 2 and "known designs" in unknown.stderr
