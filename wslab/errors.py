"""Every error wslab raises on purpose.

The hierarchy::

    WslabError                      base of everything below
    ├── ConfigError (ValueError)    bad input to the lab: a name, a number, a shape
    │   ├── UnknownNameError        a design or scenario name that does not exist
    │   └── DesignContractError     an object that does not fit the design contract
    │       └── ExternalProcessError a design's process that cannot be run (wslab.external)
    ├── RunError (RuntimeError)     a run that could not finish cleanly
    │   ├── RunTimeoutError         the run passed its hard time limit
    │   └── DesignHangError         the design ignored cancellation at teardown
    └── AuthError                   a token the lab's authority refuses (``code``)
        ├── TokenInvalid            not issued by the authority, or damaged
        ├── TokenExpired            past its expiry
        └── TokenRevoked            its subject's sessions were revoked

Messages say what was expected and what to do about it; the original exception,
when there is one, is chained with ``from``.
"""

from __future__ import annotations


class WslabError(Exception):
    """Base class of the errors wslab raises on purpose."""


class ConfigError(WslabError, ValueError):
    """Bad input to the lab: the message names the field and the value."""


class UnknownNameError(ConfigError, KeyError):
    """A design or scenario name that wslab does not know.

    ``kind`` is ``"design"`` or ``"scenario"``; ``known`` lists the valid names.
    """

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(
            f"unknown {kind} {name!r}; known {kind}s: {', '.join(self.known)}"
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DesignContractError(ConfigError, TypeError):
    """An object given as a design does not fit :class:`wslab.Design`."""


class ExternalProcessError(DesignContractError):
    """A design's process (:mod:`wslab.external`) that cannot be run as given: its
    command does not start, it exits or never opens its port, or it writes a line
    outside the line protocol. The message names the process and what it did."""


class RunError(WslabError, RuntimeError):
    """A run that could not finish cleanly."""


class RunTimeoutError(RunError, TimeoutError):
    """The run passed its hard time limit (``time_limit_s``)."""


class DesignHangError(RunError):
    """The design's tasks did not stop when cancelled at teardown.

    ``tasks`` names the tasks still running after the grace period.
    """

    def __init__(self, message: str, tasks: list[str]) -> None:
        self.tasks = tasks
        super().__init__(message)


class AuthError(WslabError):
    """A token refused by the lab's :class:`~wslab.auth.TokenAuthority`.

    ``close_code`` is the WebSocket close code a server should answer with:
    4401 (authenticate again) or 4403 (forbidden: do not retry).
    """

    close_code = 4401


class TokenInvalid(AuthError):
    """The token was not issued by the authority, or was altered."""


class TokenExpired(AuthError):
    """The token is past its expiry: get a new one and present it."""


class TokenRevoked(AuthError):
    """The subject's sessions were revoked: retrying will not help."""

    close_code = 4403
