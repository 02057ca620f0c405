"""The command line, as a user (or a course's CI) calls it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(90)


def wslab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wslab", *args], capture_output=True,
                          text=True, timeout=80, cwd=ROOT)


def test_scenarios_json_lists_every_standard_scenario():
    out = wslab("scenarios", "--json")
    assert out.returncode == 0
    names = [s["name"] for s in json.loads(out.stdout)]
    assert {"network_interruption", "server_restart", "slow_consumer", "reconnect_storm"} <= set(names)


def test_run_json_reports_the_naive_loss():
    out = wslab("run", "--design", "naive", "--scenario", "network_interruption", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["lost"] > 0 and summary["design"] == "naive"


def test_run_table_for_people():
    out = wslab("run", "--design", "production", "--scenario", "network_interruption", "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert "lost" in out.stdout and "seed 3" in out.stdout


@pytest.mark.parametrize("args, says", [
    (("run", "--design", "nope", "--scenario", "network_interruption"), "unknown design 'nope'"),
    (("run", "--design", "naive", "--scenario", "nope"), "unknown scenario 'nope'"),
    (("run", "--design", "naive", "--scenario", "network_interruption", "--clients", "0"), "clients"),
    (("audit", "no/such/file.py"), "no such file"),
])
def test_bad_usage_exits_2_with_a_message(args, says):
    out = wslab(*args)
    assert out.returncode == 2
    assert says in out.stderr


def test_audit_exit_status_says_whether_something_was_found():
    found = wslab("audit", "data/submissions/tutorial_echo.py", "--json")
    assert found.returncode == 1
    assert "outdated-handler-signature" in {f["rule"] for f in json.loads(found.stdout)["findings"]}
    clean = wslab("audit", "wslab/production/channel.py")
    assert clean.returncode == 0


# grade: progress on stderr only, the table in Markdown ---------------------------------

FAST = ("--scenario", "idle_black_hole")  # one short scenario


def test_grade_piped_shows_progress_on_stderr_and_never_on_stdout():
    out = wslab("grade", "naive", *FAST)
    assert out.returncode == 1  # naive fails the black hole
    assert "grading" in out.stderr and "100%" in out.stderr and "naive × idle_black_hole" in out.stderr
    assert out.stdout.startswith("naive: 0 of 1 scenarios passed")
    assert "grading" not in out.stdout and "%|" not in out.stdout and "\r" not in out.stdout


@pytest.mark.parametrize("flag", ["--json", "--quiet"])
def test_grade_with_json_or_quiet_shows_no_progress(flag):
    out = wslab("grade", "naive", *FAST, flag)
    assert out.returncode == 1
    assert out.stderr == ""
    if flag == "--json":
        assert json.loads(out.stdout)["scenarios"][0]["scenario"] == "idle_black_hole"


def test_grade_markdown_prints_the_designs_by_scenarios_table():
    out = wslab("grade", "naive", "production", *FAST, "--scenario", "token_expiry",
                "--markdown", "--quiet")
    assert out.returncode == 1, out.stderr  # naive fails
    assert out.stdout.splitlines() == [
        "| design | idle black hole | token expiry | passed | checks |",
        "|---|---|---|---|---|",
        "| naive | ✗ lost 75, not noticed, never back | ✓ (n/a: revocation enforced) | 1/2 | 7/10 |",
        "| production | ✓ | ✓ | 2/2 | 11/11 |",
    ]


def test_grade_json_and_markdown_exclude_each_other():
    out = wslab("grade", "naive", *FAST, "--json", "--markdown")
    assert out.returncode == 2 and "not allowed with" in out.stderr
