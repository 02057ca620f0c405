"""The second client shape: a client object with start(), send(message), stop().

Real runs on loopback through the lab's proxy, in virtual time, so every
figure asserted here is exact. Also: the loader's messages for files that do
not fit (a .txt file, an old handler with a client class, a class without send).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

import wslab
from wslab import Design, DesignContractError, Workload
from wslab.loader import load_design

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
BOTH = dict(workload=Workload(count=20, rate_per_s=100, direction="both"), faults=[],
            clients=2, settle_s=0.5)


async def echo_and_push(websocket, app):
    """A server that processes what it receives and pushes this client's messages."""
    async def push():
        async for message in app.outgoing():
            await websocket.send(message)

    pusher = asyncio.create_task(push())
    try:
        async for message in websocket:
            await app.process(message)
    finally:
        pusher.cancel()


class SyncClient:
    """Every method plain ``def``; the callback called without ``await``."""

    stops: list[str] = []

    def __init__(self, url, on_message=None):
        self.url, self.on_message = url, on_message
        self.outbox: asyncio.Queue = asyncio.Queue()

    def start(self):
        self.task = asyncio.get_running_loop().create_task(self.run())

    def send(self, message):
        self.outbox.put_nowait(message)

    def stop(self):
        SyncClient.stops.append(self.url)
        self.task.cancel()

    async def run(self):
        async with websockets.connect(self.url) as websocket:
            async def write():
                while True:
                    await websocket.send(await self.outbox.get())

            writer = asyncio.create_task(write())
            try:
                async for message in websocket:
                    self.on_message(message)  # not awaited: the lab bridges it
            finally:
                writer.cancel()


def test_a_sync_client_object_delivers_everything_accepted_when_produced():
    SyncClient.stops.clear()
    run = wslab.run(Design("sync object", handler=echo_and_push, client=SyncClient), **BOTH)
    s = run.summary()
    assert (s["sent"], s["delivered"], s["lost"], s["duplicated"]) == (80, 80, 0, 0)
    assert run.errors == []
    ups = [r for r in run.ledger.records.values() if r.msg_id.startswith("u")]
    assert len(ups) == 40 and all(r.accepted_s == r.produced_s for r in ups)  # taken at once
    assert s["peak_send_blocked_s"] == 0
    assert len(run.send_blocked) == 40
    assert sorted(url.rsplit("/", 1)[1] for url in SyncClient.stops) == ["0", "1"]  # once each


class IteratorClient:
    """Receives by being an async iterator; ``send`` writes and waits 50 ms (a slow write)."""

    def __init__(self, uri):
        self.uri = uri

    async def start(self):
        self.websocket = await websockets.connect(self.uri)

    async def send(self, message):
        await self.websocket.send(message)
        await asyncio.sleep(0.05)

    async def stop(self):
        await self.websocket.close()

    def __aiter__(self):
        return self.websocket.__aiter__()


def test_an_iterator_client_receives_and_its_blocking_send_is_measured():
    run = wslab.run(Design("iterator", handler=echo_and_push, client=IteratorClient),
                    workload=Workload(count=10, rate_per_s=100, direction="both"), faults=[],
                    settle_s=1.0)
    s = run.summary()
    assert (s["sent"], s["delivered"], s["lost"]) == (20, 20, 0)
    # Each send keeps the producer 50 ms; it produces every 10 ms, so messages wait in the lab.
    assert s["peak_send_blocked_s"] == 0.05
    assert [b for _, _, b in run.send_blocked] == [0.05] * 10
    assert s["peak_backlog"] > 0


class AttributeCallbackClient:
    """No ``on_message`` parameter: an attribute the lab sets, awaited by the client."""

    def __init__(self, uri):
        self.uri = uri
        self.on_message = None
        self.pending: list[str] = []

    async def start(self):
        self.task = asyncio.create_task(self.run())

    async def send(self, message):
        self.pending.append(message)  # flushed in batches, 0.5 s apart

    async def stop(self):
        self.task.cancel()

    async def run(self):
        async with websockets.connect(self.uri) as websocket:
            reader = asyncio.create_task(self.read(websocket))
            try:
                while True:
                    await asyncio.sleep(0.5)
                    batch, self.pending = self.pending, []
                    for message in batch:
                        await websocket.send(message)
            finally:
                reader.cancel()

    async def read(self, websocket):
        async for message in websocket:
            await self.on_message(message)


