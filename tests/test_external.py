"""Designs as real processes (wslab.external): the line protocol, bad input, real
restarts and cleanup, mixed pairs, and the Node.js pairs graded from the command line.

Runs with processes keep real time, so every assertion on them is a relation with a
margin that holds on a machine busy with other work (two CPU hogs): nothing lost by
the production pair, something lost by the naive one; never a timing. Bad input is
checked with small Python programs, so those tests run without Node.js; the Node
tests skip, saying what to install, where Node.js 18+ or node/node_modules is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

import wslab
from wslab.errors import ConfigError, DesignContractError, ExternalProcessError
from wslab.external import (MAX_CLIENT_PROCESSES, NODE_DIR, ProtocolError, external_design,
                            group_members, load_design_file, node_pair, parse_line, why_no_node)
from wslab.experiments.nodejs import PYTHON_NAIVE_FAILED, outcomes, stored_gradebook

ROOT = Path(__file__).resolve().parent.parent
PY = shlex.quote(sys.executable)
BAD_INPUT_S = 5.0  # the bound: a clear error within 5 s, nothing left running


WHY_NO_NODE = why_no_node()
needs_node = pytest.mark.skipif(WHY_NO_NODE is not None, reason=WHY_NO_NODE or "")


def running_with(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def refused(port: int) -> bool:
    """Nothing accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def processes_of(run) -> list[dict]:
    return [entry for entry in run.logs if entry.get("event") in ("started", "exited")]


# The line protocol: pure parsing ---------------------------------------------------------


@pytest.mark.timeout(10)
def test_protocol_lines_parse_to_their_fields():
    assert parse_line(b'{"op": "pull"}\n', role="client").fields == {}
    assert parse_line('{"op": "pull", "n": 5}', role="client").fields == {"n": 5}
    line = parse_line(b'{"op": "deliver", "ref": 7, "msg": "{\\"id\\": \\"d0.1\\"}"}\r\n',
                      role="client")
    assert (line.op, line.fields) == ("deliver", {"ref": 7, "msg": '{"id": "d0.1"}'})
    assert parse_line('{"op": "open", "client": 3}', role="server").fields == {"client": 3}
    assert parse_line('{"op": "process", "ref": "a", "msg": "x"}', role="server").op == "process"
    reject = parse_line('{"op": "reject", "msg": "x", "reason": "full"}', role="server")
    assert reject.fields == {"msg": "x", "reason": "full"}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("role, line, says", [
    ("client", b"hello world", "not JSON"),
    ("client", b"", "a blank line"),
    ("client", b"[1, 2]", "not a JSON object"),
    ("client", b'{"op": "send", "msg": "x"}', "unknown op 'send'"),
    ("client", b'{"msg": "x"}', "unknown op None"),
    ("client", b'{"op": "deliver", "msg": "x"}', "deliver needs the field 'ref'"),
    ("client", b'{"op": "deliver", "ref": 1, "mesage": "x"}', "deliver has no field 'mesage'"),
    ("client", b'{"op": "deliver", "ref": 1, "msg": 5}', "deliver.msg must be a string"),
    ("client", b'{"op": "pull", "n": 0}', "pull.n must be an integer >= 1"),
    ("client", b'{"op": "pull", "n": true}', "pull.n must be an integer >= 1"),
    ("client", b'{"op": "open", "client": 1}', "open has no field 'client'"),
    ("server", b'{"op": "open"}', "open needs the field 'client'"),
    ("server", b'{"op": "pull", "client": -1}', "pull.client must be an integer >= 0"),
    ("server", b'{"op": "deliver", "ref": 1, "msg": "x"}', "unknown op 'deliver'"),
    ("server", b"\xff\xfe", "not UTF-8"),
])
def test_a_line_outside_the_protocol_is_refused_naming_the_line(role, line, says):
    with pytest.raises(ProtocolError) as caught:
        parse_line(line, role=role, who="the server process `x`", number=12)
    message = str(caught.value)
    assert says in message
    assert "the server process `x` wrote a line outside the protocol (line 12" in message
    assert "write logs to stderr" in message
    if line.strip() and line.isascii():
        assert repr(line.decode()) in message  # the line itself, quoted


