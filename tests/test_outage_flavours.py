"""Outage flavours: how a new connection fails during an outage, through the
FaultProxy, as a real websockets client meets it (lesson 03).

Loopback only, port 0, a hard timeout on every test; lab runs keep virtual
time, so their figures are exact.
"""

from __future__ import annotations

import asyncio
import math

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidMessage, InvalidStatus

import wslab
from wslab.errors import ConfigError
from wslab.experiments import reconnection
from wslab.faults import FLAVOURS, Cut, FaultPlan, Refuse, ServerRestart
from wslab.proxy import FaultProxy
from wslab.scenarios import SCENARIOS

pytestmark = pytest.mark.timeout(120)


async def _attempt(flavour: str) -> BaseException:
    """One websockets connect through a proxy whose plan fails it in ``flavour``
    from the start; the exception it raised."""
    async def echo(websocket):
        async for message in websocket:
            await websocket.send(message)

    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        plan = FaultPlan([Cut(flavours=(flavour,))])
        async with FaultProxy(upstream_port=port, plan=plan) as proxy:
            with pytest.raises(Exception) as caught:
                await connect(f"ws://127.0.0.1:{proxy.port}/c/0", open_timeout=0.5)
            events = [event for _, _, event in proxy.events]
    if flavour == "refused":
        assert events == ["not listening"]  # the attempt never reached the proxy
    else:
        assert events[:2] == ["accept", flavour]
    return caught.value


@pytest.mark.parametrize("flavour, raised", [
    ("refused", ConnectionRefusedError),
    ("reset_in_handshake", InvalidMessage),
    ("http_503", InvalidStatus),
    ("silent", TimeoutError),
])
def test_each_flavour_raises_what_websockets_raises_for_it(flavour, raised):
    exc = asyncio.run(asyncio.wait_for(_attempt(flavour), 20))
    assert type(exc) is raised, f"{flavour}: {exc!r}"
    if flavour == "http_503":
        assert exc.response.status_code == 503
    if flavour == "reset_in_handshake":
        assert isinstance(exc.__cause__, EOFError)  # no HTTP response at all


def test_flavours_take_turns_in_the_plan():
    cut = Cut(start_s=1.0, duration_s=0.4, flavours=("silent", "reset_in_handshake"))
    restart = ServerRestart(start_s=2.0, duration_s=0.5, flavours=("refused", "http_503"))
    plan = FaultPlan([cut, restart])
    assert [plan.admission(t, 0) for t in (0.99, 1.0, 1.1, 1.2, 1.35, 1.4)] == [
        None, "silent", "reset_in_handshake", "silent", "reset_in_handshake", None]
    assert [plan.admission(t, 0) for t in (2.05, 2.15, 2.25, 2.45, 2.5)] == [
        "refused", "http_503", "refused", "refused", None]
    assert [plan.listening(t) for t in (1.05, 2.0, 2.1, 2.2, 2.5)] == [True, False, True, False, True]
    changes, t = [], 0.0
    while (t := plan.next_listener_change(t)) is not None:
        changes.append(round(t, 9))
    assert changes == [2.0, 2.1, 2.2, 2.3, 2.4, 2.5]
    assert plan.outage_flavours == ("silent", "reset_in_handshake", "refused", "http_503")
    assert FaultPlan([Cut()]).outage_flavours == ("reset_in_handshake",)  # the default
    assert "new connections: refused, http_503, each 0.1 s in turn" == restart.describe_flavours()


@pytest.mark.parametrize("make, message", [
    (lambda: Cut(flavours=("teapot",)), "flavours must name one or more of refused"),
    (lambda: Cut(flavours=()), "flavours must name one or more"),
    (lambda: Cut(flavour_s=0), "flavour_s must be seconds > 0"),
    (lambda: Refuse(flavours=("refused",), clients={1}), "closes the proxy's listening socket"),
])
def test_bad_flavours_are_refused_with_a_clear_message(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_a_proxy_block_cannot_refuse_without_an_await():
    async def main():
        async with FaultProxy(upstream_port=1) as proxy:
            with pytest.raises(ConfigError, match="await proxy.listen"):
                with proxy.faulty(Cut(flavours=("refused",))):
                    pass
    asyncio.run(asyncio.wait_for(main(), 10))


def test_the_standard_outages_state_their_flavours_on_the_card():
    stated = {name: SCENARIOS[name].faults.outage_flavours
              for name in ("network_interruption", "server_restart")}
    assert stated == {"network_interruption": ("reset_in_handshake", "silent"),
                      "server_restart": ("http_503", "refused", "reset_in_handshake")}
    assert set(stated["network_interruption"]) | set(stated["server_restart"]) == set(FLAVOURS)
    for name, scenario in SCENARIOS.items():
        words = {"refused": "refused", "reset_in_handshake": "reset during the handshake",
                 "http_503": "503", "silent": "silence"}
        for flavour in scenario.faults.outage_flavours:
            assert words[flavour] in scenario.description, (name, flavour)


def test_a_loop_catching_only_oserror_dies_on_handshake_failures():
    meetings = asyncio.run(reconnection.meet_flavours())
    ended = {(m.loop, m.flavour): m.ended_on for m in meetings}
    assert ended == {
        ("narrow loop", "refused"): None, ("better loop", "refused"): None,
        ("narrow loop", "reset_in_handshake"): "InvalidMessage",
        ("better loop", "reset_in_handshake"): None,
        ("narrow loop", "http_503"): "InvalidStatus", ("better loop", "http_503"): None,
        ("narrow loop", "silent"): None, ("better loop", "silent"): None,
    }
    back = {(m.loop, m.flavour): m.back_s for m in meetings}
    # Silence costs the whole open_timeout: websockets' default 10 s, the better loop's 2 s
    # (less the 0.2 s of the outage the attempt started in).
    assert back[("narrow loop", "silent")] == pytest.approx(9.8)
    assert back[("better loop", "silent")] == pytest.approx(1.8)
    assert back[("narrow loop", "reset_in_handshake")] is None
    table = reconnection.flavour_table(meetings)
    assert "died on InvalidMessage" in table and "ConnectionRefusedError" in table


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_production_survives_every_flavour(flavour):
    run = wslab.run(wslab.get_design("production"), reconnection.flavour_outage(flavour))
    assert run.errors == []
    assert run.summary()["lost"] == 0
    assert run.recovery_s is not None and not math.isnan(run.recovery_s)


@pytest.mark.parametrize("name", ["network_interruption", "server_restart"])
def test_production_passes_the_standard_outages(name):
    run = wslab.run(wslab.get_design("production"), name)
    events = {event for _, _, event in run.connections}
    assert run.errors == [] and run.summary()["lost"] == 0
    assert not math.isnan(run.recovery_s)
    # The client met the flavours on its way back (a refused attempt leaves no event).
    met = events & set(FLAVOURS)
    assert met and met <= set(SCENARIOS[name].faults.outage_flavours)
    if name == "server_restart":
        assert {"not listening", "listening"} <= events
