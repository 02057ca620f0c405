"""What the display module shows for records it is given (no runs needed), and
that the progress bar writes to stderr only."""

import pytest

from wslab.display import GradingProgress, gradebook_markdown, short_failure
from wslab.grading import Check, Criterion, ScenarioGrade, Scorecard


def check(key: str, passed: bool | None, measured: str, applicable: bool = True) -> Check:
    return Check(Criterion(key, "a requirement", "04"), passed, measured, applicable)


@pytest.mark.parametrize("made, short", [
    (check("no loss", False, "200 of 300 lost"), "lost 200"),
    (check("no duplicates", False, "3 duplicate deliveries"), "+3d"),
    (check("bounded", False, "peak 376 held by the design; peak 380 waiting"), "queue 376"),
    (check("dead peer noticed", False, "the dead connection was still open"), "not noticed"),
    (check("dead peer noticed", False, "noticed after 10.75 s"), "noticed after 10.75 s"),
    (check("spread out", False, "peak 241 attempts in 10 ms (1.20 per client)"),
     "241 attempts in 10 ms"),
    (check("my own rule", False, "7 things wrong"), "my own rule"),  # a criterion of one's own
    (check("no loss", None, "unknown: no ledger"), "no loss unknown"),
])
def test_a_failed_check_in_a_few_words(made, short):
    assert short_failure(made) == short


def test_markdown_table_marks_not_applicable_and_a_run_that_did_not_finish():
    rows = [ScenarioGrade("token_expiry", None, [
                check("no loss", True, "0 of 10 lost"),
                check("revocation enforced", None, "not applicable: no tokens", applicable=False)]),
            ScenarioGrade("shutdown_in_flight", None, [], error="ignored cancellation")]
    table = gradebook_markdown([Scorecard("mine | yours", rows)])
    assert table.splitlines() == [
        "| design | token expiry | shutdown in flight | passed | checks |",
        "|---|---|---|---|---|",
        "| mine \\| yours | ✓ (n/a: revocation enforced) | ✗ did not finish | 1/2 | 1/1 |",
    ]
    other = Scorecard("other", [rows[0]])
    with pytest.raises(ValueError, match="different scenarios"):
        gradebook_markdown([Scorecard("mine", rows), other])
    with pytest.raises(ValueError, match="no scorecard"):
        gradebook_markdown([])


def test_progress_goes_to_stderr_per_percent_and_never_to_stdout(capsys):
    bar = GradingProgress(total_s=2.0, show=True)
    for step in range(1000):  # a thousand reports, at most a hundred redraws
        bar.update("a × b", step / 999, 1.0)
    bar.update("c × d", 0.5, 1.0)
    bar.close(finished=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "grading:  50%" in err and "a × b" in err and "100%" in err and "done" in err
    assert err.count("\r") <= 103
    with pytest.raises(ValueError, match="total_s"):
        GradingProgress(total_s=0, show=False)


def test_no_progress_when_not_asked(capsys):
    bar = GradingProgress(total_s=1.0, show=False)
    bar.update("a × b", 1.0, 1.0)
    bar.close(finished=True)
    assert capsys.readouterr() == ("", "")
    assert bar.done == {"a × b": 1.0}
