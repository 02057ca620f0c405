"""The ledger and its checkers: pure, no sockets."""

import math

import pytest

from wslab.ledger import Ledger, percentile
from wslab.workload import Workload, make_message, message_id, split_id
from wslab.errors import ConfigError


def ledger_with(produced: list[str]) -> Ledger:
    ledger = Ledger()
    for i, msg_id in enumerate(produced):
        ledger.produced(msg_id, i * 0.1)
        ledger.accepted(msg_id, i * 0.1)
    return ledger


def test_lost_duplicated_unexpected_out_of_order():
    ledger = ledger_with(["u0.0", "u0.1", "u0.2", "u0.3"])
    ledger.delivered("u0.0", 1.0)
    ledger.delivered("u0.2", 1.1)
    ledger.delivered("u0.1", 1.2)  # after u0.2: out of order
    ledger.delivered("u0.1", 1.3)  # twice: one duplicate
    ledger.delivered("zz.9", 1.4)  # never produced
    ledger.delivered(None, 1.5)    # not a workload message
    s = ledger.summary()
    assert (s["sent"], s["delivered"], s["lost"]) == (4, 3, 1)
    assert ledger.lost_ids() == ["u0.3"]
    assert s["duplicated"] == 1
    assert s["unexpected"] == 2
    assert ledger.out_of_order_ids() == ["u0.1"]


def test_order_is_per_source():
    ledger = ledger_with(["u0.0", "u1.0", "u0.1", "u1.1"])
    for msg_id, t in [("u1.1", 1), ("u0.0", 2), ("u0.1", 3), ("u1.0", 4)]:
        ledger.delivered(msg_id, t)
    assert ledger.out_of_order_ids() == ["u1.0"]


def test_rejected_is_not_lost():
    ledger = ledger_with(["u0.0", "u0.1"])
    ledger.rejected("u0.1", 0.5, "queue full")
    s = ledger.summary()
    assert s["lost"] == 1 and s["rejected"] == 1


def test_queue_series_counts_accepted_not_delivered():
    ledger = ledger_with(["u0.0", "u0.1", "u0.2"])  # accepted at 0, 0.1, 0.2
    ledger.delivered("u0.0", 0.25)
    times, depth = ledger.queue_series()
    assert max(depth) == 3
    assert depth[-1] == 2  # two never delivered stay queued
    assert ledger.summary()["peak_queue"] == 3


def test_latency_percentiles():
    ledger = ledger_with(["u0.0", "u0.1"])
    ledger.delivered("u0.0", 0.010)
    ledger.delivered("u0.1", 0.130)
    lat = ledger.summary()["latency_ms"]
    assert lat["p50"] == pytest.approx(20.0)
    assert lat["max"] == pytest.approx(30.0)
    assert math.isnan(percentile([], 50))


def test_produced_twice_is_a_bug():
    ledger = ledger_with(["u0.0"])
    with pytest.raises(ValueError):
        ledger.produced("u0.0", 1.0)


def test_message_format_round_trip():
    text = make_message("u3.17", 64)
    assert message_id(text) == "u3.17"
    assert message_id(text.encode()) == "u3.17"
    assert abs(len(text) - 64) <= 2
    assert message_id('{"pad": 1, "id": "d1.2"}') == "d1.2"
    assert message_id("hello") is None
    assert message_id(b"\xff\xfe") is None
    assert split_id("u3.17") == ("u3", 17)
    assert split_id("nonsense") is None


@pytest.mark.parametrize("bad", [dict(count=-1), dict(rate_per_s=0), dict(rate_per_s=-5),
                                 dict(size_bytes=3), dict(direction="sideways")])
def test_bad_workload_is_refused_clearly(bad):
    with pytest.raises(ConfigError) as info:
        Workload(**bad)
    assert next(iter(bad)) in str(info.value)


def test_same_instant_deliveries_are_ordered_by_arrival_not_by_id():
    # With a virtual clock many deliveries share one timestamp; "u0.10" sorts
    # before "u0.9" as a string, which must not count as out of order.
    ledger = ledger_with(["u0." + str(i) for i in range(11)])
    ledger.delivered("u0.9", 1.0)
    ledger.delivered("u0.10", 1.0)
    assert ledger.out_of_order_ids() == []
    ledger = ledger_with(["u0." + str(i) for i in range(11)])
    ledger.delivered("u0.10", 1.0)
    ledger.delivered("u0.9", 1.0)
    assert ledger.out_of_order_ids() == ["u0.9"]
    assert ledger.summary()["out_of_order"] == 1


def test_a_message_delivered_the_instant_it_was_handed_over_was_never_queued():
    ledger = Ledger()
    for msg_id in ("u0.0", "u0.1"):
        ledger.produced(msg_id, 1.0)
    ledger.accepted("u0.0", 1.0)
    ledger.delivered("u0.0", 1.0)  # the same instant: a virtual clock does that
    ledger.accepted("u0.1", 1.0)
    ledger.delivered("u0.1", 2.0)
    times, depth = ledger.queue_series()
    assert min(depth) == 0 and max(depth) == 1
    assert depth[-1] == 0 and times[-1] == 2.0


def test_the_ledger_signals_when_nothing_is_outstanding():
    calls = []
    ledger = Ledger(on_accounted_for=lambda: calls.append(ledger.outstanding))
    for msg_id in ("u0.0", "u0.1", "u0.2"):
        ledger.produced(msg_id, 0.0)
    ledger.delivered("u0.0", 0.1)
    ledger.delivered("u0.0", 0.2)  # a duplicate settles nothing
    ledger.rejected("u0.1", 0.3, "full")
    assert (ledger.outstanding, calls) == (1, [])
    ledger.delivered("u0.2", 0.4)
    ledger.rejected("u0.2", 0.5, "late")  # delivered already: nothing changes
    ledger.delivered("nope", 0.6)
    assert (ledger.outstanding, calls) == (0, [0])