# Designs of commands ---------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_a_command_that_does_not_exist_is_refused_before_any_run():
    started = time.monotonic()
    with pytest.raises(DesignContractError, match="no program 'nodexyz' on this machine's PATH"):
        external_design("nodexyz server.js", "production")
    with pytest.raises(DesignContractError, match="no executable file './nope.sh'"):
        external_design("./nope.sh", "production", cwd=ROOT)
    with pytest.raises(DesignContractError, match="neither the server nor the client"):
        external_design("naive", "production")
    assert time.monotonic() - started < BAD_INPUT_S


@pytest.mark.timeout(10)
def test_node_missing_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DesignContractError, match="install Node.js 18 or later"):
        external_design("node server.js", "production")
    assert "install Node.js 18 or later" in why_no_node()


@pytest.mark.timeout(10)
def test_a_design_file_names_its_commands(tmp_path):
    (tmp_path / "pair.toml").write_text(f'name = "mine"\nserver = "{sys.executable} s.py"\n'
                                        'client = "production"\nstop_grace_s = 0.5\n')
    design = wslab.get_design(tmp_path / "pair.toml")
    assert design.name == "mine" and design.stop_grace_s == 0.5
    assert design.server_command.cwd == str(tmp_path) and design.client_command is None
    (tmp_path / "bad.toml").write_text('server = "x"\n')
    with pytest.raises(DesignContractError, match="bad.toml must name the client"):
        load_design_file(tmp_path / "bad.toml")
    (tmp_path / "typo.toml").write_text('server = "x"\nclient = "y"\nclinet = "z"\n')
    with pytest.raises(DesignContractError, match="unknown key 'clinet'"):
        load_design_file(tmp_path / "typo.toml")


@pytest.mark.timeout(10)
def test_a_process_keeps_real_time_and_virtual_time_is_refused():
    design = external_design(f"{PY} -c pass", "production")
    with pytest.raises(ConfigError, match="runs processes, which keep the machine's clock"):
        wslab.run(design, "latency_spike", clock="virtual")
    with pytest.raises(ConfigError, match=f"at most {MAX_CLIENT_PROCESSES} client processes"):
        wslab.run(external_design("naive", f"{PY} -c pass"), "reconnect_storm")


@pytest.mark.timeout(30)
def test_the_audit_says_it_reads_python_only(tmp_path):
    script = tmp_path / "server.js"
    script.write_text("const ws = require('ws');\n")
    with pytest.raises(ConfigError, match="is not Python: the audit reads Python only"):
        wslab.audit(script)
    out = subprocess.run([sys.executable, "-m", "wslab", "audit", str(script)], cwd=ROOT,
                         capture_output=True, text=True, timeout=25)
    assert out.returncode == 2 and "the audit reads Python only" in out.stderr


# Bad input: a clear error within 5 s, nothing left running -----------------------------------

# Each a Python program (no Node.js needed), marked so that a test can look for it after.
_SERVERS = {
    "exits at once": ("import sys; print('cannot start', file=sys.stderr); sys.exit(3)",
                      "exited with code 3 before it listened on port"),
    "never opens its port, ignores SIGTERM": (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
        "never opened port"),
    "prints lines outside the protocol": (
        "import time; print('listening on 127.0.0.1', flush=True); time.sleep(60)",
        "wrote a line outside the protocol (line 1 of its stdout): 'listening on 127.0.0.1'"),
}
_CLIENTS = {
    "exits at once": ("import sys; sys.exit(2)",
                      "exited with code 2 before it wrote a line of the protocol"),
    "prints lines outside the protocol": (
        "import time; print('{\"op\": \"pull\"}'); print('connected!', flush=True); "
        "time.sleep(60)", "wrote a line outside the protocol (line 2 of its stdout): 'connected!'"),
    "says nothing, ignores SIGTERM": (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
        "wrote nothing within 3 s of starting"),
}


def _program(code: str, marker: str) -> str:
    return f"{PY} -c {shlex.quote(code)} {marker}"


