"""Lesson 09 (notebooks/09_expiring_auth.ipynb): tokens that expire, sessions that are revoked.

The lab's identity provider (:class:`~wslab.auth.TokenAuthority`) issues tokens
that live ``Scenario.token_ttl_s`` and stops issuing them to a revoked client
(:class:`~wslab.faults.Revoke`). A server answers 4401 for a missing, invalid or
expired token (authenticate again) and 4403 for a revoked one (forbidden: do
not retry). What this module measures:

- :func:`revocation`: what a revoked client did after its revocation: messages
  it still got delivered (and how many beyond the grader's grace), refused,
  and its connection attempts; :func:`attempts_between` counts the attempts
  of a time window (a storm of refusals, a reconnection that never waits);
- :func:`strict_design`: the code the vague prompt gets, with its server made
  strict (the token checked before every message): the server enforces expiry,
  the client never refreshes, so every message after the first expiry costs a
  refused connection and is lost;
- :func:`auth_step`: the production ``auth`` step, refreshing in-band or (with
  ``refresh=False``) waiting for the server's 4401 and reconnecting;
  :func:`lifetime_sweep` runs it for several token lifetimes at once and
  :func:`plot_lifetimes` draws what a lifetime costs (refreshes) and buys (how
  long a revoked session keeps delivering);
- :class:`ReactingClient` and :func:`reaction_design`: the production client
  with its reaction to a close code replaced by a function (the exercise:
  ``reaction(close_code) -> "refresh" | "back off" | "stop"``), a
  :class:`Journal` of every close and what the client did about it, and the two
  scenarios the checker runs it in (:func:`expiry_scenario`,
  :func:`revocation_scenario`);
- :func:`hijack`: a client with its own valid token presents another client's
  session id, against a server with the ownership check off and on
  (``bind_sessions_to_subject``): what the victim lost, whether it was
  superseded, and what the attacker learnt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from websockets.exceptions import ConnectionClosed

from ..contract import Design
from ..designs.production import STEP_SETTINGS
from ..designs.production import design as production_design
from ..errors import AuthError, TokenRevoked
from ..faults import Cut, FaultPlan, Revoke, ServerRestart
from ..grading import REVOKE_GRACE_S
from ..lab import arun
from ..production import envelope
from ..production.client import RETRYABLE, ReliableClient, make_client, new_session_id
from ..production.server import make_handler, serve_options
from ..production.settings import DEFAULT, Settings
from ..run import Run
from ..scenarios import Scenario, get_scenario
from ..workload import Workload, split_id

__all__ = [
    "ACTIONS",
    "REVOKE_GRACE_S",
    "Hijack",
    "Journal",
    "LifetimeRow",
    "ReactingClient",
    "Revocation",
    "attempts_between",
    "auth_step",
    "expiry_scenario",
    "hijack",
    "lifetime_sweep",
    "plot_lifetimes",
    "reaction_design",
    "revocation",
    "revocation_scenario",
    "strict_design",
    "strict_handler",
]

ACTIONS = ("refresh", "back off", "stop")
UNAUTHORIZED, FORBIDDEN = envelope.UNAUTHORIZED, envelope.FORBIDDEN


# What a revoked client did after its revocation ---------------------------------


@dataclass(frozen=True)
class Revocation:
    """One revoked client, from the moment of its revocation to the end of the run."""

    client: int
    revoked_s: float
    produced: int  # its messages produced after the revocation
    delivered: int  # ... and delivered all the same
    late: int  # ... produced more than REVOKE_GRACE_S after it (the grader's criterion)
    refused: int  # ... refused explicitly (app.reject): the application knows
    attempts: int  # connection attempts the proxy saw from it after the revocation
    last_delivered_s: float | None  # when its last message was delivered (None: never)

    @property
    def kept_delivering_s(self) -> float:
        """How long after the revocation its messages were still delivered (0: none)."""
        if self.last_delivered_s is None:
            return 0.0
        return max(0.0, self.last_delivered_s - self.revoked_s)


def revocation(run: Run, client: int | None = None) -> Revocation:
    """What revoked ``client`` (by default the first client the run's
    :class:`~wslab.faults.Revoke` names) did after its revocation."""
    fault = next((f for f in run.faults if isinstance(f, Revoke)), None)
    if fault is None:
        raise ValueError(f"run {run.design} × {run.scenario} revokes no session")
    if client is None:
        client = min(fault.clients) if fault.clients else 0
    start = fault.start_s
    produced = delivered = late = refused = 0
    last: float | None = None
    for record in run.ledger.records.values():
        source = split_id(record.msg_id)
        if source is None or _client_of(record.msg_id) != client or record.produced_s < start:
            continue
        produced += 1
        if record.deliveries:
            delivered += 1
            last = max(last or 0.0, max(record.deliveries))
            late += record.produced_s > start + REVOKE_GRACE_S
        elif record.rejected_s is not None:
            refused += 1
    attempts = sum(1 for t, c, event in run.connections
                   if event == "accept" and c == client and t >= start)
    return Revocation(client, start, produced, delivered, late, refused, attempts, last)


def _client_of(msg_id: str) -> int | None:
    head = msg_id.split(".", 1)[0]  # "u1.17" -> 1 (see wslab.workload)
    return int(head[1:]) if head[1:].isdigit() else None


def attempts_between(run: Run, start_s: float, end_s: float, client: int | None = None) -> int:
    """Connection attempts the proxy accepted in ``[start_s, end_s)`` (of ``client``)."""
    return sum(1 for t, c, event in run.connections
               if event == "accept" and start_s <= t < end_s and (client is None or c == client))


# The vague code, with its server made strict ----------------------------------------


async def strict_handler(websocket, app) -> None:
    """The vague prompt's server, made strict: the token of the ``Authorization``
    header is verified at connect and again before every message; an expired one
    closes the connection with 4401, a revoked one with 4403. The message that
    finds the token expired is not processed."""
    token = websocket.request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    try:
        app.verify_token(token)
        async for message in websocket:
            app.verify_token(token)
            await app.process(message)
    except AuthError as exc:
        await websocket.close(exc.close_code, str(exc))
    except ConnectionClosed:
        pass


def strict_design(vague: Design, name: str = "vague client, strict server") -> Design:
    """``vague``'s client (it never refreshes its token) against :func:`strict_handler`."""
    return Design(name, handler=strict_handler, client=vague.client,
                  serve_options=dict(vague.serve_options), stop_grace_s=vague.stop_grace_s)


