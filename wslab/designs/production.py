"""The production design and the steps that lead to it (lessons 03–12).

Every step is the same code with fewer mechanisms switched on
(:class:`wslab.production.settings.Settings`), so a lesson can measure what
one mechanism changes:

==============  =====  =================================================================
design          adds   mechanisms on
==============  =====  =================================================================
``reconnect``   03     reconnection with full-jitter backoff; no acknowledgements,
                       unbounded buffers, the library's default keepalive (20 s)
``durable``     04     + every message kept until acknowledged and resent after a
                       reconnection (no de-duplication yet: resent copies are
                       processed again); sessions in server memory
``backpressure`` 05    + bounded window and capacity (credit-based flow control)
``keepalive``   06     + ping every 0.25 s, a dead peer noticed within 0.75 s
                       (and its connection closed 0.1 s later)
``auth``        09     + expiring tokens: checked at the hello, refreshed in-band,
                       4401 on expiry, 4403 on revocation (no retry storm)
``production``  10–12  + de-duplication by sequence number, sessions in the durable store
==============  =====  =================================================================

:func:`design` builds a variant from any :class:`Settings`.
"""

from __future__ import annotations

from dataclasses import replace

from ..contract import Design
from ..production import client, server
from ..production.settings import DEFAULT, UNBOUNDED, Settings

LIBRARY_KEEPALIVE = dict(ping_interval_s=20.0, ping_timeout_s=20.0)


def design(name: str, settings: Settings = DEFAULT, description: str = "") -> Design:
    """A :class:`Design` running the production code with ``settings``."""
    return Design(name, handler=server.make_handler(settings), client=client.make_client(settings),
                  serve_options=server.serve_options(settings), description=description,
                  stop_grace_s=settings.stop_timeout_s + 0.1)


_AUTH = replace(DEFAULT, deduplicate=False, durable_sessions=False)
_KEEPALIVE = replace(_AUTH, require_token=False)
_BACKPRESSURE = replace(_KEEPALIVE, **LIBRARY_KEEPALIVE)
_DURABLE = replace(_BACKPRESSURE, capacity=UNBOUNDED, window=UNBOUNDED)
_RECONNECT = replace(_DURABLE, acknowledgements=False)

# Each step's settings, to build a variant of a step: design("mine", replace(STEP_SETTINGS["backpressure"], capacity=32))
STEP_SETTINGS: dict[str, Settings] = {
    "reconnect": _RECONNECT, "durable": _DURABLE, "backpressure": _BACKPRESSURE,
    "keepalive": _KEEPALIVE, "auth": _AUTH, "production": DEFAULT,
}

STEPS: list[Design] = [
    design("reconnect", _RECONNECT,
           "Reconnects with full-jitter backoff; sends fire-and-forget, unbounded buffers, "
           "the library's default keepalive."),
    design("durable", _DURABLE,
           "+ keeps every message until acknowledged and resends it after a reconnection "
           "(no de-duplication: resent copies are processed again)."),
    design("backpressure", _BACKPRESSURE,
           "+ bounded window and capacity: the producer waits, memory stays bounded."),
    design("keepalive", _KEEPALIVE,
           "+ keepalive tuned to the lab's time: a dead peer is noticed within 0.75 s."),
    design("auth", _AUTH,
           "+ a token at the hello, refreshed in-band before it expires; 4401 when it "
           "expires, 4403 when revoked (and then no retry)."),
    design("production", DEFAULT,
           "Everything: reconnection with full-jitter backoff, durable outbound window with "
           "cumulative acknowledgements and go-back-N resend, de-duplication by sequence number "
           "in a durable session store, credit-based flow control, tuned keepalive, separate "
           "reader, worker and writer tasks."),
]
DESIGN = STEPS[-1]

# Up to this many clients the production keepalive (0.25 s / 0.5 s) holds under the
# CPU-charged clock: the loop lags at most about 20 ms at 100 clients, 430 ms at
# 1,000 (wslab bench, scale section): too near the 0.5 s ping timeout.
KEEPALIVE_CLIENTS = 100


def for_clients(clients: int, settings: Settings = DEFAULT) -> Design:
    """The production design with its keepalive scaled for ``clients`` at once:
    ``settings`` up to :data:`KEEPALIVE_CLIENTS`; beyond, the ping interval and
    timeout (and the open timeout, a handshake queued behind a storm's) grow in
    proportion, so a busy loop is not taken for a dead peer (10x the lag measured
    at 1,000 clients). A dead peer is noticed later in proportion, which a
    scenario's settle window must allow for."""
    factor = max(1.0, clients / KEEPALIVE_CLIENTS)
    if factor == 1.0:
        return design("production", settings)
    return design("production", replace(
        settings, ping_interval_s=settings.ping_interval_s * factor,
        ping_timeout_s=settings.ping_timeout_s * factor,
        open_timeout_s=settings.open_timeout_s * factor))
