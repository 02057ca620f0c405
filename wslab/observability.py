"""Structured logs and metrics (lesson 11).

- :class:`Metrics`: counters and gauges with labels, readable from Python
  (``value``, ``total``, ``snapshot``) and printable in the Prometheus text
  exposition format (``prometheus()``). Pure: no clock, no I/O.
- :class:`JsonLinesFormatter`: a ``logging.Formatter`` that writes one JSON
  object per record, with the fields passed in ``extra=`` (connection id,
  session, sequence number...).
- :func:`log_fields`: a record's structured fields as a dict.

Each lab run hands the designs one :class:`Metrics` (``app.metrics``) and
keeps what the ``wslab.production`` logger wrote during the run
(``run.logs``).
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def log_fields(record: logging.LogRecord) -> dict:
    """The record as a flat dict: level, logger, event (the message) and the extras."""
    fields = {"level": record.levelname.lower(), "logger": record.name,
              "event": record.getMessage()}
    fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
    return fields


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: ``{"time": ..., "level": ..., "event": ..., **extra}``."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": round(record.created, 6), **log_fields(record)}, default=str)


class Metrics:
    """Counters (only go up) and gauges (set to a value), each with labels."""

    def __init__(self) -> None:
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._kinds: dict[str, str] = {}
        self._help: dict[str, str] = {}

    def _key(self, name: str, kind: str, labels: dict[str, object]) -> tuple:
        known = self._kinds.setdefault(name, kind)
        if known != kind:
            raise ValueError(f"metric {name!r} is a {known}, not a {kind}")
        return tuple(sorted((k, str(v)) for k, v in labels.items()))

    def describe(self, name: str, help_text: str) -> None:
        self._help[name] = help_text

    def inc(self, name: str, value: float = 1, **labels: object) -> None:
        """Add ``value`` (>= 0) to counter ``name``."""
        if value < 0:
            raise ValueError(f"counter {name!r} cannot go down ({value})")
        key = self._key(name, "counter", labels)
        self._values[name][key] = self._values[name].get(key, 0) + value

    def set(self, name: str, value: float, **labels: object) -> None:
        """Set gauge ``name`` to ``value``."""
        self._values[name][self._key(name, "gauge", labels)] = value

    def value(self, name: str, **labels: object) -> float:
        return self._values.get(name, {}).get(tuple(sorted((k, str(v)) for k, v in labels.items())), 0)

    def total(self, name: str) -> float:
        """The sum over every label set of ``name``."""
        return sum(self._values.get(name, {}).values())

    def snapshot(self) -> dict[str, dict[str, float]]:
        """``{name: {"side=client": value, ...}}``."""
        return {name: {",".join(f"{k}={v}" for k, v in key): value for key, value in series.items()}
                for name, series in sorted(self._values.items())}

    def prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines = []
        for name in sorted(self._values):
            if name in self._help:
                lines.append(f"# HELP {name} {self._help[name]}")
            lines.append(f"# TYPE {name} {self._kinds[name]}")
            for key, value in sorted(self._values[name].items()):
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
                number = "NaN" if isinstance(value, float) and math.isnan(value) else f"{value:g}"
                lines.append(f"{name}{{{labels}}} {number}" if labels else f"{name} {number}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