# The production auth step -----------------------------------------------------------


def auth_step(*, refresh: bool = True) -> Design:
    """The production ``auth`` step; with ``refresh=False`` it never refreshes
    in-band: the server closes 4401 at expiry and the client reconnects with a
    new token (its window keeps and resends what was not acknowledged)."""
    if refresh:
        return production_design("auth", STEP_SETTINGS["auth"])
    return production_design("auth, no refresh", replace(STEP_SETTINGS["auth"], refresh_when_left=0.0))


@dataclass(frozen=True)
class LifetimeRow:
    """The ``auth`` step under ``token_expiry`` with tokens that live ``ttl_s``."""

    ttl_s: float
    refreshes_per_client: float  # in-band refreshes (token requests beyond the first)
    revoked: Revocation
    lost: int
    reconnects: int
    run: Run = field(repr=False, compare=False)


async def lifetime_sweep(ttls_s: Iterable[float], scenario: str | Scenario = "token_expiry",
                         design: Design | None = None) -> list[LifetimeRow]:
    """Run ``design`` (the ``auth`` step) under ``scenario`` once per token
    lifetime, all at once (each run in its own lab). A client refreshes when 40 %
    of its token's life is left, so it asks for a token every 0.6 × ttl and a
    revocation takes effect at its next refresh: up to 0.6 × ttl later."""
    base = get_scenario(scenario)
    chosen = design or auth_step()
    ttls = list(ttls_s)
    runs = await asyncio.gather(*(arun(chosen, base.with_(token_ttl_s=ttl)) for ttl in ttls))
    rows = []
    for ttl, run in zip(ttls, runs):
        s = run.summary()
        refreshes = run.metrics.total("wslab_token_refreshes_total")
        rows.append(LifetimeRow(ttl, refreshes / run.clients, revocation(run), s["lost"],
                                s["reconnects"], run))
    return rows


