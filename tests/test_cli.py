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