def test_the_object_lives_until_the_run_ends_and_an_attribute_callback_is_set():
    # Production ends at 0.19 s; the object sends its batch at 0.5 s. Stopping it when
    # production ended would lose all 20.
    run = wslab.run(Design("batches", handler=echo_and_push, client=AttributeCallbackClient),
                    **BOTH)
    s = run.summary()
    assert (s["sent"], s["delivered"], s["lost"]) == (80, 80, 0)
    ups = [r for r in run.ledger.records.values() if r.msg_id.startswith("u")]
    assert min(r.deliveries[0] for r in ups) >= 0.5
    assert s["peak_queue"] >= 20  # what the object holds counts as the design's queue


async def pull_handler(websocket, app):
    async for message in websocket:
        await app.process(message)


async def plain_connect_client(app):
    async with websockets.connect(app.uri, ping_interval=0.25, ping_timeout=0.5,
                                  close_timeout=0.1) as websocket:
        async for message in app.outgoing():
            await websocket.send(message)


def test_a_plain_websockets_connect_is_seen_noticing_a_dead_peer():
    run = wslab.run(Design("plain connect", handler=pull_handler, client=plain_connect_client),
                    "idle_black_hole")
    assert run.detection_s is not None and run.detection_s <= 2.0
    assert [event for _, _, event in run.client_events][:2] == ["open", "close"]


# Bad input: clear messages ---------------------------------------------------------

class NoSend:
    def __init__(self, uri, on_message=None): ...
    async def start(self): ...
    async def stop(self): ...


class HostAndPort:
    def __init__(self, host, port, callback): ...
    async def start(self): ...
    async def send(self, message): ...
    async def stop(self): ...


def test_a_client_class_that_does_not_fit_gets_a_message_that_says_what_to_change():
    with pytest.raises(DesignContractError, match=r"class NoSend has no send\(message\) method "
                       r"\(it has start\(\), stop\(\)\)"):
        Design("x", handler=pull_handler, client=NoSend)
    with pytest.raises(DesignContractError,
                       match=r"HostAndPort\(uri, on_message=callback\).*takes \(host, port, callback\)"
                             r".*name the callback parameter on_message"):
        Design("x", handler=pull_handler, client=HostAndPort)
    assert Design("x", handler=pull_handler, client=SyncClient).client_shape == "object"
    assert Design("x", handler=pull_handler, client=plain_connect_client).client_shape == "pull"


OLD_HANDLER_AND_CLASS = '''
import asyncio
import websockets

async def handler(websocket, path):
    async for message in websocket:
        print(message)

class Client:
    def __init__(self, uri, on_message=None):
        self.uri, self.on_message = uri, on_message
    async def start(self): ...
    async def send(self, message): ...
    async def stop(self): ...
'''


def test_an_old_handler_and_a_client_class_get_both_fixes_in_one_message():
    with pytest.raises(DesignContractError) as info:
        load_design(OLD_HANDLER_AND_CLASS)
    message = str(info.value)
    assert "'path'" in message and "websocket.request.path" in message  # fix 1: the handler
    assert "client = Client" in message  # fix 2: name the class
    assert "name it `handler`" not in message  # it is named so already


def test_a_class_without_send_is_named_with_what_is_missing():
    source = OLD_HANDLER_AND_CLASS.replace("(websocket, path)", "(websocket, app)").replace(
        "    async def send(self, message): ...\n", "") + "client = Client\n"
    with pytest.raises(DesignContractError, match=r"class Client has no send\(message\) method"):
        load_design(source)


