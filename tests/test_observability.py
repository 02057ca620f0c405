"""Metrics and structured logs: the registry alone, and what a chaos run records."""

import json
import logging

import pytest

import wslab
from wslab.observability import JsonLinesFormatter, Metrics

pytestmark = pytest.mark.timeout(60)


def test_metrics_counters_gauges_and_prometheus_text():
    m = Metrics()
    m.describe("jobs_total", "jobs done")
    m.inc("jobs_total", side="client")
    m.inc("jobs_total", 2, side="client")
    m.inc("jobs_total", side="server")
    m.set("depth", 7, side="client")
    m.set("depth", 3, side="client")
    assert m.value("jobs_total", side="client") == 3 and m.total("jobs_total") == 4
    assert m.value("depth", side="client") == 3
    text = m.prometheus()
    assert "# HELP jobs_total jobs done\n# TYPE jobs_total counter\n" in text
    assert 'jobs_total{side="client"} 3\n' in text and 'depth{side="client"} 3\n' in text
    with pytest.raises(ValueError):
        m.inc("jobs_total", -1)
    with pytest.raises(ValueError):
        m.set("jobs_total", 1)  # a counter is not a gauge


def test_json_lines_formatter_keeps_the_extra_fields():
    record = logging.makeLogRecord({"msg": "connected", "levelname": "INFO", "name": "x",
                                    "conn": "ab12", "seq": 4})
    line = json.loads(JsonLinesFormatter().format(record))
    assert (line["event"], line["conn"], line["seq"], line["level"]) == ("connected", "ab12", 4, "info")


def test_a_chaos_run_tells_its_story_in_logs_and_metrics():
    run = wslab.run("production", "network_interruption")
    events = [(entry["side"], entry["event"]) for entry in run.logs if "side" in entry]
    assert ("client", "disconnected") in events and ("server", "session resumed") in events
    disconnect = next(e for e in run.logs if e["event"] == "disconnected")
    assert 0.95 <= disconnect["t"] <= 1.1  # the cut was at 1.0 s
    assert all(json.loads(line) for line in run.log_lines().splitlines())
    m = run.metrics
    assert m.value("wslab_reconnects_total", side="client") == run.reconnects == 1
    assert m.value("wslab_messages_delivered_total", side="server") == run.summary()["delivered"]
    assert "wslab_messages_resent_total" in m.prometheus()
    assert m.value("wslab_connections_open", side="server") == 0  # all closed at the end
    assert "# HELP wslab_connections_open" in m.prometheus()


def test_naive_design_logs_nothing():
    assert wslab.run("naive", "network_interruption").logs == []
