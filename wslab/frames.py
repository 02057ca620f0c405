"""WebSocket frames on the wire (RFC 6455 §5.2), parsed without I/O.

The proxy feeds the bytes of one direction to a :class:`FrameParser` and gets
back whole frames, each with its raw bytes (forwarded unchanged) and its
unmasked payload (for predicates such as "only acknowledgements").
"""

from __future__ import annotations

from dataclasses import dataclass

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class Frame:
    """One frame: ``raw`` as on the wire, ``payload`` unmasked."""

    opcode: int
    fin: bool
    payload: bytes
    raw: bytes

    @property
    def is_data(self) -> bool:
        return self.opcode in (OP_CONT, OP_TEXT, OP_BINARY)

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 ('' when it is not text)."""
        try:
            return self.payload.decode()
        except UnicodeDecodeError:
            return ""


def _unmask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


class FrameParser:
    """Incremental parser: ``feed(bytes)`` returns the frames now complete."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        buf = self._buffer
        pos = 0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            masked = bool(b1 & 0x80)
            key_len = 4 if masked else 0
            end = pos + head + key_len + length
            if len(buf) < end:
                break
            raw = bytes(buf[pos:end])
            payload = raw[head + key_len :]
            if masked:
                payload = _unmask(payload, raw[head : head + 4])
            frames.append(Frame(opcode=b0 & 0x0F, fin=bool(b0 & 0x80), payload=payload, raw=raw))
            pos = end
        del buf[:pos]
        return frames


def data_frames(frame: Frame) -> bool:
    """Match every data frame (text, binary, continuation); not control frames."""
    return frame.is_data


class TextContaining:
    """Match data frames whose text contains ``needle`` (a picklable predicate)."""

    def __init__(self, needle: str) -> None:
        self.needle = needle

    def __call__(self, frame: Frame) -> bool:
        return frame.is_data and self.needle in frame.text

    def __repr__(self) -> str:
        return f"TextContaining({self.needle!r})"
