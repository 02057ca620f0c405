"""Test rules (as in trio-websocket's): loopback only, port 0, a hard timeout on
every test (pytest-timeout, see pyproject.toml), no sleep used as synchronisation
where an event can be awaited instead."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the figures a test drew: a worker runs hundreds of tests, and pyplot
    keeps every figure until it is closed (matplotlib warns past 20)."""
    yield
    plt.close("all")
