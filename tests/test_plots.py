"""The plots: drawn from real runs, checked against the run's own numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import wslab  # noqa: E402
from wslab import plots  # noqa: E402
from wslab.ledger import Ledger  # noqa: E402
from wslab.run import Run  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def interrupted() -> Run:
    """The standard scenario: a 0.4 s cut at 1 s; the naive client never comes back."""
    return wslab.run("naive", "network_interruption")


@pytest.fixture(scope="module")
def short() -> Run:
    return wslab.run("naive", "network_interruption",
                     workload=wslab.Workload(count=50, rate_per_s=100),
                     faults=[wslab.Cut(start_s=0.2, duration_s=0.1)], settle_s=0.3)


@pytest.fixture(scope="module")
def nothing_delivered() -> Run:
    """Cut from the start and never restored: no message gets through."""
    return wslab.run("naive", "network_interruption",
                     workload=wslab.Workload(count=20, rate_per_s=100),
                     faults=[wslab.Cut(start_s=0.0, duration_s=None)], settle_s=0.2)


def synthetic(clients: int = 1, samples: bool = True, faults: tuple = ()) -> Run:
    """A run built by hand: 3 messages per client (delivered, lost, refused)."""
    ledger = Ledger()
    for c in range(clients):
        for seq, fate in enumerate(("delivered", "lost", "refused")):
            msg_id = f"u{c}.{seq}"
            ledger.produced(msg_id, seq * 0.1)
            ledger.accepted(msg_id, seq * 0.1 + 0.001)
            if fate == "delivered":
                ledger.delivered(msg_id, seq * 0.1 + 0.002)
            elif fate == "refused":
                ledger.rejected(msg_id, seq * 0.1 + 0.002, "full")
    rows = [{"t": k * 0.05, "connected": clients, "client_buffer": 10, "server_buffer": 0,
             "proxy_buffer": 5, "producer_backlog": 0} for k in range(8)] if samples else []
    return Run(design="handmade", scenario="test", seed=0, clients=clients,
               workload=wslab.Workload(count=3), faults=wslab.FaultPlan(faults),
               ledger=ledger, end_s=0.4, samples=rows)


def bars(fig: Figure) -> dict[str, list[float]]:
    """Bar heights of the timeline's main axes, by legend label."""
    return {c.get_label(): [p.get_height() for p in c.patches]
            for c in fig.axes[0].containers if isinstance(c, BarContainer)}


def fault_windows(ax) -> list:
    return [a for a in ax.get_children() if a.get_gid() == plots.FAULT_GID]


@pytest.mark.timeout(60)
def test_timeline_bars_add_up_to_the_summary(interrupted):
    s = interrupted.summary()
    assert s["lost"] > 0 and s["delivered"] > 0  # the scenario does what it says
    fig = plots.timeline(interrupted)
    assert isinstance(fig, Figure)
    heights = bars(fig)
    assert sum(map(sum, heights.values())) == s["sent"]
    assert sum(heights["lost (never delivered)"]) == s["lost"]
    assert sum(heights["delivered"]) == s["delivered"]
    ax = fig.axes[0]
    assert f"{s['lost']} of {s['sent']} messages lost" in ax.get_title()
    assert "naive × network_interruption" in ax.get_title()
    # The 1.0–1.4 s cut is shaded, under its own description in the legend.
    (window,) = fault_windows(ax)
    assert window.get_label() == "cut 1 s–1.4 s"
    assert window.get_x() == pytest.approx(1.0) and window.get_width() == pytest.approx(0.4)
    assert "cut 1 s–1.4 s" in [t.get_text() for t in ax.get_legend().get_texts()]
    # The band underneath: clients connected, one before the cut and none after.
    band = ax.child_axes[0] if ax.child_axes else fig.axes[1]
    assert "clients" in band.get_ylabel() and band.get_xlabel() == "lab time since start (s)"
    (line,) = band.get_lines()
    connected = dict(zip(*line.get_data()))
    assert max(connected.values()) == 1 and list(connected.values())[-1] == 0


@pytest.mark.timeout(60)
def test_timeline_short_run_buckets(short):
    s = short.summary()
    fig = plots.timeline(short, bucket_s=0.05)
    heights = bars(fig)
    assert sum(map(sum, heights.values())) == s["sent"] == 50
    assert sum(heights["lost (never delivered)"]) == s["lost"]
    assert all(len(h) == len(heights["delivered"]) for h in heights.values())
    # 20 ms per message, 50 ms buckets: no bucket holds more than 5.
    assert max(a + b for a, b in zip(*heights.values())) <= 5
    (window,) = fault_windows(fig.axes[0])
    assert window.get_x() == pytest.approx(0.2) and window.get_width() == pytest.approx(0.1)


@pytest.mark.timeout(60)
def test_timeline_into_given_axes(short):
    fig, (ax, other) = plt.subplots(1, 2, layout="constrained")
    assert plots.timeline(short, ax=ax) is fig
    assert sum(map(sum, bars(fig).values())) == 50
    # The band goes under the given axes, in its cell, on the same time axis.
    (band,) = [a for a in fig.axes if a not in (ax, other)]
    assert band.get_shared_x_axes().joined(band, ax)
    assert band.get_position().y1 < ax.get_position().y0
    assert not other.has_data()
    # An axes outside any grid gets the band as an inset.
    loose = plt.figure().add_axes((0.1, 0.4, 0.8, 0.5))
    plots.timeline(short, ax=loose)
    assert len(loose.child_axes) == 1


