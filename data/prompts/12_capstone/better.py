"""The service after the test plan: every mechanism it asked for, each in one place.

What the plan (test_plan.md) found in the first version, and the mechanism that fixes each:

- server pushes and echo replies were sent once and lost in flight at a cut or a
  restart (attacks 1, 6): every message, in both directions, is now kept in an
  outbound window until the peer acknowledges it (cumulative acks, go-back-N
  resend after a reconnection or after ``ack_timeout_s`` without progress);
- a replayed frame was delivered twice (attack 5): both sides number their
  messages and deliver each sequence number once, in order; the server keeps
  its sessions in the durable store, so a restart forgets nothing;
- the outbound queue grew with the burst (attack 2): a bounded window
  (``capacity``) with credit (``window``): the producer waits;
- a revoked session crashed the client (attack 3): the token is checked at the
  hello, refreshed in-band before it expires, and a revoked client stops for good
  and refuses every message it holds or is given, explicitly;
- reader, worker and writer are separate tasks, so a slow application never
  stops the socket being read (or pings being answered).

The mechanisms are long enough that this answer reuses wslab's implementation
(``wslab.production``: backoff, reliable window and sequence, channel, envelope,
client, server); ``SETTINGS`` carries every value with its reason
(``wslab.production.settings``).
"""

from wslab.production import client as reliable_client
from wslab.production import server as reliable_server
from wslab.production.settings import DEFAULT

SETTINGS = DEFAULT  # ping 0.25 s / timeout 0.5 s, capacity 128, window 32, backoff 0.05-1 s

handler = reliable_server.make_handler(SETTINGS)
client = reliable_client.make_client(SETTINGS)
SERVE_OPTIONS = reliable_server.serve_options(SETTINGS)
STOP_GRACE_S = SETTINGS.stop_timeout_s + 0.1  # time to flush and close with 1000 at the end
