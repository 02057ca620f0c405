"""Short-lived tokens, as an identity provider issues them (lesson 09).

Pure: time comes in as a number (seconds of the run), nothing sleeps.

A token reads ``<subject>.<expires_ms>.<signature>``: the signature is an
HMAC-SHA256 of the rest under the authority's secret, so a token cannot be
forged or extended by the client. :meth:`TokenAuthority.revoke` ends every
session of a subject: its tokens stop verifying, and it gets no new ones.

Close codes a server answers with (documented in
:mod:`wslab.production.envelope`): 4401 when the token is missing, invalid or
expired (get a new token, then reconnect), 4403 when it was revoked (stop:
retrying cannot help).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from .errors import ConfigError, TokenExpired, TokenInvalid, TokenRevoked


@dataclass(frozen=True)
class Claims:
    subject: str
    expires_s: float


class TokenAuthority:
    """Issues tokens that live ``ttl_s`` seconds, verifies and revokes them."""

    def __init__(self, secret: bytes, ttl_s: float) -> None:
        if not isinstance(ttl_s, (int, float)) or ttl_s <= 0:
            raise ConfigError(f"token ttl_s must be seconds > 0, got {ttl_s!r}")
        self._secret = secret
        self.ttl_s = float(ttl_s)
        self.revoked: set[str] = set()
        self.issued = 0  # tokens handed out
        self.verified = 0  # verifications asked for, whatever their answer

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, subject: str, now_s: float) -> str:
        """A fresh token for ``subject``; raises TokenRevoked for a revoked one."""
        if "." in subject or not subject:
            raise ConfigError(f"a token subject is a non-empty name without dots, got {subject!r}")
        if subject in self.revoked:
            raise TokenRevoked(f"the sessions of {subject!r} were revoked")
        self.issued += 1
        payload = f"{subject}.{round((now_s + self.ttl_s) * 1000)}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: object, now_s: float) -> Claims:
        """The token's claims, or TokenInvalid / TokenExpired / TokenRevoked."""
        self.verified += 1
        if not isinstance(token, str) or token.count(".") < 2:
            raise TokenInvalid("a token reads <subject>.<expires>.<signature>")
        payload, _, signature = token.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise TokenInvalid("bad signature")
        subject, _, expires_ms = payload.rpartition(".")
        claims = Claims(subject, int(expires_ms) / 1000)
        if subject in self.revoked:
            raise TokenRevoked(f"the sessions of {subject!r} were revoked")
        if now_s >= claims.expires_s:
            raise TokenExpired(f"expired {now_s - claims.expires_s:.3f} s ago")
        return claims

    def revoke(self, subject: str) -> None:
        self.revoked.add(subject)


def token_expires_s(token: str) -> float:
    """When ``token`` expires (run seconds), read from its claims as a client
    reads a JWT's ``exp``: it needs no secret, and proves nothing."""
    try:
        return int(token.rsplit(".", 2)[1]) / 1000
    except (IndexError, ValueError):
        raise ConfigError(f"not a token: {token!r}") from None
