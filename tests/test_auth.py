"""Expiring tokens: the authority alone, then the production design under expiry and revocation."""

from dataclasses import replace

import pytest

import wslab
from wslab.auth import TokenAuthority, token_expires_s
from wslab.designs.production import design
from wslab.production.settings import DEFAULT

pytestmark = pytest.mark.timeout(60)


def test_tokens_expire_cannot_be_forged_and_can_be_revoked():
    authority = TokenAuthority(b"secret", ttl_s=1.0)
    token = authority.issue("c3", now_s=10.0)
    assert authority.verify(token, 10.5).subject == "c3"
    assert token_expires_s(token) == 11.0
    with pytest.raises(wslab.TokenExpired):
        authority.verify(token, 11.0)
    subject, expires, signature = token.split(".")
    with pytest.raises(wslab.TokenInvalid):
        authority.verify(f"{subject}.{int(expires) + 5000}.{signature}", 10.5)  # extended by hand
    with pytest.raises(wslab.TokenInvalid):
        authority.verify(None, 10.5)
    authority.revoke("c3")
    with pytest.raises(wslab.TokenRevoked) as info:
        authority.verify(token, 10.5)
    assert info.value.close_code == 4403
    with pytest.raises(wslab.TokenRevoked):
        authority.issue("c3", 12.0)


def test_refresh_in_band_and_a_revoked_client_gives_up_without_a_storm():
    run = wslab.run("production", "token_expiry")
    s = run.summary()
    assert (s["lost"], s["duplicated"], s["out_of_order"]) == (0, 0, 0)
    assert run.metrics.value("wslab_token_refreshes_total", side="client") > 0
    assert s["reconnects"] == 0  # tokens were refreshed without reconnecting
    rejected = [r.msg_id for r in run.ledger.records.values() if r.rejected_s is not None]
    assert rejected and all(i.startswith("u1.") for i in rejected)  # only the revoked client
    attempts = [c for _, c, event in run.connections if event == "accept" and c == 1]
    assert len(attempts) == 1  # no retry after 4403, no storm
    assert run.errors == []


def test_without_refresh_the_server_closes_4401_and_the_client_comes_back():
    no_refresh = design("no_refresh", replace(DEFAULT, refresh_when_left=0.0))
    run = wslab.run(no_refresh, "token_expiry", faults=[])
    s = run.summary()
    assert (s["lost"], s["duplicated"], s["out_of_order"]) == (0, 0, 0)
    assert s["reconnects"] >= 2  # every 0.6 s, each client
    assert run.metrics.value("wslab_auth_refused_total", side="server", code=4401) >= 2


async def _refuse_every_hello(websocket, app):
    await websocket.recv()
    await websocket.close(4401, "token not accepted")  # say, a server whose clock is skewed


def test_a_client_refused_at_every_hello_backs_off_instead_of_hammering():
    production = wslab.get_design("production")
    refusing = wslab.Design("refusing", handler=_refuse_every_hello, client=production.client,
                            stop_grace_s=production.stop_grace_s)
    run = wslab.run(refusing, "network_interruption", faults=[],
                    workload=wslab.Workload(count=10, rate_per_s=10), settle_s=0.5)
    # 1.5 s of refusals: back-off spaces them (a tight loop made hundreds)
    assert 2 <= run.connect_attempts <= 40
