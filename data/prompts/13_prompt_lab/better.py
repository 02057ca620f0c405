"""Device updates over WebSocket: the production design, with values from your numbers.

Lifecycle: connect (backoff with full jitter) -> hello with a token and the
session id -> receive / process / acknowledge, with a reader, a worker and a
writer task per connection -> refresh the token in-band -> disconnect (keepalive,
reset, restart) -> reconnect and resend what is unacknowledged -> stop (flush
or report, close with 1000, cancel every task).

Failure modes and what handles each:

=========================  ==================================================
the network drops          every message kept until acknowledged, resent after
                           reconnecting; the server skips sequence numbers it
                           has already processed (once, in order)
the server restarts        sessions and their sequence numbers are in the
                           durable store, not in memory
a slow consumer / a burst  at most CAPACITY messages kept, WINDOW on the wire
                           (credit); the producer waits (policy "block")
a silently dead flow       ping every PING_INTERVAL_S, pong due within
                           PING_TIMEOUT_S: noticed within 0.75 s < 1 s
a latency spike (300 ms)   PING_TIMEOUT_S = 0.5 s > the 0.42 s worst round trip
a lost acknowledgement     acknowledgements are cumulative; a resend is dropped
                           by sequence number
shutdown in flight         STOP_TIMEOUT_S to flush, then report the rest
token expiry / revocation  refreshed in-band at 40 % of its life left; 4403 on
                           revocation: the client refuses its messages, no retry
every client at once       full jitter between 0 and min(1 s, 50 ms * 2**n)
=========================  ==================================================

The mechanisms are long; they live in one module each (``wslab.production``:
backoff, reliable window and sequence, channel, envelope, server, client), and
this file chooses their values. Each value below says which assumption decides it.
"""

from wslab.production import client as reliable_client
from wslab.production import server as reliable_server
from wslab.production.settings import Settings

SETTINGS = Settings(
    # Keepalive: worst-case detection = interval + timeout = 0.75 s (target 1 s);
    # the timeout stays above the worst spike's round trip (2 x 0.21 s).
    ping_interval_s=0.25,
    ping_timeout_s=0.5,
    close_timeout_s=0.1,  # a dead flow swallows the closing handshake: don't wait 10 s
    # Reconnection: full jitter, capped at 1 s (outages last up to 0.5 s).
    backoff_base_s=0.05,
    backoff_cap_s=1.0,
    backoff_jitter="full",
    # Memory: 128 kept + 32 on the wire stays under 256 per connection; "block"
    # makes the producer wait when it is full.
    capacity=128,
    window=32,
    overflow="block",
    # Exactly once, in order, across restarts.
    acknowledgements=True,
    deduplicate=True,
    durable_sessions=True,
    # Tokens live 0.6 s: refresh with 40 % (0.24 s) left.
    require_token=True,
    refresh_when_left=0.4,
    stop_timeout_s=0.4,
)

SERVE_OPTIONS = reliable_server.serve_options(SETTINGS)  # keepalive and limits on serve() too
STOP_GRACE_S = SETTINGS.stop_timeout_s + 0.1


async def handler(websocket, app):
    """One device's connection: hello and token, then reader, worker and writer tasks."""
    await reliable_server.handler(websocket, app, SETTINGS)


async def client(app):
    """One device: reconnect forever, keep every update until acknowledged."""
    await reliable_client.ReliableClient(app, SETTINGS, seed=app.seed).run()