def plot_lifetimes(rows: Sequence[LifetimeRow]) -> Figure:
    """Two panels against the token lifetime: token requests per client (the
    cost), and how long the revoked client's messages kept being delivered after
    its revocation (the risk), with the grader's grace as a dashed line."""
    fig, (cost, risk) = plt.subplots(1, 2, figsize=(9.0, 3.2), layout="constrained")
    ttls = [r.ttl_s for r in rows]
    labels = [f"{t:g}" for t in ttls]
    cost.bar(labels, [r.refreshes_per_client for r in rows], color="#4c72b0")
    cost.set_title("cost: in-band refreshes per client", fontsize="medium")
    cost.set_xlabel("token lifetime (s)")
    cost.set_ylabel("refreshes in the 2 s run")
    colors = ["#d62728" if r.revoked.late else "#2ca02c" for r in rows]
    risk.bar(labels, [r.revoked.kept_delivering_s for r in rows], color=colors)
    risk.axhline(REVOKE_GRACE_S, color="#7f7f7f", linestyle="--", linewidth=1,
                 label=f"grace {REVOKE_GRACE_S:g} s")
    for i, r in enumerate(rows):
        cut_off = r.revoked.refused > 0 or r.revoked.delivered < r.revoked.produced
        label = f"{r.revoked.late} late" + ("" if cut_off else "\nnever cut off")
        risk.annotate(label, (i, r.revoked.kept_delivering_s), ha="center", va="bottom",
                      fontsize="small")
    risk.set_ylim(0, 1.35 * max([REVOKE_GRACE_S, *(r.revoked.kept_delivering_s for r in rows)]))
    risk.set_title("risk: a revoked session still delivering", fontsize="medium")
    risk.set_xlabel("token lifetime (s)")
    risk.set_ylabel("seconds after the revocation")
    risk.legend(fontsize="small", loc="upper left")
    return fig


# The exercise's harness: the production client, reacting to a close as told ---------

Reaction = Callable[[int | None], str]


@dataclass
class Journal:
    """Every close a :class:`ReactingClient` saw, and what it did:
    ``(t_s, client, code, action)``; ``code`` None when the connection failed
    before a close frame (refused, reset during the handshake); ``action``
    ``"provider refused"`` when the identity provider refused a new token."""

    entries: list[tuple[float, int, int | None, str]] = field(default_factory=list)

    def of(self, client: int) -> list[tuple[float, int | None, str]]:
        return [(t, code, action) for t, c, code, action in self.entries if c == client]

    def count(self, *, client: int | None = None, code: object = ..., action: str | None = None,
              after_s: float = 0.0, before_s: float = float("inf")) -> int:
        return sum(1 for t, c, k, a in self.entries
                   if (client is None or c == client) and (code is ... or k == code)
                   and (action is None or a == action) and after_s <= t < before_s)


