"""Test rules (as in trio-websocket's): loopback only, port 0, a hard timeout on
every test (pytest-timeout, see pyproject.toml), no sleep used as synchronisation
where an event can be awaited instead."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
