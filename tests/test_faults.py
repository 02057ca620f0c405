"""Each fault of the FaultProxy, observed on real sockets through real websockets
(the idle timeout in virtual lab time, wslab.clock: its minutes cost milliseconds)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidMessage

from wslab.clock import in_lab_loop
from wslab.errors import ConfigError
from wslab.faults import (Bandwidth, BlackHole, Cut, FaultPlan, FrameFault, IdleTimeout, Latency,
                          Refuse, Revoke, ServerRestart, SlowConsumer)
from wslab.frames import FrameParser, TextContaining
from wslab.proxy import FaultProxy

pytestmark = pytest.mark.timeout(30)


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


class Setup:
    """An echo server behind a FaultProxy with ``faults``; ``uri`` for client ``n``."""

    def __init__(self, faults):
        self.faults = FaultPlan(faults)

    async def __aenter__(self):
        self.server = await serve(echo, "127.0.0.1", 0, compression=None)
        port = self.server.sockets[0].getsockname()[1]
        self.proxy = FaultProxy(upstream_port=port, plan=self.faults, seed=1)
        await self.proxy.start()
        return self

    def uri(self, n=0):
        return f"ws://127.0.0.1:{self.proxy.port}/c/{n}"

    async def __aexit__(self, *exc):
        await self.proxy.close()
        self.server.close()
        await self.server.wait_closed()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 25))


async def rtt(ws, text="ping"):
    start = time.perf_counter()
    await ws.send(text)
    assert await ws.recv() == text
    return time.perf_counter() - start


def test_no_fault_forwards_and_strips_compression():
    async def main():
        async with Setup([]) as s, connect(s.uri(), proxy=None) as ws:
            assert await rtt(ws) < 0.5
            # The proxy removed the extension offer: nothing was negotiated.
            assert ws.protocol.extensions == []
            assert [e[2] for e in s.proxy.events] == ["accept", "open"]
            assert s.proxy.events[0][1] == 0  # client id read from /c/0
    run(main())


def test_latency_delays_one_direction():
    async def main():
        async with Setup([Latency(delay_s=0.15, direction="up")]) as s:
            async with connect(s.uri(), proxy=None, open_timeout=5) as ws:
                assert await rtt(ws) >= 0.14
    run(main())


def test_latency_window_ends():
    async def main():
        async with Setup([Latency(start_s=0, duration_s=0.3, delay_s=0.1)]) as s:
            async with connect(s.uri(), proxy=None) as ws:
                await asyncio.sleep(0.35 - s.proxy.now())
                assert await rtt(ws) < 0.1
    run(main())


def test_bandwidth_cap():
    async def main():
        async with Setup([Bandwidth(bytes_per_s=100_000, direction="down")]) as s:
            async with connect(s.uri(), proxy=None) as ws:
                assert await rtt(ws, "x" * 50_000) >= 0.4
    run(main())


def test_cut_resets_open_connections_and_new_ones():
    async def main():
        async with Setup([]) as s:
            async with connect(s.uri(), proxy=None) as ws:
                await rtt(ws)
                assert s.proxy.cut() == 1
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 2)
            assert ws.close_code == 1006  # no close frame: a reset, not a close
            assert "reset" in [e[2] for e in s.proxy.events]

        async with Setup([Cut(start_s=0, duration_s=5)]) as s:
            with pytest.raises((InvalidHandshake, InvalidMessage, OSError, ConnectionClosed)):
                await connect(s.uri(), proxy=None, open_timeout=2)
    run(main())


def test_black_hole_keeps_sockets_open_and_loses_bytes():
    async def main():
        async with Setup([]) as s:
            async with connect(s.uri(), proxy=None, ping_interval=None, close_timeout=0.1) as ws:
                await rtt(ws)
                s.proxy.black_hole("both")
                await ws.send("into the void")
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.5)
                assert ws.state.name == "OPEN"  # nobody noticed
            # Keepalive notices: the ping's pong never comes back.
            async with connect(s.uri(1), proxy=None, ping_interval=0.1, ping_timeout=0.2,
                               close_timeout=0.1) as ws:
                await rtt(ws)
                s.proxy.black_hole("both")
                start = time.perf_counter()
                await asyncio.wait_for(ws.wait_closed(), 3)
                assert time.perf_counter() - start < 1.5
    run(main())


def test_black_hole_window_catches_connections_opened_in_it():
    async def main():
        async with Setup([BlackHole(start_s=0, duration_s=5)]) as s:
            with pytest.raises(TimeoutError):
                await connect(s.uri(), proxy=None, open_timeout=0.4)
    run(main())


def test_refuse_closes_new_connections_only():
    async def main():
        async with Setup([Refuse(start_s=0.3, duration_s=5)]) as s:
            async with connect(s.uri(), proxy=None) as ws:
                await asyncio.sleep(0.35 - s.proxy.now())
                with pytest.raises((InvalidHandshake, InvalidMessage, OSError, ConnectionClosed)):
                    await connect(s.uri(1), proxy=None, open_timeout=2)
                assert await rtt(ws) < 0.5  # the open connection still works
            assert "reset_in_handshake" in [e[2] for e in s.proxy.events]  # Refuse's default flavour
    run(main())


def test_frame_faults_act_on_matching_frames_only():
    async def main():
        drop_acks = FrameFault(direction="down", action="drop", match=TextContaining("ack"))
        async with Setup([drop_acks]) as s, connect(s.uri(), proxy=None) as ws:
            for text in ["data 1", "ack 1", "data 2"]:
                await ws.send(text)
            assert await ws.recv() == "data 1"
            assert await ws.recv() == "data 2"
            assert s.proxy.frames_dropped == 1

        dup = FrameFault(direction="up", action="duplicate", match=TextContaining("twice"))
        async with Setup([dup]) as s, connect(s.uri(), proxy=None) as ws:
            await ws.send("twice")
            await ws.send("once")
            assert [await ws.recv() for _ in range(3)] == ["twice", "twice", "once"]

        late = FrameFault(direction="up", action="delay", delay_s=0.3, match=TextContaining("late"))
        async with Setup([late]) as s, connect(s.uri(), proxy=None) as ws:
            await ws.send("late")
            await ws.send("early")
            assert [await ws.recv() for _ in range(2)] == ["early", "late"]
    run(main())


def test_frame_fault_probability_is_seeded():
    async def drops(seed):
        fault = FrameFault(direction="up", action="drop", probability=0.5)
        async with Setup([fault]) as s:
            s.proxy.rng.seed(seed)
            async with connect(s.uri(), proxy=None) as ws:
                for i in range(40):
                    await ws.send(f"m{i}")
                await ws.send("end")  # may be dropped too; wait on a timeout instead
                got = []
                try:
                    while True:
                        got.append(await asyncio.wait_for(ws.recv(), 0.3))
                except TimeoutError:
                    pass
                return [g for g in got if g != "end"]

    first, second = run(drops(7)), run(drops(7))
    assert first == second
    assert 5 < len(first) < 35


def test_frame_parser_unmasks_and_splits():
    # A masked client frame "Hi" (RFC 6455 §5.7 example) and an unmasked "Hello" split across feeds.
    masked = bytes([0x81, 0x82, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x93])
    plain = bytes([0x81, 0x05]) + b"Hello"
    parser = FrameParser()
    assert parser.feed(masked[:3]) == []
    frames = parser.feed(masked[3:] + plain[:4]) + parser.feed(plain[4:])
    assert [f.text for f in frames] == ["Hi", "Hello"]
    assert frames[0].raw == masked


# Faults as context managers on a running proxy (as websockets' tests do with drop_frames_sent())


def test_faulty_black_hole_swallows_open_connections_for_the_block():
    async def main():
        async with Setup([]) as s:
            async with connect(s.uri(), proxy=None, ping_interval=None, close_timeout=0.1) as ws:
                await rtt(ws)
                with s.proxy.faulty(BlackHole()):
                    await ws.send("into the void")
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(ws.recv(), 0.3)
                    assert ws.state.name == "OPEN"  # nobody noticed
                    with pytest.raises(TimeoutError):  # new connections vanish too
                        await connect(s.uri(1), proxy=None, open_timeout=0.3)
                # The window is closed: new connections work, the swallowed one stays dead.
                async with connect(s.uri(2), proxy=None) as fresh:
                    assert await rtt(fresh) < 0.5
                await ws.send("still nothing")
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.2)
            (hole,) = s.proxy.plan.of(BlackHole)  # the record keeps the block's window
            assert hole.duration_s is not None and 0.5 <= hole.duration_s < 2
    run(main())


def test_faulty_cut_resets_open_connections_and_refuses_new_ones_until_the_block_ends():
    async def main():
        async with Setup([]) as s:
            async with connect(s.uri(), proxy=None) as ws:
                await rtt(ws)
                with s.proxy.faulty(Cut()):
                    with pytest.raises(ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 2)
                    assert ws.close_code == 1006  # a reset, not a close
                    with pytest.raises(InvalidMessage):  # a Cut's default flavour
                        await connect(s.uri(1), proxy=None, open_timeout=2)
            async with connect(s.uri(2), proxy=None) as again:
                assert await rtt(again) < 0.5
            events = [e for _, _, e in s.proxy.events]
            assert (events.count("reset"), events.count("reset_in_handshake")) == (1, 1)
    run(main())


def test_faulty_latency_and_frame_faults_last_as_long_as_the_block():
    async def main():
        async with Setup([]) as s:
            async with connect(s.uri(), proxy=None) as ws:
                with s.proxy.faulty(Latency(delay_s=0.15, direction="up")):
                    assert await rtt(ws) >= 0.14
                assert await rtt(ws) < 0.1
            drop_acks = FrameFault(direction="down", action="drop", match=TextContaining("ack"))
            with s.proxy.faulty(drop_acks):  # frames are parsed on connections opened in the block
                async with connect(s.uri(1), proxy=None) as ws:
                    for text in ["data 1", "ack 1", "data 2"]:
                        await ws.send(text)
                    assert [await ws.recv() for _ in range(2)] == ["data 1", "data 2"]
            assert s.proxy.frames_dropped == 1
    run(main())


def test_faulty_takes_only_the_faults_the_proxy_applies():
    async def main():
        async with Setup([]) as s:
            for fault in [ServerRestart(), SlowConsumer(), Revoke()]:
                with pytest.raises(ConfigError, match="faults the proxy applies"):
                    with s.proxy.faulty(fault):
                        pass
            assert len(s.proxy.plan) == 0
    run(main())


# The plan decides, from plain data (no socket, no clock)


def test_the_plan_decides_what_the_network_does_at_a_moment():
    plan = FaultPlan([Latency(delay_s=0.1, jitter_s=0.02, direction="up"),
                      Bandwidth(bytes_per_s=1000, start_s=1), Bandwidth(bytes_per_s=500, start_s=2),
                      BlackHole(start_s=3, duration_s=1, clients=frozenset({1})),
                      Cut(start_s=5, duration_s=1), Refuse(start_s=6, duration_s=1)])
    assert plan.network(0.5, "down", 0) == FaultPlan().network(0.5, "down", 0)  # nothing in force
    up = plan.network(2.5, "up", 0)
    assert up.bytes_per_s == 500 and not up.black_hole
    assert up.delay_s(lambda a, b: b) == pytest.approx(0.12)  # jitter drawn by the caller
    assert up.delay_s(lambda a, b: a, after_s=0.3) == pytest.approx(0.38)
    assert plan.network(3.5, "down", 1).black_hole and not plan.network(3.5, "down", 0).black_hole
    assert [plan.admission(t, 0) for t in (4.9, 5.5, 6.5, 7.5)] == [None, "reset_in_handshake", "reset_in_handshake", None]


def test_the_plan_schedules_onsets_and_merges_restart_windows():
    restarts = [ServerRestart(start_s=0.2, duration_s=0.1), ServerRestart(start_s=0.25, duration_s=0.3),
                ServerRestart(start_s=1.0, duration_s=0.1, close_code=1001), ServerRestart(start_s=2.0)]
    cut, revoke = Cut(start_s=0.5), Revoke(start_s=0.7, clients=frozenset({1}))
    plan = FaultPlan([restarts[0], cut, *restarts[1:], revoke, SlowConsumer(delay_s=0.01)])
    downs = plan.downtimes()
    assert [(d.start_s, d.end_s, d.close_code) for d in downs] == [
        (0.2, 0.55, 1012), (1.0, pytest.approx(1.1), 1001), (2.0, None, 1012)]
    assert plan.schedule() == [downs[0], cut, downs[1], downs[2], revoke]  # in plan order
    assert plan.outages() == [restarts[0], cut, *restarts[1:]]
    assert plan.consumer_delay_s(1.0, "client", 0) == 0.01
    assert plan.consumer_delay_s(1.0, "server", 0) == 0


# An idle timeout: a NAT that forgets a flow no byte crossed for idle_s (in lab time)


async def _idle_setup(stack, faults, *, server_pings=None, handler=echo):
    """A server behind a proxy with ``faults``, on the running lab loop; the proxy."""
    server = await stack.enter_async_context(
        serve(handler, "127.0.0.1", 0, compression=None, ping_interval=server_pings))
    port = server.sockets[0].getsockname()[1]
    return server, await stack.enter_async_context(
        FaultProxy(upstream_port=port, plan=FaultPlan(faults), seed=1))


def idle_events(proxy):
    return [(t, client) for t, client, event in proxy.events if event == "idle timeout"]


async def answered(ws, text="ping"):
    """True when the echo of ``text`` comes back within a lab second (nothing else sent)."""
    await ws.send(text)
    try:
        return await asyncio.wait_for(ws.recv(), 1) == text
    except TimeoutError:
        return False


def test_idle_timeout_forgets_a_flow_idle_for_idle_s_silently_both_ways():
    @in_lab_loop()
    async def main():
        async with contextlib.AsyncExitStack() as stack:
            server, proxy = await _idle_setup(stack, [IdleTimeout(idle_s=30)])
            ws = await stack.enter_async_context(connect(
                f"ws://127.0.0.1:{proxy.port}/c/0", proxy=None, ping_interval=None,
                close_timeout=1))
            assert await answered(ws)
            await asyncio.sleep(29.9)
            assert await answered(ws)  # idle 29.9 s: still known, and its bytes reset the clock
            await asyncio.sleep(29.9)
            assert await answered(ws)
            assert idle_events(proxy) == []
            await asyncio.sleep(30.5)  # idle past 30 s: forgotten, exactly 30 s after its last byte
            assert idle_events(proxy) == [(pytest.approx(2 * 29.9 + 30, abs=1e-3), 0)]
            await ws.send("into the void")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 5)
            (server_side,) = server.connections
            await server_side.send("nor this way")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 5)
            await ws.close()  # no close frame, no FIN reaches the server: it never hears of it
            await asyncio.sleep(5)
            assert ws.state.name == "CLOSED" and server_side.state.name == "OPEN"
            # A new connection is a new flow.
            fresh = await stack.enter_async_context(connect(
                f"ws://127.0.0.1:{proxy.port}/c/1", proxy=None, ping_interval=None))
            assert await answered(fresh)
    run(main())


def test_idle_timeout_keeps_a_flow_that_pings_or_data_cross_more_often():
    async def sink(websocket):  # answers only "echo": traffic up alone, until then
        async for message in websocket:
            if message == "echo":
                await websocket.send(message)

    @in_lab_loop()
    async def main():
        async with contextlib.AsyncExitStack() as stack:
            _, proxy = await _idle_setup(stack, [IdleTimeout(idle_s=30)], handler=sink)
            uri = f"ws://127.0.0.1:{proxy.port}/c/"
            client_pings = await stack.enter_async_context(connect(
                uri + "0", proxy=None, ping_interval=20, ping_timeout=20))
            data_up = await stack.enter_async_context(connect(uri + "1", proxy=None,
                                                              ping_interval=None))
            for _ in range(10):  # 200 s: a ping every 20 s on one, a message up on the other
                await data_up.send("tick")
                await asyncio.sleep(20)
            assert idle_events(proxy) == []
            assert await answered(client_pings, "echo") and await answered(data_up, "echo")

        async with contextlib.AsyncExitStack() as stack:  # the server's pings keep it too
            _, proxy = await _idle_setup(stack, [IdleTimeout(idle_s=30)], server_pings=20)
            ws = await stack.enter_async_context(connect(
                f"ws://127.0.0.1:{proxy.port}/c/0", proxy=None, ping_interval=None))
            await asyncio.sleep(200)
            assert idle_events(proxy) == [] and await answered(ws)
    run(main())


def test_idle_timeout_forgets_only_inside_its_window_and_for_its_clients():
    plan = FaultPlan([IdleTimeout(idle_s=30, start_s=10, duration_s=50),
                      IdleTimeout(idle_s=5, start_s=100, clients=frozenset({1}))])
    assert plan.forgotten_at(0, 0) == 40  # idleness counts from the window's start
    assert plan.forgotten_at(20, 0) == 50
    assert plan.forgotten_at(30, 0) is None  # due at 60 s, when the window has closed
    assert plan.forgotten_at(30, 1) == 105  # client 1's own, stricter one, from 100 s
    assert FaultPlan().forgotten_at(0, 0) is None

    @in_lab_loop()
    async def main():  # proxy.faulty(): the block is the window, open connections included
        async with contextlib.AsyncExitStack() as stack:
            _, proxy = await _idle_setup(stack, [])
            uri = f"ws://127.0.0.1:{proxy.port}/c/"
            idle, busy = [await stack.enter_async_context(connect(uri + str(n), proxy=None,
                                                                  ping_interval=None))
                          for n in (0, 1)]
            with proxy.faulty(IdleTimeout(idle_s=10)):
                for _ in range(4):
                    assert await answered(busy)
                    await asyncio.sleep(4)
            assert idle_events(proxy) == [(pytest.approx(10, abs=1e-3), 0)]
            assert await answered(busy)
            await asyncio.sleep(60)  # the window closed: idle now costs nothing
            assert await answered(busy) and len(idle_events(proxy)) == 1
            await idle.send("lost")
            with pytest.raises(TimeoutError):  # forgotten in the window, forgotten for good
                await asyncio.wait_for(idle.recv(), 5)
    run(main())


def test_idle_timeout_checks_its_values_and_describes_itself():
    for bad in (0, -1, "30"):
        with pytest.raises(ConfigError, match="IdleTimeout.idle_s must be seconds > 0"):
            IdleTimeout(idle_s=bad)
    with pytest.raises(ConfigError, match="IdleTimeout.direction must be 'both'"):
        IdleTimeout(direction="up")
    assert IdleTimeout(idle_s=30).describe() == "idle timeout (30 s) 0 s–end"
    assert IdleTimeout(idle_s=350, start_s=5, duration_s=10, clients=frozenset({2})).describe() == \
        "idle timeout (350 s) clients [2] 5 s–15 s"