_BAD_PROCESSES = [("server", case) for case in _SERVERS] + [("client", case) for case in _CLIENTS]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("role, case", _BAD_PROCESSES, ids=lambda v: str(v))
def test_a_bad_process_fails_fast_and_leaves_nothing(role, case):
    code, says = (_SERVERS if role == "server" else _CLIENTS)[case]
    marker = f"wslab-test-{uuid.uuid4().hex}"
    program = _program(code, marker)
    design = (external_design(program, "production") if role == "server"
              else external_design("naive", program))
    started = time.monotonic()
    with pytest.raises(ExternalProcessError) as caught:
        wslab.run(design, "latency_spike")
    assert time.monotonic() - started < BAD_INPUT_S
    assert says in str(caught.value)
    assert running_with(marker) == []


@pytest.mark.timeout(60)
def test_bad_input_on_the_command_line_exits_2_within_5_s():
    marker = f"wslab-test-{uuid.uuid4().hex}"
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "wslab", "grade", "--server", _program("import sys; sys.exit(4)",
                                                                      marker),
         "--client", "production"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert "exited with code 4 before it listened" in out.stderr and out.stdout == ""
    assert time.monotonic() - started < BAD_INPUT_S + 3  # + the interpreter's own start
    assert running_with(marker) == []
    half = subprocess.run([sys.executable, "-m", "wslab", "grade", "--server", "node x.js"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert half.returncode == 2 and "give --client too" in half.stderr


# Real processes: restarts, cleanup, mixed pairs (Node.js) -------------------------------------


@needs_node
@pytest.mark.timeout(120)
def test_a_restart_is_real_and_the_production_pair_loses_nothing():
    run = wslab.run(node_pair("production"), "server_restart")
    servers = [p for p in processes_of(run) if p["process"] == "server"]
    started = [p for p in servers if p["event"] == "started"]
    # a new process at the restart: a new pid, on the same port
    assert len(started) == 2 and started[0]["pid"] != started[1]["pid"]
    assert started[0]["port"] == started[1]["port"]
    assert started[0]["t"] < 1.0 < started[1]["t"]  # the restart is at 1.0 s of lab time
    s = run.summary()
    assert s["clock"] == "real"
    assert s["sent"] == 900 and s["lost"] == 0 and s["duplicated"] == 0 and s["out_of_order"] == 0
    assert run.recovery_s == run.recovery_s  # every client came back (not nan)
    assert s["tasks_left"] == 0 and not run.errors
    # nothing left: every process gone (its whole group), the server's port closed
    for entry in processes_of(run):
        if entry["event"] == "started":
            assert not group_members(entry["pid"])
    assert refused(int(started[0]["port"]))
    clients = [p for p in processes_of(run) if p["process"].startswith("client")]
    assert {p["event"] for p in clients} == {"started", "exited"}


@needs_node
@pytest.mark.timeout(120)
def test_a_server_that_ignores_sigterm_is_killed_at_the_restart_and_at_the_end():
    stubborn = ("node -e \"process.on('SIGTERM', () => console.error('ignoring SIGTERM')); "
                "require('./naive_server.js')\"")
    run = wslab.run(external_design(stubborn, "node naive_client.js", cwd=NODE_DIR),
                    "server_restart")
    exits = [p for p in processes_of(run) if p["process"] == "server" and p["event"] == "exited"]
    assert len(exits) == 2 and all(p["killed"] for p in exits)  # SIGKILL after the grace
    assert any("ignoring SIGTERM" in str(entry.get("stderr")) for entry in run.logs)
    assert run.summary()["tasks_left"] >= 1  # killed at the end: it was left running
    assert run.summary()["lost"] > 0  # the naive client never comes back
    for entry in processes_of(run):
        if entry["event"] == "started":
            assert not group_members(entry["pid"])


@needs_node
@pytest.mark.timeout(180)
def test_mixed_pairs_python_client_with_node_server_and_the_reverse():
    from wslab.designs.production import design
    from wslab.production.settings import DEFAULT

    python_client = external_design("node production_server.js", "production", cwd=NODE_DIR)
    run = wslab.run(python_client, "server_restart")
    s = run.summary()
    assert s["sent"] == 900 and s["lost"] == 0 and s["duplicated"] == 0, s
    assert run.recovery_s == run.recovery_s
    # the Node client against the Python server (which then asks for no token: the
    # protocol gives a process none)
    server = design("production_no_token", replace(DEFAULT, require_token=False))
    node_client = external_design(server, "node production_client.js", cwd=NODE_DIR)
    run = wslab.run(node_client, "network_interruption")
    s = run.summary()
    assert s["sent"] == 300 and s["lost"] == 0 and s["duplicated"] == 0, s
    assert run.recovery_s == run.recovery_s


def _grade_cli(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "wslab", "grade", *args, "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=400)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


@needs_node
@pytest.mark.timeout(420)
def test_cli_grades_the_node_naive_pair_failing_where_the_python_naive_fails():
    card = _grade_cli("--server", "node node/naive_server.js", "--client",
                      "node node/naive_client.js", "--name", "node_naive")
    not_run = {row["scenario"] for row in card["scenarios"] if row["not_run"]}
    assert not_run == {"reconnect_storm"}  # 200 client processes: not applicable, said so
    failed = {row["scenario"] for row in card["scenarios"] if not row["passed"]}
    python_naive = set(wslab.grade("naive", progress=False).failed)
    assert failed == python_naive - not_run == PYTHON_NAIVE_FAILED  # lesson 14 states that set
    assert card["passed"] is False
    # lesson 14 shows the stored gradebook: each scenario passes or fails as stored
    assert outcomes(card) == outcomes(stored_gradebook()["node_naive"])


@needs_node
@pytest.mark.timeout(420)
def test_cli_grades_the_node_production_pair_passing_every_applicable_check():
    card = _grade_cli("node/production.toml")
    assert card["design"] == "node_production"
    assert card["passed"] is True, [row for row in card["scenarios"] if not row["passed"]]
    assert card["checks_passed"] == card["checks_applicable"] > 40
    for row in card["scenarios"]:
        if not row["not_run"]:
            assert row["measured"]["lost"] == 0 and row["measured"]["duplicated"] == 0
    assert outcomes(card) == outcomes(stored_gradebook()["node_production"])


HEARTBEAT = """
module.exports = function heartbeat(wss) {
  wss.on('connection', (ws) => { ws.isAlive = true; ws.on('pong', () => { ws.isAlive = true; }); });
  const timer = setInterval(() => {
    for (const ws of wss.clients) {
      if (!ws.isAlive) { ws.terminate(); continue; }
      ws.isAlive = false;
      ws.ping();
    }
  }, 1000);
  wss.on('close', () => clearInterval(timer));
};
"""
HEARTBEAT_MISTAKES = {
    "close() waits for a dead peer": (HEARTBEAT.replace("ws.terminate()", "ws.close()"),
                                      "close() is not enough"),
    "an interval shorter than a slow pong": (HEARTBEAT.replace("1000", "150"),
                                             "the slow peer was alive"),
    "a timer left running": (HEARTBEAT.replace("wss.on('close', () => clearInterval(timer));", ""),
                             "clearInterval"),
    "too slow for the bound": (HEARTBEAT.replace("1000", "2500"), "the bound is 3 s"),
    "a syntax error": (HEARTBEAT.replace("function heartbeat", "functio heartbeat"),
                       "SyntaxError"),
}


@needs_node
@pytest.mark.timeout(120)
def test_lesson_14s_heartbeat_checker_passes_the_idiom_and_names_each_mistake():
    from wslab.exercises.nodejs import check_heartbeat

    async def check_all():
        return await asyncio.gather(check_heartbeat(HEARTBEAT),
                                    *(check_heartbeat(source) for source, _ in HEARTBEAT_MISTAKES.values()))

    good, *verdicts = asyncio.run(check_all())
    assert good, good
    for (name, (_, hint)), verdict in zip(HEARTBEAT_MISTAKES.items(), verdicts):
        assert not verdict and hint in verdict.message, (name, verdict)
        assert "/tmp" not in verdict.message  # the learner's file is named, not a temporary path
    assert not running_with("heartbeat_check.js")


def test_the_heartbeat_checker_says_what_to_give_it():
    from wslab.exercises.nodejs import check_heartbeat

    verdict = asyncio.run(check_heartbeat("print('not a module')"))
    assert not verdict and "module.exports" in verdict.message
