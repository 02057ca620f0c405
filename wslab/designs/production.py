"""The production design: every mechanism together (lesson 12; built in 03–08).

Its pieces live in :mod:`wslab.production`, one mechanism per module.
"""

from __future__ import annotations

from ..contract import Design
from ..production import client, server

DESIGN = Design(
    "production",
    handler=server.handler,
    client=client.client,
    serve_options=server.serve_options(),
    description="Reconnection with full-jitter backoff, a durable outbound window with "
    "cumulative acknowledgements and go-back-N resend, sequence numbers with "
    "de-duplication, credit-based flow control, tuned keepalive, separate reader, "
    "worker and writer tasks.",
)
