"""The production design: its pure pieces, every standard scenario, and bad input."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import gc
import json
import logging
import random

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

import wslab
from wslab import Design, Workload
from wslab.production import envelope, server, sessions
from wslab.production.backoff import Backoff
from wslab.production.reliable import InboundSequence, OutboundWindow
from dataclasses import replace

from wslab.context import RunContext
from wslab.contract import ServerApp
from wslab.designs.production import design
from wslab.faults import FaultPlan
from wslab.production.channel import Session
from wslab.production.client import make_client
from wslab.production.settings import DEFAULT

pytestmark = pytest.mark.timeout(120)


# Pure pieces ----------------------------------------------------------------

def test_backoff_full_jitter_is_bounded_capped_seeded_and_resets():
    draws = []
    for _ in range(2):
        b = Backoff(base_s=0.1, cap_s=1.0, rng=random.Random(3))
        draws.append([b.next_delay() for _ in range(12)])
    assert draws[0] == draws[1]
    b = Backoff(base_s=0.1, cap_s=1.0, rng=random.Random(3))
    for attempt, delay in enumerate(draws[0]):
        assert 0 <= delay <= min(1.0, 0.1 * 2 ** attempt)
    b.attempt = 9
    b.reset()
    assert b.attempt == 0 and b.next_delay() <= 0.1


def test_backoff_without_jitter_is_plain_exponential_and_decorrelated_stays_in_range():
    b = Backoff(base_s=0.1, cap_s=0.5, jitter="none")
    assert [round(b.next_delay(), 3) for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    d = Backoff(base_s=0.1, cap_s=0.5, jitter="decorrelated", rng=random.Random(1))
    assert all(0.1 <= d.next_delay() <= 0.5 for _ in range(50))
    # the first retry is jittered too: clients that failed together do not retry together
    firsts = {Backoff(base_s=0.1, jitter="decorrelated", rng=random.Random(i)).next_delay()
              for i in range(20)}
    assert len(firsts) == 20 and all(0.1 <= f <= 0.3 for f in firsts)
    with pytest.raises(wslab.ConfigError):
        Backoff(base_s=2, cap_s=1)


def test_outbound_window_keeps_until_acknowledged_and_goes_back():
    w = OutboundWindow(capacity=4, window=2)
    for body in "abcd":
        w.add(body)
    assert w.full
    with pytest.raises(OverflowError):
        w.add("e")
    assert [w.next_to_send(), w.next_to_send(), w.next_to_send()] == [(0, "a"), (1, "b"), None]
    assert w.acknowledge(7) == 2  # only what was sent can be acknowledged
    assert [w.next_to_send(), w.next_to_send()] == [(2, "c"), (3, "d")]
    assert w.rewind() == 2
    assert w.next_to_send() == (2, "c")
    assert w.acknowledge(2) == 1 and w.next_to_send() == (3, "d")


def test_inbound_sequence_delivers_each_number_once_in_order():
    rx = InboundSequence()
    assert [rx.classify(s) for s in (0, 1)] == ["deliver", "gap"]
    rx.delivered(0)
    assert rx.classify(0) == "duplicate" and rx.classify(1) == "deliver" and rx.ack == 0


@pytest.mark.parametrize("data, code", [
    ("not json", "bad_json"), ("[1, 2]", "bad_json"), ('{"t": "nope"}', "unknown_type"),
    ('{"t": "msg", "seq": -1, "body": "x"}', "bad_field"),
    ('{"t": "msg", "seq": true, "body": "x"}', "bad_field"),
    ('{"t": "msg", "seq": 1}', "bad_field"), (b"\x00\x01", "binary_not_supported"),
])
def test_envelope_rejects_bad_frames_with_a_code(data, code):
    with pytest.raises(envelope.BadFrame) as info:
        envelope.decode(data)
    assert info.value.code == code


# Every standard scenario ------------------------------------------------------

@pytest.mark.parametrize("name", list(wslab.SCENARIOS))
def test_production_loses_nothing_duplicates_nothing_reorders_nothing(name):
    run = wslab.run("production", name)
    s = run.summary()
    assert (s["lost"], s["duplicated"], s["out_of_order"], s["unexpected"]) == (0, 0, 0, 0), s
    if name != "token_expiry":  # there a revoked client must refuse its messages
        assert s["rejected"] == 0, s  # a refusal at shutdown would hide what never arrived
    # Bounded: what a client keeps plus what the server keeps for it, per client.
    assert s["peak_queue"] <= run.clients * 2 * DEFAULT.capacity
    assert run.errors == [] and s["tasks_left"] == 0


def test_naive_fails_most_standard_scenarios():
    failed = []
    for name in wslab.SCENARIOS:
        s = wslab.run("naive", name).summary()
        if s["lost"] or s["duplicated"] or s["out_of_order"]:
            failed.append(name)
    assert len(failed) >= 5, failed


# Bad input to the production server ----------------------------------------------

def probe(frames_to_send):
    """A design: the production server, and a client that sends ``frames_to_send``
    after its hello and records every frame and the close code it gets back."""
    seen: dict = {"frames": [], "close": None}

    async def client(app):
        async with app.connect() as websocket:
            try:  # the server may close while a big frame is still being sent
                await websocket.send(envelope.encode("hello", session="probe", down_next=0,
                                                     token=await app.fetch_token()))
                for frame in frames_to_send:
                    await websocket.send(frame)
                body = await app.next_message()
                await websocket.send(envelope.encode("msg", seq=0, body=body))
                async for data in websocket:
                    seen["frames"].append(json.loads(data))
                    if seen["frames"][-1]["t"] == "ack":
                        break
            finally:
                seen["close"] = websocket.close_code

    design = Design("probe", handler=server.handler, client=client,
                    serve_options=server.serve_options())
    run = wslab.run(design, workload=Workload(count=1, rate_per_s=10), faults=[], settle_s=1)
    return run, seen


def test_bad_frames_get_error_frames_and_the_accepted_message_is_kept():
    run, seen = probe(["not json", '{"t": "nope"}', '{"t": "msg", "seq": "x", "body": 1}',
                       b"\x00binary"])
    codes = [f["code"] for f in seen["frames"] if f["t"] == "error"]
    assert codes == ["bad_json", "unknown_type", "bad_field", "binary_not_supported"]
    assert seen["frames"][-1] == {"t": "ack", "seq": 0}
    assert run.summary()["delivered"] == 1 and run.errors == []


def test_oversized_frame_closes_1009_and_a_missing_hello_closes_1008():
    _, seen = probe(["x" * (DEFAULT.max_size_bytes + 1)])
    assert seen["close"] == 1009

    seen2 = {}

    async def rude_client(app):
        async with app.connect() as websocket:
            await websocket.send(envelope.encode("msg", seq=0, body="no hello"))
            await websocket.wait_closed()
            seen2["close"] = websocket.close_code

    wslab.run(Design("rude", handler=server.handler, client=rude_client),
              workload=Workload(count=1, rate_per_s=10), faults=[], settle_s=0.5)
    assert seen2["close"] == 1008


def test_a_flooding_client_is_cut_and_others_keep_their_service():
    flooded = {}

    async def client(app):
        if app.client_id != 0:
            from wslab.production.client import client as good_client
            await good_client(app)
            return
        async with app.connect() as websocket:
            await websocket.send(envelope.encode("hello", session="flood", down_next=0,
                                                 token=await app.fetch_token()))
            await websocket.recv()
            try:
                for seq in range(10_000):  # far beyond the window: no flow control
                    await websocket.send(envelope.encode("msg", seq=seq, body="{}"))
            except Exception:
                pass
            await websocket.wait_closed()
            flooded["close"] = websocket.close_code

    slow_server = [wslab.SlowConsumer(side="server", delay_s=0.001)]
    run = wslab.run(Design("flood", handler=server.handler, client=client,
                           serve_options=server.serve_options()),
                    workload=Workload(count=50, rate_per_s=100), faults=slow_server,
                    clients=3, settle_s=2)
    assert flooded["close"] == 1008
    lost = [i for i in run.ledger.lost_ids() if not i.startswith("u0.")]
    assert lost == []  # clients 1 and 2 lost nothing


# Reconnection -------------------------------------------------------------------

def test_library_reconnect_comes_back_but_keeps_no_message():
    s = wslab.run("library_reconnect", "network_interruption").summary()
    assert s["reconnects"] >= 1
    assert s["lost"] >= 1  # what was in flight when the connection died


def test_recovery_time_and_connection_attempts():
    naive = wslab.run("naive", "network_interruption").summary()
    production = wslab.run("production", "network_interruption").summary()
    assert naive["recovery_s"] != naive["recovery_s"]  # nan: it never came back
    # A silent attempt during the cut waits out open_timeout_s (2 s), then backoff (capped at 1 s).
    assert 0 <= production["recovery_s"] < DEFAULT.open_timeout_s + DEFAULT.backoff_cap_s
    assert production["connect_attempts"] >= 2
    assert wslab.run("production", "slow_consumer").summary()["recovery_s"] is None


@pytest.mark.parametrize("name", ["reconnect", "durable", "backpressure", "keepalive", "auth"])
def test_each_step_adds_what_it_says(name):
    step = {d.name: d for d in wslab.DESIGNS.values()}[name]
    assert step.description
    s = wslab.run(name, "network_interruption").summary()
    assert s["reconnects"] >= 1  # every step reconnects
    if name != "reconnect":
        assert s["lost"] == 0  # from 'durable' on, nothing in flight is lost


# Overflow policies and load shedding -------------------------------------------

def test_drop_oldest_renumbers_what_was_never_sent():
    w = OutboundWindow(capacity=4, window=1)
    for body in "abcd":
        w.add(body)
    assert w.next_to_send() == (0, "a")  # "a" is on the wire: never dropped
    assert w.drop_oldest_unsent() == "b"
    assert list(w.unacked) == [(0, "a"), (1, "c"), (2, "d")] and w.next_seq == 3
    w.acknowledge(0)
    assert w.next_to_send() == (1, "c")


@pytest.mark.parametrize("policy", ["reject", "drop_oldest"])
def test_overflow_policies_refuse_explicitly_and_lose_nothing(policy):
    small = design(policy, replace(DEFAULT, capacity=8, window=4, overflow=policy))
    run = wslab.run(small, "queue_overflow")
    s = run.summary()
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["out_of_order"] == 0
    assert s["rejected"] > 0  # the producer was told, message by message
    reasons = {r.reject_reason for r in run.ledger.records.values() if r.rejected_s is not None}
    assert reasons == ({"outbound queue full"} if policy == "reject"
                       else {"dropped: a newer message replaced it"})
    assert s["peak_queue"] <= 2 * 8 + 4  # bounded by capacity, not by the producer


def test_block_policy_slows_the_producer_instead():
    small = design("block", replace(DEFAULT, capacity=8, window=4))
    run = wslab.run(small, "queue_overflow")
    s = run.summary()
    assert s["lost"] == 0 and s["rejected"] == 0
    assert max(sample["producer_backlog"] for sample in run.samples) > 20  # waiting in the app
    assert s["peak_queue"] <= 2 * 8 + 4


def test_load_shedding_refuses_with_1013_and_clients_retry():
    shedding = design("shed", replace(DEFAULT, max_sessions=2))
    run = wslab.run(shedding, "network_interruption", faults=[], clients=4,
                    workload=Workload(count=20, rate_per_s=100), settle_s=3)
    assert run.metrics.total("wslab_sessions_shed_total") >= 1
    s = run.summary()
    assert s["duplicated"] == 0 and s["out_of_order"] == 0


def test_full_jitter_spreads_a_reconnect_storm():
    # Timing in a loaded process is not asserted (README has the measured storm);
    # what is certain: without jitter 200 clients wait exactly as long as each
    # other, with full jitter they do not, and every variant recovers everything.
    clients = range(200)
    same = {Backoff(jitter="none", rng=random.Random(c)).next_delay() for c in clients}
    spread = {Backoff(jitter="full", rng=random.Random(c)).next_delay() for c in clients}
    assert len(same) == 1 and len(spread) == 200
    no_jitter = design("no_jitter", replace(DEFAULT, backoff_jitter="none"))
    for d in (no_jitter, "production", "library_reconnect"):
        run = wslab.run(d, "reconnect_storm")
        assert run.summary()["lost"] == 0
        assert sum(run.attempts_per_bucket(0.01, after_s=0.8)) >= 200  # everyone came back


# Regressions found by the property tests --------------------------------------------

@pytest.mark.parametrize("workload", [Workload(count=200, direction="down"),
                                      Workload(count=200, echo=True)], ids=["push", "echo"])
def test_a_full_server_window_loses_nothing_when_the_connection_drops(workload):
    # Acknowledgements from the client are dropped until the server's window is
    # full, then the connection is cut: the message the server had in hand survives.
    faults = [wslab.FrameFault(start_s=0.3, duration_s=1.5, direction="up",
                               match=wslab.TextContaining('"ack"')),
              wslab.Cut(start_s=1.8, duration_s=0.05)]
    s = wslab.run("production", "network_interruption", workload=workload, faults=faults,
                  settle_s=3.0).summary()
    assert (s["lost"], s["rejected"], s["duplicated"], s["out_of_order"]) == (0, 0, 0, 0), s


def test_a_connection_gone_before_its_hello_is_not_a_server_error():
    async def client(app):
        async with app.connect():
            pass  # connect, say nothing, leave

    run = wslab.run(Design("silent", handler=server.handler, client=client),
                    workload=Workload(count=1, rate_per_s=10), faults=[], settle_s=0.3)
    assert run.errors == []


def test_a_returning_client_resumes_or_is_told_plainly_what_it_missed():
    away = [wslab.Cut(start_s=0.5, duration_s=0.8)]
    pushes = Workload(count=200, direction="down")
    full = wslab.run("production", "network_interruption", workload=pushes, faults=away,
                     settle_s=1.5).summary()
    assert (full["lost"], full["rejected"], full["duplicated"], full["out_of_order"]) == (0, 0, 0, 0)
    bounded = design("replay", replace(DEFAULT, replay_window=20))
    run = wslab.run(bounded, "network_interruption", workload=pushes, faults=away, settle_s=1.5)
    s = run.summary()
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["out_of_order"] == 0
    reasons = {r.reject_reason for r in run.ledger.records.values() if r.rejected_s is not None}
    assert s["rejected"] > 0 and reasons == {"beyond the replay window"}
    told = run.metrics.value("wslab_messages_missed_total", side="client")
    assert told == s["rejected"]  # the client was told exactly how many


# Hostile clients (issue 12) ---------------------------------------------------------


def test_a_session_resumes_only_for_its_subject_and_its_owner_is_undisturbed():
    from wslab.experiments.expiring_auth import hijack
    attack = asyncio.run(hijack(bound=True))
    assert attack.refused_code == envelope.NOT_YOUR_SESSION
    assert attack.learnt_up_next is None and attack.attacker_frames == 0  # nothing said
    assert attack.attacker_delivered == 0
    assert (attack.victim_lost, attack.victim_duplicated, attack.superseded) == (0, 0, 0)
    victim = [r for r in attack.run.ledger.records.values() if r.msg_id.startswith("u0.")]
    assert len(victim) == attack.victim_sent == 100 and all(len(r.deliveries) == 1 for r in victim)
    assert attack.run.metrics.value("wslab_sessions_refused_total", side="server",
                                    reason="not yours") == 1
    assert attack.run.errors == []


def store(**limits) -> sessions.SessionStore:
    return sessions.SessionStore(replace(DEFAULT, **limits))


def test_the_session_store_refuses_another_subjects_id_the_same_way_whatever_it_holds():
    s = store()
    mine = s.claim("id", "alice", 0.0, lambda: Session.new(DEFAULT))
    assert mine.verdict == sessions.OPENED
    mine.session.websocket = object()  # live
    mine.session.inbound.delivered(0)
    live = s.claim("id", "mallory", 1.0, lambda: Session.new(DEFAULT))
    s.release("id", 2.0)
    idle = s.claim("id", "mallory", 3.0, lambda: Session.new(DEFAULT))
    assert live == idle == sessions.Claim(sessions.NOT_YOURS, None, [])
    assert s.get("id") is mine.session and mine.session.inbound.next_expected == 1
    assert s.claim("id", "alice", 4.0, lambda: Session.new(DEFAULT)).verdict == sessions.RESUMED
    # Without tokens nobody has a subject: the id alone resumes (today's behaviour).
    anonymous = store()
    anonymous.claim("id", None, 0.0, lambda: Session.new(DEFAULT))
    assert anonymous.claim("id", None, 1.0, lambda: Session.new(DEFAULT)).verdict == sessions.RESUMED
    unbound = store(bind_sessions_to_subject=False)
    unbound.claim("id", "alice", 0.0, lambda: Session.new(DEFAULT))
    assert unbound.claim("id", "mallory", 1.0, lambda: Session.new(DEFAULT)).verdict == sessions.RESUMED


def test_the_session_store_evicts_the_longest_idle_within_its_bounds_and_says_what_it_held():
    s = store(max_sessions_per_subject=2, max_sessions_total=3, session_ttl_s=10.0)
    new = lambda: Session.new(DEFAULT)  # noqa: E731
    for i, subject in enumerate(["a", "a", "b"]):
        s.claim(f"{subject}{i}", subject, float(i), new).session.keep(f"held by {subject}{i}")
    # a's third session: its own bound; both of a's sessions are live, so refused
    assert s.claim("a9", "a", 3.0, new).verdict == sessions.FULL and len(s) == 3
    s.release("a1", 4.0)
    s.release("a0", 5.0)  # a1 has been idle longest
    claim = s.claim("a9", "a", 6.0, new)
    assert claim.verdict == sessions.OPENED and len(s) == 3
    assert [(e.session_id, e.reason, e.idle_s, e.held) for e in claim.evicted] == [
        ("a1", sessions.SUBJECT_AT_BOUND, 2.0, ["held by a1"])]
    # c's first session: the store's bound, the longest idle of anyone goes (a0)
    claim = s.claim("c0", "c", 7.0, new)
    assert [(e.session_id, e.reason) for e in claim.evicted] == [("a0", sessions.STORE_AT_BOUND)]
    # every session live and the store full: refused, nobody evicted
    assert s.claim("d0", "d", 8.0, new) == sessions.Claim(sessions.FULL, None, [])
    # idle past the TTL: evicted at the next hello
    s.release("b2", 8.0)
    assert s.claim("c0", "c", 17.9, new).evicted == []
    assert [e.session_id for e in s.claim("c0", "c", 18.0, new).evicted] == ["b2"]
    assert len(s) == 2


@contextlib.asynccontextmanager
async def plain_server(settings=DEFAULT):
    """The production handler behind a plain ``websockets`` server on 127.0.0.1,
    port 0, with a real :class:`ServerApp` (no lab, no proxy: what is measured is
    the server's own work). Yields the URI, the app and the run's state."""
    loop = asyncio.get_running_loop()
    ctx = RunContext(workload=Workload(count=0), plan=FaultPlan(), t0=loop.time())
    app = ServerApp(ctx, None, None, state={}, store={})

    async def handler(websocket):
        await server.handler(websocket, app, settings)

    async with serve(handler, "127.0.0.1", 0, **server.serve_options(settings)) as listening:
        yield f"ws://127.0.0.1:{listening.sockets[0].getsockname()[1]}/", app, ctx


def rss_kb_held() -> int:
    """The process's RSS (``/proc/self/status``) after glibc hands its free heap
    memory back (``malloc_trim``): without that, RSS also counts the freed 500 KB
    buffers glibc keeps for reuse, and grew 25 MB even when the server kept
    nothing."""
    ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def memory_held_after_the_attack(settings=DEFAULT, fresh=5000):
    """Hellos with ``fresh`` new session ids and 50 with 500 KB ids, after a
    warm-up of the same shape, against the server with ``settings``. Returns
    the close codes, the RSS growth in KB, the sessions kept and the metrics."""
    huge = "x" * 500_000
    logger = logging.getLogger("wslab.production")

    async def attack():
        async with plain_server(settings) as (uri, app, ctx):
            token = ctx.auth.issue("mallory", ctx.now())

            async def hellos(ids):
                codes = collections.Counter()
                for session_id in ids:
                    async with connect(uri, max_size=None, open_timeout=10) as websocket:
                        await websocket.send(envelope.encode("hello", session=session_id,
                                                             down_next=0, token=token))
                        with contextlib.suppress(ConnectionClosed):
                            await websocket.recv()
                    codes[websocket.close_code] += 1
                return codes

            await hellos([f"warm{i}" for i in range(200)] + [f"{huge}{i}" for i in range(50)])
            gc.collect()
            before_kb = rss_kb_held()
            codes = await hellos([f"s{i}" for i in range(fresh)] + [f"{huge}w{i}" for i in range(50)])
            gc.collect()
            return codes, rss_kb_held() - before_kb, len(app.store["sessions"]), app.metrics

    propagate, logger.propagate = logger.propagate, False  # pytest would keep every record
    try:
        return asyncio.run(attack())
    finally:
        logger.propagate = propagate


def test_fresh_session_ids_and_huge_ones_keep_the_store_and_the_memory_bounded():
    """5,000 fresh ids and 50 huge ones: the store keeps its bound and RSS stays
    put. Measured (``memory_held_after_the_attack``): +0.6 MB, 6.5 s; unbounded
    (no session limits, no id limit) +45 MB with 5,300 sessions kept, so the
    bound is what this asserts."""
    codes, grown_kb, kept, metrics = memory_held_after_the_attack()
    assert codes == {1000: 5000, 1008: 50}  # the long ids refused at the hello
    assert kept == DEFAULT.max_sessions_per_subject
    assert metrics.total("wslab_sessions_evicted_total") == 5200 - kept
    assert grown_kb <= 5 * 1024, f"RSS grew by {grown_kb} KB"


@pytest.mark.parametrize("first", [True, False], ids=["before hello", "after hello"])
def test_a_huge_integer_and_a_deep_nesting_get_an_error_frame_or_1008_never_1011(first):
    frames = ['{"t": "ack", "seq": ' + "9" * 5000 + "}", "[" * 200_000]

    async def attack(frame):
        async with plain_server() as (uri, app, ctx):
            async with connect(uri, max_size=None) as websocket:
                if not first:
                    await websocket.send(envelope.encode("hello", session="s", down_next=0,
                                                         token=ctx.auth.issue("c", ctx.now())))
                    assert json.loads(await websocket.recv())["t"] == "welcome"
                await websocket.send(frame)
                with contextlib.suppress(ConnectionClosed):
                    return json.loads(await websocket.recv()), websocket.close_code
                return None, websocket.close_code

    for frame, code in zip(frames, ["bad_number", "too_deep"]):
        reply, close = asyncio.run(attack(frame))
        if first:
            assert reply is None and close == 1008
        else:
            assert reply == {"t": "error", "code": code, "detail": reply["detail"]} and close is None


def garbage_run(settings, frames: int) -> tuple[dict, float]:
    """Clients 1 and 2 are the production client (200 messages each, 100/s);
    client 0, after its hello, sends ``frames`` frames that are not JSON and
    counts the error frames it gets. Returns what client 0 saw, and the p99
    latency of the other clients' messages in lab time on the CPU-charged clock
    (where the server's work for client 0 delays the others)."""
    seen: dict = {"errors": 0, "close": None}
    honest = make_client(settings)

    async def client(app):
        if app.client_id != 0:
            return await honest(app)
        async with app.connect() as websocket:
            await websocket.send(envelope.encode("hello", session="garbage", down_next=0,
                                                 token=await app.fetch_token()))
            await websocket.recv()
            await asyncio.sleep(0.3)

            async def count_errors():
                with contextlib.suppress(ConnectionClosed):
                    async for data in websocket:
                        seen["errors"] += json.loads(data)["t"] == "error"

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(count_errors())
                with contextlib.suppress(ConnectionClosed):
                    for i in range(frames):
                        await websocket.send("not json")
                        if i % 10 == 9:
                            await asyncio.sleep(0)  # as a network would: the server reads meanwhile
                await websocket.close()
            seen["close"] = websocket.close_code
        async for message in app.outgoing():
            app.reject(message, "the garbage client sends none")

    run = wslab.run(Design("garbage", handler=server.make_handler(settings), client=client,
                           serve_options=server.serve_options(settings)),
                    workload=Workload(count=200, rate_per_s=100), faults=[], clients=3,
                    settle_s=2, clock="cpu")
    latencies = sorted(r.deliveries[0] - r.produced_s for r in run.ledger.records.values()
                       if not r.msg_id.startswith("u0.") and r.deliveries)
    assert len(latencies) == 400 and run.errors == []
    return seen, latencies[int(0.99 * (len(latencies) - 1))]


def test_a_client_sending_garbage_is_cut_1008_after_its_budget_and_the_others_lose_nothing():
    # What the budget changes is the server's work: max_bad_frames error frames, then
    # close 1008, instead of one error frame per garbage frame. What that work costs
    # the other clients' latency is CPU time, which a loaded runner measures anywhere
    # from 0.4 to 5 ms (p99, CPU-charged clock): a benchmark's business, not a test's.
    # Measured by hand, medians of three: p99 0.4-0.8 ms with the budget, 5-6 ms with
    # max_bad_frames=10**9.
    seen, _ = garbage_run(DEFAULT, 10_000)  # garbage_run asserts all 400 delivered, no error
    assert seen == {"errors": DEFAULT.max_bad_frames, "close": 1008}
    unlimited, _ = garbage_run(replace(DEFAULT, max_bad_frames=2_000), 2_000)
    # within the budget, garbage is answered frame after frame, and the client closes
    assert unlimited["close"] == 1000 and unlimited["errors"] > 10 * DEFAULT.max_bad_frames


def test_a_half_open_handshake_is_closed_after_open_timeout():
    assert server.serve_options()["open_timeout"] == DEFAULT.open_timeout_s
    quick = replace(DEFAULT, open_timeout_s=0.3)

    async def half_open():
        async with plain_server(quick) as (uri, _, _):
            port = int(uri.rsplit(":", 1)[1].strip("/"))
            loop = asyncio.get_running_loop()
            started = loop.time()
            streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
            for _, writer in streams:
                writer.write(b"GET / HTTP/1.1\r\n")  # and never the rest of the request
            closed_after = []
            for reader, writer in streams:
                await reader.read()  # EOF: the server closed it
                closed_after.append(loop.time() - started)
                writer.close()
            return closed_after

    closed_after = asyncio.run(asyncio.wait_for(half_open(), 20))
    # The library's default would hold each for 10 s; the margin is for a loaded machine.
    assert 0.3 <= min(closed_after) and max(closed_after) < 5.0