@pytest.mark.timeout(60)
def test_queue_growth(interrupted):
    fig = plots.queue_growth(interrupted)
    ax, band = fig.axes[0], fig.axes[1]
    depth = next(line for line in ax.get_lines() if line.get_gid() == "queue-depth")
    assert depth.get_drawstyle() == "steps-post"
    assert max(depth.get_ydata()) == interrupted.summary()["peak_queue"]
    # The naive design never reconnects: the producer's backlog ends where it peaks.
    backlog = next(line for line in ax.get_lines() if line.get_gid() == "producer-backlog")
    assert backlog.get_ydata()[-1] == interrupted.samples[-1]["producer_backlog"] > 100
    assert fault_windows(ax) and fault_windows(band)
    assert "bytes" in band.get_ylabel()
    assert {t.get_text() for t in band.get_legend().get_texts()} == {
        "client sockets", "proxy (network)", "server sockets"}


@pytest.mark.timeout(60)
def test_latency_percentiles(interrupted):
    fig = plots.latency(interrupted)
    ax = fig.axes[0]
    assert "(ms)" in ax.get_xlabel()
    lat = interrupted.summary()["latency_ms"]
    for q in ("p50", "p95", "p99"):
        (line,) = [line for line in ax.get_lines() if line.get_gid() == q]
        assert line.get_xdata()[0] == pytest.approx(lat[q], abs=0.01)
        assert any(t.get_text().startswith(f"{q} = ") for t in ax.get_legend().get_texts())
    counts = sum(p.get_height() for p in ax.patches if p.get_gid() == "latency-hist")
    assert counts == interrupted.summary()["delivered"]


@pytest.mark.timeout(60)
def test_latency_with_no_delivery(nothing_delivered):
    assert nothing_delivered.summary()["delivered"] == 0
    fig = plots.latency(nothing_delivered)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "no message delivered" in texts
    # The other pictures cope too: every message lost, the only client never connected.
    heights = bars(plots.timeline(nothing_delivered))
    assert sum(heights["lost (never delivered)"]) == 20
    plots.queue_growth(nothing_delivered)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["timeline", "queue", "latency"])
def test_compare_shares_axes(interrupted, short, kind):
    fig = plots.compare(interrupted, short, kind=kind)
    left, right = fig.axes[:2]
    assert left.get_shared_y_axes().joined(left, right)
    assert left.get_shared_x_axes().joined(left, right)
    assert left.get_title().startswith("naive: ") and right.get_title().startswith("naive: ")
    if kind == "timeline":
        for run, ax in ((interrupted, left), (short, right)):
            s = run.summary()
            assert ax.get_title() == f"naive: {s['lost']} of {s['sent']} messages lost"
    if kind == "latency":
        assert "p99" in left.get_title()


@pytest.mark.timeout(60)
def test_compare_with_nothing_delivered(interrupted, nothing_delivered):
    fig = plots.compare(interrupted, nothing_delivered, kind="latency")
    assert "no message delivered" in [t.get_text() for t in fig.axes[1].texts]
    with pytest.raises(ValueError, match="kind"):
        plots.compare(interrupted, nothing_delivered, kind="pie")  # type: ignore[arg-type]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("clients", [1, 1000])
def test_edge_cases(clients):
    """Many clients, no samples, no faults, a fault with no end, a fault of no length."""
    cases = [
        synthetic(clients),
        synthetic(clients, samples=False),
        synthetic(clients, faults=(wslab.ServerRestart(start_s=0.1, duration_s=None),
                                   wslab.Latency(start_s=0.2, duration_s=0.0))),
    ]
    for run in cases:
        fig = plots.timeline(run)
        heights = bars(fig)
        assert sum(map(sum, heights.values())) == 3 * clients
        assert sum(heights["lost (never delivered)"]) == clients
        assert sum(heights["refused explicitly"]) == clients
        windows = fault_windows(fig.axes[0])
        assert len(windows) == len(run.faults)
        plots.queue_growth(run)
        plots.latency(run)
        for kind in ("timeline", "queue", "latency"):
            plots.compare(run, cases[0], kind=kind)
    # A fault with no end lasts until the run ends.
    restart = fault_windows(plots.timeline(cases[2]).axes[0])[0]
    assert restart.get_x() + restart.get_width() == pytest.approx(cases[2].end_s)


@pytest.mark.timeout(60)
def test_save_pngs(interrupted, tmp_path):
    for name, fig in [("timeline", plots.timeline(interrupted)),
                      ("queue", plots.queue_growth(interrupted)),
                      ("latency", plots.latency(interrupted)),
                      ("compare", plots.compare(interrupted, interrupted))]:
        path = tmp_path / f"{name}.png"
        fig.savefig(path, dpi=60)
        assert path.stat().st_size > 5000
