"""Lesson 11 (observability): the checker, the experiment helpers and the prompt codes
behave as notebooks/11_observability.ipynb says. Real sockets on loopback; independent
runs go together in one event loop to keep the file short."""

from __future__ import annotations

import asyncio
import contextlib
import io

import pytest
from matplotlib.figure import Figure

import wslab
from wslab.exercises.observability import SCRIPT, check_outages, check_outages_offline
from wslab.experiments import observability as experiment

pytestmark = pytest.mark.timeout(90)


def solution(log_entries):  # the notebook's worked solution
    away = {}
    for entry in log_entries:
        if entry.get("side") != "client":
            continue
        spans = away.setdefault(entry["client"], [])
        if entry["event"] == "disconnected":
            spans.append((entry["t"], None))
        elif entry["event"] == "connected" and spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], entry["t"])
    return away


def ignores_the_client(log_entries):
    """Pairs each disconnection with the next connection of any client."""
    away, waiting = {}, []
    for e in log_entries:
        if e.get("side") != "client":
            continue
        if e["event"] == "disconnected":
            waiting.append(e)
        elif e["event"] == "connected" and waiting:
            d = waiting.pop(0)
            away.setdefault(d["client"], []).append((d["t"], e["t"]))
    for d in waiting:
        away.setdefault(d["client"], []).append((d["t"], None))
    return away


def counts_both_sides(log_entries):
    """Reads the server's events too: every outage twice."""
    away = {}
    for e in log_entries:
        spans = away.setdefault(e["client"], [])
        if e["event"] == "disconnected":
            spans.append((e["t"], None))
        elif e["event"] in ("connected", "session resumed") and spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], e["t"])
    return away


def any_attempt_ends_it(log_entries):
    """Takes a connect failed for a return."""
    away = {}
    for e in log_entries:
        if e.get("side") != "client":
            continue
        spans = away.setdefault(e["client"], [])
        if e["event"] == "disconnected":
            spans.append((e["t"], None))
        elif e["event"] in ("connected", "connect failed") and spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], e["t"])
    return away


def last_outage_only(log_entries):
    """One outage per client: a dict entry overwritten."""
    return {c: spans[-1:] for c, spans in solution(log_entries).items()}


def durations(log_entries):
    return {c: [end - start for start, end in spans if end] for c, spans in
            solution(log_entries).items()}


def raises(log_entries):
    return {e["client"]: [(e["t"], e["end"])] for e in log_entries}


def test_checker_fails_realistic_wrong_answers_with_the_right_hint():
    hints = {fn.__name__: check_outages_offline(fn) for fn in
             (ignores_the_client, counts_both_sides, any_attempt_ends_it, last_outage_only,
              durations, raises)}
    assert not any(hints.values())
    assert "client 0" in hints["ignores_the_client"].message
    assert "it is client 1 that connected" in hints["ignores_the_client"].message
    assert "2 outages starting at 0.40 s" in hints["counts_both_sides"].message
    assert "from the client's side" in hints["counts_both_sides"].message
    assert "your answer says 0.45 s" in hints["any_attempt_ends_it"].message
    assert "A connect failed is an attempt" in hints["any_attempt_ends_it"].message
    assert "Client 0 had 2 outages and your answer has 1" in hints["last_outage_only"].message
    assert "pair (start_s, end_s)" in hints["durations"].message
    assert "KeyError" in hints["raises"].message and "Traceback" not in hints["raises"].message


def test_the_script_holds_every_case():
    events = {(e["side"], e["event"]) for e in SCRIPT}
    assert ("server", "disconnected") in events and ("client", "connect failed") in events
    assert check_outages_offline(solution)


@pytest.fixture(scope="module")
def lesson():
    """The notebook's runs: both prompt codes side by side, production and naive, the
    checker with the solution, all in one event loop at once."""

    async def everything():
        chaos = experiment.chaos()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            (vague, better, fig), production, naive, verdict = await asyncio.gather(
                wslab.prompts.side_by_side("11_observability", chaos),
                wslab.arun("production", chaos),
                wslab.arun("naive", chaos),
                check_outages(solution))
        return {"vague": vague, "better": better, "production": production, "naive": naive,
                "printed": printed.getvalue(), "figure": fig, "verdict": verdict}

    return asyncio.run(everything())


def test_checker_passes_the_worked_solution_on_a_real_run(lesson):
    verdict = lesson["verdict"]
    assert verdict, verdict.message
    assert "of the lab's record" in verdict.message and "client 0 0.40" in verdict.message


def test_vague_code_prints_what_cannot_be_attributed(lesson):
    vague, printed = lesson["vague"], lesson["printed"]
    assert vague.summary()["lost"] == 0 and vague.logs == []
    lines = printed.splitlines()
    assert len(lines) > 450 and lines.count("Connection lost") >= 4
    grades = experiment.diagnose(vague, printed=printed).grades()
    assert "right" not in grades and grades.count("partly") >= 3
    assert experiment.diagnose(lesson["naive"]).grades() == ["no answer"] * 5


def test_better_code_and_production_answer_every_question(lesson):
    for name in ("better", "production"):
        run = lesson[name]
        assert run.summary()["lost"] == 0 and run.summary()["duplicated"] == 0
        diagnosis = experiment.diagnose(run)
        assert diagnosis.grades() == ["right"] * 5, diagnosis.text()
        logs = [e for e in run.logs if e["t"] <= run.end_s]
        assert experiment.same_outages(experiment.log_outages(logs),
                                       experiment.recorded_outages(run))
    better = lesson["better"]
    assert all("client" in e and "side" in e for e in better.logs)
    text = better.metrics.prometheus()
    assert "# TYPE ws_reconnects_total counter" in text
    assert better.metrics.value("ws_reconnects_total", side="client") == better.reconnects
    copies = sum(e["event"] == "duplicate dropped" for e in better.logs)
    assert better.metrics.value("ws_duplicates_dropped_total", side="server") == copies > 0


def test_production_story_matches_the_record(lesson):
    run = lesson["production"]
    truth = experiment.recorded_outages(run)
    assert len(truth[0]) == 2 and len(truth[1]) == len(truth[2]) == 1  # the cut, the restart
    assert abs(truth[0][0][0] - experiment.CUT_AT_S) < 0.05
    went_back = [e for e in run.logs if e["event"] == "no acknowledgement: going back"]
    assert {e["client"] for e in went_back} == {2}
    resent_logged = sum(e["resending"] for e in went_back)
    assert resent_logged <= run.metrics.value("wslab_messages_resent_total", side="client")


def test_pictures(lesson):
    diagnoses = [experiment.diagnose(lesson[n]) for n in ("naive", "better", "production")]
    assert isinstance(experiment.plot_diagnosis(diagnoses), Figure)
    figure = experiment.plot_outages(lesson["production"])
    assert isinstance(figure, Figure) and figure.axes[0].get_legend() is not None
    assert isinstance(lesson["figure"], Figure)


def test_audit_flags_the_prints_only_in_the_vague_code():
    prompts = wslab.prompts.load("11_observability")
    rules = {w: wslab.audit.audit(prompts.code(w)).rules for w in ("vague", "better")}
    assert "print-instead-of-logging" in rules["vague"]
    assert "print-instead-of-logging" not in rules["better"]