def test_a_text_file_is_not_a_design(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("async def handler(websocket, app): ...\n")
    for given in (notes, str(notes), "notes.txt"):
        with pytest.raises(DesignContractError, match=r"a design is a Python file \(a name ending in .py\)"):
            wslab.designs.get_design(given)
    out = subprocess.run([sys.executable, "-m", "wslab", "grade", "notes.txt"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "a design is a Python file" in out.stderr
    assert "unknown design" not in out.stderr


def test_a_pasted_class_answer_needs_three_changed_lines():
    # An assistant's answer as pasted: handler(websocket), its own processing, a class.
    pasted = '''
import asyncio
import websockets

async def handler(websocket):
    async for message in websocket:
        await save(message)

async def save(message):
    pass

class EventClient:
    def __init__(self, uri, on_message=None):
        self.uri, self.on_message = uri, on_message
    async def start(self):
        self.websocket = await websockets.connect(self.uri)
    async def send(self, message):
        await self.websocket.send(message)
    async def stop(self):
        await self.websocket.close()
'''
    adapted = (pasted.replace("async def handler(websocket):", "async def handler(websocket, app):")
               .replace("await save(message)", "await app.process(message)")
               + "client = EventClient\n")
    changed = set(adapted.splitlines()) - set(pasted.splitlines())
    assert len(changed) == 3
    run = wslab.run(load_design(adapted), workload=Workload(count=20, rate_per_s=100),
                    faults=[], settle_s=0.5)
    assert (run.summary()["delivered"], run.summary()["lost"]) == (20, 0)
    assert json.loads(json.dumps(run.summary()["peak_send_blocked_s"])) == 0


def make_client(uri, on_message=None):
    """A factory, not a class: called the same way."""
    client = IteratorClient(uri)
    client.on_message = on_message
    return client


class FailsToStart:
    def __init__(self, uri):
        self.uri = uri

    async def start(self):
        raise ConnectionRefusedError("the assistant's start() gave up")

    async def send(self, message): ...
    async def stop(self): ...


def test_a_factory_runs_and_a_failing_start_is_the_designs_error_with_its_own_name():
    run = wslab.run(Design("factory", handler=echo_and_push, client=make_client),
                    workload=Workload(count=5, rate_per_s=100), faults=[], settle_s=0.5)
    assert (run.summary()["delivered"], run.summary()["lost"]) == (5, 0)
    run = wslab.run(Design("fails", handler=echo_and_push, client=FailsToStart),
                    workload=Workload(count=5, rate_per_s=100), faults=[], settle_s=0.5)
    assert [(e.where, e.error) for e in run.errors] == [
        ("client 0", "ConnectionRefusedError: the assistant's start() gave up")]
    assert run.summary()["lost"] == 5


class RefusesWhenFull:
    """A bounded buffer that raises QueueFull when full, and drains 5 messages per 0.1 s."""

    def __init__(self, uri):
        self.uri = uri
        self.buffer: asyncio.Queue = asyncio.Queue(maxsize=5)

    async def start(self):
        self.task = asyncio.create_task(self.run())

    def send(self, message):
        self.buffer.put_nowait(message)  # raises asyncio.QueueFull when full

    async def stop(self):
        self.task.cancel()

    async def run(self):
        async with websockets.connect(self.uri) as websocket:
            while True:
                await asyncio.sleep(0.1)
                while not self.buffer.empty():
                    await websocket.send(self.buffer.get_nowait())


def test_a_send_that_raises_refuses_that_message_explicitly_and_the_client_goes_on():
    run = wslab.run(Design("refuses", handler=pull_handler, client=RefusesWhenFull),
                    workload=Workload(count=40, rate_per_s=100), faults=[], settle_s=0.5)
    s = run.summary()
    # 10 produced per 0.1 s, 5 taken: every tenth of a second 5 are refused.
    assert (s["sent"], s["delivered"], s["rejected"], s["lost"]) == (40, 20, 20, 0)
    assert run.errors == []
    reasons = {r.reject_reason for r in run.ledger.records.values() if r.rejected_s is not None}
    assert reasons == {"send() raised QueueFull: "}


class CallbackNamedOtherwise(SyncClient):
    def __init__(self, url, callback):
        super().__init__(url, on_message=callback)


def test_the_callback_may_be_named_as_assistants_name_it():
    SyncClient.stops.clear()
    run = wslab.run(Design("callback", handler=echo_and_push, client=CallbackNamedOtherwise),
                    **BOTH)
    assert (run.summary()["delivered"], run.summary()["lost"]) == (80, 0)