class ReactingClient(ReliableClient):
    """The production client (its window, hello and channel), with its reaction
    to a close replaced by ``reaction(close_code)``:

    - ``"refresh"``: get a new token and reconnect at once;
    - ``"back off"``: wait the backoff delay (full jitter), then reconnect with
      the token it has;
    - ``"stop"``: stop for good and refuse every message, kept or still to come.

    It refreshes only when told to (``refresh_when_left=0``), so every expiry
    reaches it as the server's 4401. A reaction that raises or answers anything
    else stops it, and the journal says why.
    """

    def __init__(self, app, settings: Settings, reaction: Reaction, journal: Journal) -> None:
        super().__init__(app, settings, seed=app.seed)
        self.reaction, self.journal = reaction, journal

    def _note(self, code: int | None, action: str) -> None:
        self.journal.entries.append((round(self.app.now(), 4), self.app.client_id, code, action))

    async def _connect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        token: str | None = None
        while True:
            self.state = "connecting"
            if token is None:
                try:
                    token = await self.app.fetch_token()
                except TokenRevoked:
                    self._note(None, "provider refused")
                    return await self._revoked()
            websocket, started = None, loop.time()
            try:
                async with self.app.connect(**self.connect_options()) as websocket:
                    await self._hello(websocket, token)
                    self.websocket, self.state = websocket, "open"
                    self.connections += 1
                    started = loop.time()
                    await self._serve(websocket, token)
            except RETRYABLE:
                pass
            code = getattr(websocket, "close_code", None)
            try:
                action = self.reaction(code)
            except Exception as exc:  # noqa: BLE001 - the learner's function
                self._note(code, f"raised {type(exc).__name__}: {exc}")
                return await self._revoked()
            if action not in ACTIONS:
                self._note(code, f"answered {action!r}")
                return await self._revoked()
            self._note(code, action)
            if action == "stop":
                return await self._revoked()
            if action == "refresh":
                token = None
                continue
            if loop.time() - started >= self.settings.stable_after_s:
                self.backoff.reset()
            self.state = "backing off"
            await asyncio.sleep(self.backoff.next_delay())


def reaction_design(reaction: Reaction, name: str = "your reaction") -> tuple[Design, Journal]:
    """The production design (its server enforces expiry with 4401 and
    revocation with 4403; sessions survive a restart, copies are skipped) with a
    :class:`ReactingClient`; and the journal its clients write to."""
    settings = replace(DEFAULT, refresh_when_left=0.0)
    journal = Journal()

    async def reacting_client(app) -> None:
        await ReactingClient(app, settings, reaction, journal).run()

    design = Design(name, handler=make_handler(settings), client=reacting_client,
                    serve_options=serve_options(settings), stop_grace_s=settings.stop_timeout_s + 0.1)
    return design, journal


# The checker's scenarios ----------------------------------------------------------------

EXPIRY_TTL_S = 0.5
CUT_START_S, CUT_S = 0.8, 0.2
REVOKE_AT_S = 0.5
RESTART_START_S, RESTART_S = 0.6, 0.3


def expiry_scenario() -> Scenario:
    """Two clients, 100 messages/s each for 1.5 s; tokens live 0.5 s (so the
    server closes 4401 at every expiry of a client that does not refresh); the
    network drops every connection at 0.8 s for 0.2 s (close 1006, then
    handshakes reset)."""
    return Scenario("tokens expire, network cut",
                    "Tokens live 0.5 s; every connection is cut at 0.8 s for 0.2 s.",
                    Workload(count=150, rate_per_s=100, direction="up"),
                    FaultPlan([Cut(start_s=CUT_START_S, duration_s=CUT_S)]), clients=2, seed=91,
                    token_ttl_s=EXPIRY_TTL_S)


def revocation_scenario() -> Scenario:
    """Two clients, 100 messages/s each for 1.5 s; tokens outlive the run;
    client 1's session is revoked at 0.5 s, and the server restarts at 0.6 s
    (close 1012, down 0.3 s): client 1 comes back with a token that is revoked
    and gets 4403."""
    return Scenario("session revoked, server restart",
                    "Client 1 revoked at 0.5 s; the server restarts at 0.6 s for 0.3 s.",
                    Workload(count=150, rate_per_s=100, direction="up"),
                    FaultPlan([Revoke(start_s=REVOKE_AT_S, clients=frozenset({1})),
                               ServerRestart(start_s=RESTART_START_S, duration_s=RESTART_S)]),
                    clients=2, seed=92, token_ttl_s=60.0)


