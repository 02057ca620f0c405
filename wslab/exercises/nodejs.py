"""Lesson 14's exercise: a ``ws`` heartbeat that notices a dead peer in time.

The learner writes a Node.js module exporting ``heartbeat(wss)``. The checker
runs it in a real ``ws`` server (``node/heartbeat_check.js``) and connects two
real peers over loopback, built on websockets' Sans-I/O client:

- a **dead** peer: it completes the handshake, then never reads or writes
  again (a phone that lost its network: no socket ever closes);
- a **slow** peer: alive, but every byte it sends, pongs included, leaves
  :data:`SLOW_PONG_S` late (a congested mobile link).

It passes when the server ends the dead peer's connection within
:data:`DETECT_WITHIN_S` of the handshake, keeps the slow one for as long as it
watches, and, once the server is closed, lets Node exit (no timer left running).
Processes keep real time, so the bounds have margin: a heartbeat that does the
job does it in under two thirds of the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
import time
from pathlib import Path

from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from ..external import NODE_DIR, why_no_node
from .checking import Verdict

DETECT_WITHIN_S = 3.0  # the bound the exercise states
SLOW_PONG_S = 0.4  # how late the slow peer's pongs leave (the lesson says: up to 0.5 s)
WATCH_S = DETECT_WITHIN_S + 0.5  # how long the checker watches both peers
EXIT_WITHIN_S = 2.0  # after the server closed, for Node to exit on its own
START_WITHIN_S = 10.0  # for Node to start and listen (generous: a busy machine)
FIXTURE = NODE_DIR / "heartbeat_check.js"


class _Peer:
    """One WebSocket client over a real socket; ``delay_s`` holds back what it sends."""

    def __init__(self, name: str, port: int, *, dead: bool, delay_s: float = 0.0) -> None:
        self.name, self.port, self.dead, self.delay_s = name, port, dead, delay_s
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/{name}"))
        self.opened_at: float | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        try:
            reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return  # the verdict says the handshake did not finish
        try:
            self.protocol.send_request(self.protocol.connect())
            self._flush()
            while self.protocol.state is State.CONNECTING:
                data = await reader.read(65536)
                if not data:
                    return
                self.protocol.receive_data(data)
                self._flush()
            if self.protocol.state is not State.OPEN:
                return
            self.opened_at = time.perf_counter()
            if self.dead:
                await asyncio.Event().wait()  # never reads, never writes: cancelled at the end
            while data := await reader.read(65536):
                self.protocol.receive_data(data)  # a ping queues its pong
                pending = b"".join(self.protocol.data_to_send())
                if pending:
                    asyncio.get_running_loop().call_later(self.delay_s, self._write, pending)
        finally:
            self.writer.transport.abort()

    def _flush(self) -> None:
        self._write(b"".join(self.protocol.data_to_send()))

    def _write(self, data: bytes) -> None:
        if data and self.writer is not None and not self.writer.transport.is_closing():
            self.writer.write(data)


async def _lines(process: asyncio.subprocess.Process, into: asyncio.Queue) -> None:
    assert process.stdout is not None
    while line := await process.stdout.readline():
        with contextlib.suppress(ValueError):
            into.put_nowait((time.perf_counter(), json.loads(line)))
    into.put_nowait((time.perf_counter(), {"event": "exited"}))


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


async def _stderr(process: asyncio.subprocess.Process) -> str:
    assert process.stderr is not None
    with contextlib.suppress(asyncio.TimeoutError):
        text = (await asyncio.wait_for(process.stderr.read(4000), 1.0)).decode(errors="replace")
        # Node's message without its stack (the lines of its own loader)
        return "\n".join(line for line in text.strip().splitlines()
                         if not line.startswith("    at ") and not line.startswith("Node.js v"))
    return ""


async def check_heartbeat(source: str) -> Verdict:
    """Run ``source`` (a Node.js module exporting ``heartbeat(wss)``) in a real
    ``ws`` server and check it against a dead peer and a slow one (see the module
    docstring). Returns a :class:`Verdict` with a hint; nothing it started is
    left running."""
    if not isinstance(source, str) or "module.exports" not in source:
        return Verdict(False, "give the module's source as a string; it sets module.exports = "
                              "function heartbeat(wss) { ... }")
    missing = why_no_node()
    if missing:
        return Verdict(False, f"this check runs your code in Node.js: {missing}")
    with tempfile.TemporaryDirectory(prefix="wslab-heartbeat-") as folder:
        module = Path(folder) / "heartbeat.js"
        module.write_text(source, encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            "node", str(FIXTURE), str(module), cwd=NODE_DIR, start_new_session=True,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")})
        try:
            verdict = await _watch(process)
            return Verdict(verdict.passed, verdict.message.replace(str(module), "heartbeat.js"))
        finally:
            _kill(process)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 5.0)


async def _watch(process: asyncio.subprocess.Process) -> Verdict:
    events: asyncio.Queue = asyncio.Queue()
    async with asyncio.TaskGroup() as group:
        reading = group.create_task(_lines(process, events))
        try:
            _, first = await asyncio.wait_for(events.get(), START_WITHIN_S)
        except asyncio.TimeoutError:
            first = None
        if not first or first.get("event") != "listening":
            reading.cancel()
            said = await _stderr(process)
            return Verdict(False, "the server did not start with your module"
                                  + (f"; Node said:\n{said}" if said else ""))
        port = first["port"]
        dead = _Peer("dead", port, dead=True)
        slow = _Peer("slow", port, dead=False, delay_s=SLOW_PONG_S)
        peers = [group.create_task(dead.run()), group.create_task(slow.run())]
        closed: dict[str, float] = {}
        give_up = time.perf_counter() + WATCH_S
        while (left := give_up - time.perf_counter()) > 0 and len(closed) < 2:
            try:
                at, event = await asyncio.wait_for(events.get(), left)
            except asyncio.TimeoutError:
                break
            if event.get("event") == "closed":
                closed[event["name"]] = at
        for task in peers:
            task.cancel()
        # the server closes: its timer should stop with it, and Node exit on its own
        assert process.stdin is not None
        with contextlib.suppress(ConnectionError):
            process.stdin.write(b"stop\n")
            await process.stdin.drain()
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), EXIT_WITHIN_S)
            exited = True
        except asyncio.TimeoutError:
            exited = False
        reading.cancel()
    return _verdict(dead, slow, closed, exited, process.returncode)


def _verdict(dead: _Peer, slow: _Peer, closed: dict[str, float], exited: bool,
             returncode: int | None) -> Verdict:
    if dead.opened_at is None or slow.opened_at is None:
        return Verdict(False, "a peer could not finish its handshake with the server")
    problems = []
    noticed = closed["dead"] - dead.opened_at if "dead" in closed else None
    if noticed is None or noticed > DETECT_WITHIN_S:
        seen = (f"only after {noticed:.1f} s" if noticed is not None
                else f"not within the {WATCH_S:g} s watched")
        problems.append(
            f"the dead peer (it stopped answering after the handshake) was let go {seen}; the "
            f"bound is {DETECT_WITHIN_S:g} s. Every interval, terminate() a connection that has "
            f"not answered the previous ping, then mark the others not alive and ping them. "
            f"close() is not enough: it waits for a closing handshake a dead peer never sends")
    if "slow" in closed:
        problems.append(
            f"the slow peer was alive (its pongs came {SLOW_PONG_S:g} s late) and was cut off "
            f"after {closed['slow'] - slow.opened_at:.1f} s: the interval must leave a pong time "
            f"to come back, and the 'pong' handler must mark the connection alive (start alive, "
            f"too: a new connection has had no ping yet)")
    if not exited:
        problems.append(
            "once the server closed, Node kept running: your interval still fires. Clear it "
            "when the server closes: wss.on('close', () => clearInterval(timer))")
    elif returncode not in (0, None):
        problems.append(f"Node exited with code {returncode} after the server closed")
    if problems:
        return Verdict(False, "; ".join(problems))
    return Verdict(True, f"the dead peer was let go {noticed:.1f} s after its handshake (bound "
                         f"{DETECT_WITHIN_S:g} s), the slow one kept for {WATCH_S:g} s, and Node "
                         f"exited once the server closed")
