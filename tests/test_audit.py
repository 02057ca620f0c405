"""The static audit: each rule on a minimal positive and negative snippet, the
sample submissions, no false alarm on the production design, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

import pytest

from wslab.audit import LESSONS, RULES, AuditReport, Finding, audit
from wslab.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SUBMISSIONS = ROOT / "data" / "submissions"
PRODUCTION_FILES = sorted((ROOT / "wslab" / "production").glob("*.py")) + [
    ROOT / "wslab" / "designs" / "production.py"]

WS = "from websockets.asyncio.client import connect\nfrom websockets.asyncio.server import serve\n"

# rule id -> (a snippet that must get it, a close snippet that must not)
CASES: dict[str, tuple[str, str]] = {
    "fire-and-forget-send": (
        """
        async def pump(websocket, queue):
            while True:
                await websocket.send(await queue.get())
        """,
        """
        async def pump(websocket, window):
            seq, body = window.next()
            await websocket.send(body)
            frame = await websocket.recv()
            if frame == "ack":
                window.acknowledge(seq)
        """),
    "task-never-awaited": (
        """
        import asyncio
        async def handler(websocket):
            asyncio.create_task(heartbeat(websocket))
        """,
        """
        import asyncio
        async def handler(websocket):
            task = asyncio.create_task(heartbeat(websocket))
            try:
                await websocket.wait_closed()
            finally:
                task.cancel()
        """),
    "receive-loop-no-shutdown": (
        """
        async def reader(ws):
            while True:
                message = await ws.recv()
                handle(message)
        """,
        """
        from websockets.exceptions import ConnectionClosed
        async def reader(ws):
            while True:
                try:
                    message = await ws.recv()
                except ConnectionClosed:
                    break
                handle(message)
        """),
    "unbounded-queue": (
        """
        import asyncio
        queue = asyncio.Queue()
        """,
        """
        import asyncio
        queue = asyncio.Queue(maxsize=100)
        """),
    "no-keepalive-settings": (
        WS + """
        async def main():
            async with connect("ws://localhost:8765") as ws:
                await ws.recv()
        """,
        WS + """
        async def main():
            async with connect("ws://localhost:8765", ping_interval=5, ping_timeout=5) as ws:
                await ws.recv()
        """),
    "keepalive-disabled": (
        WS + """
        async def main():
            async with serve(handler, "", 8765, ping_interval=None):
                pass
        """,
        WS + """
        async def main():
            async with serve(handler, "", 8765, ping_interval=10):
                pass
        """),
    "no-reconnection": (
        WS + """
        async def client():
            async with connect(URI, ping_interval=5) as ws:
                await ws.recv()
        """,
        WS + """
        async def client():
            async for ws in connect(URI, ping_interval=5):
                await ws.recv()
        """),
    "reconnect-without-backoff": (
        WS + """
        import asyncio
        async def client():
            while True:
                try:
                    async with connect(URI, ping_interval=5) as ws:
                        await consume(ws)
                except OSError:
                    await asyncio.sleep(2)
        """,
        WS + """
        import asyncio, random
        async def client():
            delay = 0.5
            while True:
                try:
                    async with connect(URI, ping_interval=5) as ws:
                        await consume(ws)
                except OSError:
                    await asyncio.sleep(random.uniform(0, delay))
                    delay = min(delay * 2, 30)
        """),
    "reconnect-without-jitter": (
        WS + """
        import asyncio
        async def client():
            delay = 0.5
            while True:
                try:
                    async with connect(URI, ping_interval=5) as ws:
                        await consume(ws)
                except OSError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30)
        """,
        WS + """
        import asyncio, random
        async def client():
            delay = 0.5
            while True:
                try:
                    async with connect(URI, ping_interval=5) as ws:
                        await consume(ws)
                except OSError:
                    await asyncio.sleep(delay * random.random())
                    delay = min(delay * 2, 30)
        """),
    "outdated-handler-signature": (
        WS + """
        async def handler(websocket, path):
            pass
        """,
        WS + """
        async def handler(websocket):
            path = websocket.request.path
        """),
    "gather-without-cancel": (
        """
        import asyncio
        async def handler(websocket):
            await asyncio.gather(read(websocket), write(websocket))
        """,
        """
        import asyncio
        async def handler(websocket):
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(read(websocket))
                tasks.create_task(write(websocket))
        """),
    "asyncio-run-in-notebook": (
        """
        import asyncio
        asyncio.run(main())
        """,
        """
        import asyncio
        if __name__ == "__main__":
            asyncio.run(main())
        """),
    "shared-mutable-state": (
        """
        CONNECTIONS = set()
        async def handler(websocket):
            CONNECTIONS.add(websocket)
        """,
        """
        async def handler(websocket, registry):
            registry.add(websocket)
        """),
    "print-instead-of-logging": (
        WS + """
        async def handler(websocket):
            print("connected")
        """,
        WS + """
        import logging
        log = logging.getLogger(__name__)
        async def handler(websocket):
            log.info("connected")
        """),
}


def rules_of(source: str) -> set[str]:
    """The rule ids found in a snippet (the ``WS`` imports, then indented code)."""
    if source.startswith(WS):
        source = WS + dedent(source[len(WS):])
    return {f.rule for f in audit(dedent(source)).findings}


@pytest.mark.timeout(30)
def test_every_rule_has_a_lesson_and_a_test_case() -> None:
    reported = {rule_id for check in RULES.values() for rule_id in check.rule_ids}
    assert reported == set(LESSONS) == set(CASES)
    assert all(lesson.startswith("notebooks/") and lesson.endswith(".ipynb")
               for lesson in LESSONS.values())
    assert all(check.__doc__ and "Blind spot" in check.__doc__ for check in RULES.values())


@pytest.mark.timeout(30)
@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires_on_its_positive_snippet(rule_id: str) -> None:
    positive, _ = CASES[rule_id]
    assert rule_id in rules_of(positive)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_stays_quiet_on_its_negative_snippet(rule_id: str) -> None:
    _, negative = CASES[rule_id]
    assert rule_id not in rules_of(negative)


@pytest.mark.timeout(30)
def test_a_constant_delay_is_no_backoff_not_also_no_jitter() -> None:
    positive, _ = CASES["reconnect-without-backoff"]
    assert "reconnect-without-jitter" not in rules_of(positive)


@pytest.mark.timeout(30)
def test_a_delay_from_a_helper_is_trusted_and_a_caller_try_counts() -> None:
    source = WS + """
    import asyncio
    from websockets.exceptions import ConnectionClosed
    async def client(backoff):
        while True:
            try:
                async with connect(URI, ping_interval=5) as websocket:
                    await read(websocket)
            except OSError:
                await asyncio.sleep(backoff.next_delay())
    async def read_frames(websocket):
        async for frame in websocket:
            handle(frame)
    async def read(websocket):
        try:
            await read_frames(websocket)
        except ConnectionClosed:
            pass
    """
    assert rules_of(source) == set()


@pytest.mark.timeout(30)
def test_ack_in_prose_does_not_count_as_handling_acknowledgements() -> None:
    source = '''
    DESCRIPTION = "no acknowledgements, fire and forget"
    async def pump(websocket, queue):
        await websocket.send(await queue.get())
    '''
    assert "fire-and-forget-send" in rules_of(source)


EXPECTED_SAMPLES = {
    "tutorial_echo.py": {
        "shared-mutable-state", "outdated-handler-signature", "print-instead-of-logging",
        "receive-loop-no-shutdown", "fire-and-forget-send", "no-keepalive-settings",
        "asyncio-run-in-notebook"},
    "sensor_reconnect_loop.py": {"fire-and-forget-send", "reconnect-without-backoff"},
    "background_worker_queue.py": {
        "receive-loop-no-shutdown", "fire-and-forget-send", "unbounded-queue",
        "gather-without-cancel"},
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(EXPECTED_SAMPLES))
def test_each_sample_gets_exactly_its_findings(name: str) -> None:
    report = audit(SUBMISSIONS / name)
    rules = [f.rule for f in report.findings]
    assert sorted(rules) == sorted(EXPECTED_SAMPLES[name])  # each once
    assert not report.passed
    assert all(f.line > 0 and f.message and f.why for f in report.findings)


@pytest.mark.timeout(30)
def test_samples_are_plain_websockets_17_code() -> None:
    for path in SUBMISSIONS.glob("*.py"):
        source = path.read_text()
        compile(source, str(path), "exec")
        assert "websockets.legacy" not in source and "websockets.server" not in source
        if "def handler(websocket, app)" not in source:  # a standalone program
            assert "from websockets.asyncio." in source


@pytest.mark.timeout(30)
@pytest.mark.parametrize("path", PRODUCTION_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_false_alarm_on_the_production_design(path: Path) -> None:
    report = audit(path)
    assert report.passed, report.text()


@pytest.mark.timeout(30)
def test_the_naive_design_gets_what_truly_applies() -> None:
    report = audit(ROOT / "wslab" / "designs" / "naive.py")
    assert set(report.rules) == {
        "fire-and-forget-send", "task-never-awaited", "no-reconnection",
        "no-keepalive-settings", "receive-loop-no-shutdown"}
    # both background tasks, in the handler and in the client
    assert [f.line for f in report.findings if f.rule == "task-never-awaited"] == [20, 36]


@pytest.mark.timeout(30)
def test_report_text_html_and_json() -> None:
    report = audit(str(SUBMISSIONS / "background_worker_queue.py"))
    assert report.source_name.endswith("background_worker_queue.py")
    text = report.text()
    assert "4 finding(s)" in text and "unbounded-queue" in text and "05_backpressure" in text
    page = report._repr_html_()
    assert page.count("<tr>") == 1 + len(report.findings) and "<table>" in page
    data = json.loads(json.dumps(report.to_json()))
    assert data["passed"] is False and len(data["findings"]) == 4
    assert set(data["findings"][0]) == {"rule", "line", "message", "why", "lesson"}
    assert [f["line"] for f in data["findings"]] == sorted(f["line"] for f in data["findings"])
    clean = audit("x = 1\n")
    assert clean.passed and clean.source_name == "<source>" and "no finding" in clean.text()
    assert "no finding" in clean._repr_html_()
    assert isinstance(report, AuditReport) and isinstance(report.findings[0], Finding)
    with pytest.raises(AttributeError):
        report.findings[0].line = 1  # frozen


@pytest.mark.timeout(30)
def test_a_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"could not parse <source>: line 3: "):
        audit("import asyncio\n\nasync def handler(websocket:\n    pass\n")


@pytest.mark.timeout(30)
def test_a_syntax_error_in_a_file_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\ny = (\n")
    with pytest.raises(ConfigError, match=r"could not parse .*bad\.py: line 2"):
        audit(bad)


@pytest.mark.timeout(30)
def test_a_missing_file_is_reported_not_parsed_as_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        audit("data/submissions/does_not_exist.py")
    with pytest.raises(ConfigError, match="no such file"):
        audit(tmp_path / "missing.py")
    with pytest.raises(ConfigError, match="directory"):
        audit(tmp_path)