# A session taken by another subject ------------------------------------------------------

HIJACK_AT_S = 0.5
HIJACK_MESSAGES = 10


@dataclass(frozen=True)
class Hijack:
    """Client 1 (its own valid token) resumes client 0's session at
    ``HIJACK_AT_S`` and sends ``HIJACK_MESSAGES`` of its messages in it."""

    bound: bool  # the server's bind_sessions_to_subject
    refused_code: int | None  # how the attacker's hello was closed (None: welcomed)
    learnt_up_next: int | None  # the victim's next sequence number, told to the attacker
    attacker_frames: int  # frames the server sent the attacker
    attacker_delivered: int  # attacker's messages processed in the victim's session
    victim_sent: int
    victim_lost: int  # never delivered, never refused: lost silently
    victim_duplicated: int
    superseded: int  # victim connections the attacker's hello closed (4001)
    run: Run = field(repr=False, compare=False)


async def hijack(*, bound: bool, settings: Settings = DEFAULT) -> Hijack:
    """Run the hijack against the production server with
    ``bind_sessions_to_subject=bound`` (the victim is the production client).

    The attacker needs no secret of the victim's: in a lab run a client's
    session id is derived from the run's seed (:func:`new_session_id`), as any
    id from a seeded ``random.Random`` can be. Unbound, the server hands it the
    session: the welcome tells it the victim's ``up_next``, the victim is
    superseded, and the attacker's messages take the victim's sequence numbers,
    so the victim's own copies are dropped as duplicates and acknowledged:
    lost, silently. Bound, the hello is closed 4409 before anything is read or
    said about the session."""
    chosen = replace(settings, bind_sessions_to_subject=bound)
    seen: dict = {"code": None, "up_next": None, "frames": 0}
    victim = make_client(chosen)

    async def client(app) -> None:
        if app.client_id == 0:
            return await victim(app)
        await asyncio.sleep(HIJACK_AT_S)
        victims_id = new_session_id(app.seed - app.client_id)  # client 0's seed
        async with app.connect() as websocket:
            await websocket.send(envelope.encode("hello", session=victims_id, down_next=0,
                                                 token=await app.fetch_token()))
            try:
                reply = envelope.decode(await websocket.recv())
                seen["frames"] += 1
                if reply.type == "welcome":
                    seen["up_next"] = reply.fields["up_next"]
                    for offset in range(HIJACK_MESSAGES):
                        body = await app.next_message()
                        await websocket.send(envelope.encode(
                            "msg", seq=reply.fields["up_next"] + offset, body=body))
                    async for _ in websocket:  # acknowledgements, until superseded
                        seen["frames"] += 1
            except ConnectionClosed:
                pass
            seen["code"] = websocket.close_code
        async for message in app.outgoing():
            app.reject(message, "the attacker sends no more")

    design = Design(f"hijack, sessions {'bound' if bound else 'unbound'}",
                    handler=make_handler(chosen), client=client,
                    serve_options=serve_options(chosen), stop_grace_s=chosen.stop_timeout_s + 0.1)
    run = await arun(design, "network_interruption", faults=[], clients=2,
                     workload=Workload(count=100, rate_per_s=100, direction="up"), settle_s=1.0)
    mine = [r for r in run.ledger.records.values() if _client_of(r.msg_id) == 0]
    return Hijack(
        bound=bound, refused_code=seen["code"] if seen["up_next"] is None else None,
        learnt_up_next=seen["up_next"], attacker_frames=seen["frames"],
        attacker_delivered=sum(1 for r in run.ledger.records.values()
                               if _client_of(r.msg_id) == 1 and r.deliveries),
        victim_sent=len(mine),
        victim_lost=sum(1 for r in mine if not r.deliveries and r.rejected_s is None),
        victim_duplicated=sum(1 for r in mine if len(r.deliveries) > 1),
        superseded=sum(1 for e in run.logs if e["event"] == "superseding an older connection"
                       and e.get("client") == 1),
        run=run)
