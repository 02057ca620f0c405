"""What the applications send: message ids, payloads and the rate.

Every application message is a small JSON object whose first field is its id::

    {"id": "u3.17", "pad": "xxxxxxxx"}

The id names the stream and the source: ``u`` is client→server ("up") from
client 3, message 17; ``d3.17`` is server→client ("down") to client 3;
``e3.17`` is the server's echo reply to ``u3.17``. A design treats messages as
opaque text: it must hand the same text to the receiving application.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from .errors import ConfigError

Direction = Literal["up", "down", "both"]
DIRECTIONS: tuple[str, ...] = ("up", "down", "both")
_PREFIX = '{"id": "'


@dataclass(frozen=True)
class Workload:
    """The traffic of one run, per client.

    ``count`` messages per client and per stream, produced at ``rate_per_s``
    from the start of the run; each about ``size_bytes`` long. ``direction``
    says who produces: the client application (``"up"``), the server
    application pushing to each client (``"down"``), or both. With
    ``echo=True`` the server application answers every up message with a
    reply, which the client application must receive.
    """

    count: int = 200
    rate_per_s: float = 100.0
    size_bytes: int = 64
    direction: Direction = "up"
    echo: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 0:
            raise ConfigError(f"workload count must be an integer >= 0, got {self.count!r}")
        if not isinstance(self.rate_per_s, (int, float)) or not self.rate_per_s > 0:
            raise ConfigError(
                f"workload rate_per_s must be a number > 0, got {self.rate_per_s!r}"
            )
        if not isinstance(self.size_bytes, int) or not 24 <= self.size_bytes <= 16 * 2**20:
            raise ConfigError(
                f"workload size_bytes must be an integer from 24 to 16 MiB, got {self.size_bytes!r}"
            )
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                f"workload direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}"
            )

    @property
    def produces_up(self) -> bool:
        return self.direction in ("up", "both")

    @property
    def produces_down(self) -> bool:
        return self.direction in ("down", "both")

    @property
    def production_s(self) -> float:
        """Seconds from the first message to the last one of a stream."""
        return (self.count - 1) / self.rate_per_s if self.count > 1 else 0.0


def make_message(msg_id: str, size_bytes: int) -> str:
    """The text of message ``msg_id``, padded to about ``size_bytes``."""
    head = f'{_PREFIX}{msg_id}", "pad": "'
    return head + "x" * max(0, size_bytes - len(head) - 2) + '"}'


def message_id(message: str | bytes) -> str | None:
    """The id of a workload message, or None when it is not one."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        try:
            message = bytes(message).decode()
        except UnicodeDecodeError:
            return None
    if message.startswith(_PREFIX):
        end = message.find('"', len(_PREFIX))
        if end > 0:
            return message[len(_PREFIX):end]
    try:
        value = json.loads(message)
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def split_id(msg_id: str) -> tuple[str, int] | None:
    """``"u3.17"`` → ``("u3", 17)``: the source and its sequence number."""
    source, _, seq = msg_id.rpartition(".")
    if not source or not seq.isdigit():
        return None
    return source, int(seq)


def reply_id(msg_id: str) -> str:
    """The id of the echo reply to up message ``msg_id``."""
    return "e" + msg_id[1:]
