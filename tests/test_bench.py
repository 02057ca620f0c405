"""Smoke test of the bench: it runs, reports every number, and the latency it
measures through the proxy was really injected. Speed ratios are machine
dependent and never asserted here."""

from __future__ import annotations

import math

import pytest

from wslab.bench import GOALS, bench, format_bench
from wslab.errors import ConfigError


@pytest.mark.timeout(60)
def test_bench_smoke() -> None:
    result = bench(messages=300, latency_samples=20)

    for key in ("messages", "size_bytes", "latency_s", "latency_samples", "rounds",
                "python", "websockets", "direct_msgs_per_s", "proxy_msgs_per_s", "ratio",
                "rtt_direct_ms", "rtt_proxy_ms", "latency_error_ms", "goals", "goals_met"):
        assert key in result, key
    assert result["messages"] == 300 and result["latency_samples"] == 20
    assert result["latency_s"] == 0.05

    assert result["direct_msgs_per_s"] > 0
    assert result["proxy_msgs_per_s"] > 0
    assert result["ratio"] > 0 and math.isfinite(result["ratio"])

    errors = result["latency_error_ms"]
    assert set(errors) == {"p50", "p99"}
    assert all(math.isfinite(v) for v in errors.values())

    # 50 ms were injected one way: every proxied round trip took at least ~50 ms,
    # while the direct ones did not.
    assert result["rtt_proxy_ms"]["min"] >= 45
    assert result["rtt_proxy_ms"]["p50"] >= 45
    assert result["rtt_direct_ms"]["p50"] < 45

    assert result["goals"] == GOALS
    assert set(result["goals_met"]) == set(GOALS)
    assert all(isinstance(v, bool) for v in result["goals_met"].values())

    table = format_bench(result)
    assert "ratio" in table and "goal" in table and "p50" in table


@pytest.mark.parametrize("kwargs", [
    {"messages": 0}, {"size_bytes": 0}, {"latency_samples": 0},
    {"latency_s": -0.01}, {"latency_s": math.nan}, {"messages": 2.5},
])
def test_bench_rejects_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        bench(**kwargs)
