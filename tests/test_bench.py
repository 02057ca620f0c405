"""Smoke test of the bench: it runs, reports every number, and the latency it
measures through the proxy was really injected. Speed ratios are machine
dependent and never asserted here."""

from __future__ import annotations

import math

import pytest

from wslab.bench import GOALS, SCALE_GOALS, bench, format_bench
from wslab.errors import ConfigError
from wslab.production.settings import DEFAULT


@pytest.mark.timeout(30)
def test_bench_smoke() -> None:
    result = bench(messages=300, latency_samples=20, design_messages=300, detection_samples=3,
                   scale_clients=(10,))

    for key in ("messages", "size_bytes", "latency_s", "latency_samples", "rounds",
                "python", "websockets", "direct_msgs_per_s", "proxy_msgs_per_s", "ratio",
                "rtt_direct_ms", "rtt_proxy_ms", "latency_error_ms", "goals", "goals_met",
                "design_messages", "production_msgs_per_s", "raw_design_msgs_per_s",
                "production_ratio", "production_rounds_msgs_per_s",
                "raw_design_rounds_msgs_per_s", "design_rounds_complete",
                "detection_samples", "detection_s", "detection_bound_s", "detection_missed",
                "detection_over_bound_s", "detection_within_bound", "closed_s",
                "closed_bound_s", "detection_close_sent"):
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

    # Both designs echoed everything (no fault in those runs): a functional fact.
    # Their speeds and ratio are only reported.
    assert result["design_rounds_complete"] is True
    assert len(result["production_rounds_msgs_per_s"]) == result["rounds"]
    assert all(r > 0 for r in result["production_rounds_msgs_per_s"])
    assert all(r > 0 for r in result["raw_design_rounds_msgs_per_s"])
    assert result["production_ratio"] > 0 and math.isfinite(result["production_ratio"])

    # Dead-peer detection is a functional check of the keepalive, not a speed:
    # every black-holed connection was closed by the client's keepalive (close
    # 1011 "keepalive ping timeout"), never before ping_timeout (a pong can only
    # be missed that long after its ping) and within ping_interval + ping_timeout
    # plus a generous 0.5 s for a loaded CI machine (late event-loop timers).
    # A keepalive that missed pings or was off would fail by seconds or never close.
    bound = DEFAULT.ping_interval_s + DEFAULT.ping_timeout_s
    assert result["detection_bound_s"] == pytest.approx(bound)
    assert result["closed_bound_s"] == pytest.approx(bound + DEFAULT.close_timeout_s)
    assert result["detection_missed"] == 0
    assert result["detection_close_sent"] == {"1011 keepalive ping timeout": 3}
    detection, closed = result["detection_s"], result["closed_s"]
    assert DEFAULT.ping_timeout_s - 0.1 <= detection["min"] <= detection["p50"] <= detection["max"]
    assert detection["max"] <= bound + 0.5
    assert closed["min"] >= detection["min"]
    assert closed["max"] <= bound + DEFAULT.close_timeout_s + 0.5
    assert isinstance(result["detection_within_bound"], bool)

    assert result["goals"] == GOALS
    assert set(result["goals_met"]) == set(GOALS)
    assert all(isinstance(v, bool) for v in result["goals_met"].values())

    # The scale section's shape, with its cheapest row only (10 clients): figures and
    # goals, never a timing asserted. Every client came back and delivered (a fact).
    scale = result["scale"]
    assert scale["clock"] == "cpu" and scale["goals"] == SCALE_GOALS
    (row,) = scale["rows"]
    assert row["clients"] == 10 and row["sent"] == row["delivered"] == 100
    assert row["recovery_s"] >= 0 and row["wall_s"] > 0 and row["peak_rss_mb"] > 0
    assert set(row["loop_lag_ms"]) == {"p50", "p99", "max"}
    assert set(row["goals_met"]) == set(SCALE_GOALS)
    assert row["goals_met"]["delivered_share_min"] and row["goals_met"]["all_back"]

    table = format_bench(result)
    assert "ratio" in table and "goal" in table and "p50" in table
    assert "production" in table and "keepalive" in table
    assert "Scale: production x reconnect_storm" in table


@pytest.mark.parametrize("kwargs", [
    {"messages": 0}, {"size_bytes": 0}, {"latency_samples": 0},
    {"latency_s": -0.01}, {"latency_s": math.nan}, {"messages": 2.5},
    {"design_messages": 0}, {"detection_samples": 0}, {"detection_samples": 101},
    {"scale_clients": (0,)}, {"scale_clients": (1001,)},
])
def test_bench_rejects_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        bench(**kwargs)
