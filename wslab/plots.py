"""Pictures of a run: what happened to every message, and when.

Each function takes a :class:`~wslab.run.Run` and returns a matplotlib
:class:`~matplotlib.figure.Figure` (it never calls ``plt.show()``; a notebook
displays the figure returned by the last line of a cell):

- :func:`timeline`: every message by the time it was produced, delivered or
  lost, with the fault windows and the clients connected below it;
- :func:`queue_growth`: messages and bytes waiting, over time;
- :func:`latency`: how long delivered messages took, with p50 / p95 / p99;
- :func:`compare`: two runs side by side on the same axes.

Time is seconds since the start of the run; fault windows are shaded the same
way in every picture, one color per kind of fault.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from .faults import Fault
from .ledger import percentile
from .run import Run

__all__ = ["compare", "latency", "queue_growth", "timeline"]

# Colors, shared by every picture ----------------------------------------------

DELIVERED = "#2ca02c"
LOST = "#d62728"
REJECTED = "#ff7f0e"
QUEUE = "#1f4e9c"
BACKLOG = "#8c564b"
CONNECTED = "#4c72b0"
LATENCY = "#5b7fa6"
BUFFERS = (  # sample key, legend label, color
    ("client_buffer", "client sockets", "#9ecae1"),
    ("proxy_buffer", "proxy (network)", "#bdbdbd"),
    ("server_buffer", "server sockets", "#c6a4d6"),
)
PERCENTILES = ((50, "-"), (95, "--"), (99, ":"))
FAULT_COLORS = {
    "cut": "#7f7f7f",
    "refuse": "#bcbd22",
    "black hole": "#393b79",
    "server restart": "#9467bd",
    "slow consumer": "#e7ba52",
    "latency": "#6baed6",
    "bandwidth": "#8c6d31",
    "frame fault": "#ce6dbd",
    "idle timeout": "#637939",
}
FAULT_ALPHA = 0.18
FAULT_GID = "fault-window"  # the gid of every shaded fault window (tests find them by it)
PANEL_SIZE = (9.0, 3.5)
BUCKET_S = 0.1  # the timeline's default bucket
TIMELINE_BAND = 0.22  # height of the "clients connected" band, relative to the bars
QUEUE_BAND = 0.55  # height of the "bytes in buffers" panel, relative to the messages
TIMELINE_HEIGHT = PANEL_SIZE[1] + 0.7  # inches, with the band
QUEUE_HEIGHT = PANEL_SIZE[1] + 1.5
LEGEND_FONT = "small"
QUEUE_BUCKET_S = 0.05  # the queue line shows its peak per bucket of this width

CompareKind = Literal["timeline", "queue", "latency"]


# Shared helpers ---------------------------------------------------------------


@dataclass
class _Drawn:
    """What a drawer tells its caller: the panel's headline and its time span."""

    headline: str
    span_s: float = 0.0


def _new_figure(height: float = PANEL_SIZE[1]) -> tuple[Figure, Axes]:
    fig, ax = plt.subplots(figsize=(PANEL_SIZE[0], height), layout="constrained")
    return fig, ax


def _with_band(ax: Axes | None, band_ratio: float,
               height: float) -> tuple[Figure, Axes, Axes]:
    """The main axes and a band under it sharing its time axis.

    With no ``ax``: a new figure of two rows. With ``ax`` from a grid
    (``plt.subplots``): its cell is split in two, ``ax`` on top. With any
    other ``ax``: the band is an inset under it.
    """
    if ax is None:
        fig, (ax, band) = plt.subplots(
            2, 1, sharex=True, figsize=(PANEL_SIZE[0], height), layout="constrained",
            height_ratios=(1.0, band_ratio))
    elif (spec := ax.get_subplotspec()) is not None:
        fig = _root_figure(ax)
        top, bottom = spec.subgridspec(2, 1, height_ratios=(1.0, band_ratio), hspace=0.08)
        ax.set_subplotspec(top)
        band = ax.get_figure(root=False).add_subplot(bottom, sharex=ax)
    else:
        fig = _root_figure(ax)
        band = ax.inset_axes((0.0, -0.08 - band_ratio, 1.0, band_ratio), sharex=ax)
    _label_band(ax, band)
    return fig, ax, band


def time_label(clock: str = "virtual") -> str:
    """The label of a time axis: lab time, and its clock when it is not virtual."""
    return "lab time since start (s" + ("" if clock == "virtual" else f", {clock} clock") + ")"


def _label_band(ax: Axes, band: Axes, clock: str = "virtual") -> None:
    """Only the band, at the bottom, labels the shared time axis."""
    ax.tick_params(labelbottom=False)
    ax.set_xlabel("")
    band.set_xlabel(time_label(clock))


def _root_figure(ax: Axes) -> Figure:
    fig = ax.get_figure(root=True)
    assert isinstance(fig, Figure)
    return fig


def _title(run: Run) -> str:
    return f"{run.design} × {run.scenario}"


def _span_s(run: Run) -> float:
    """The right edge of the time axis: the end of the run, or its last event."""
    ends = [run.end_s, 0.0]
    if run.samples:
        ends.append(run.samples[-1]["t"])
    ends.extend(r.produced_s for r in run.ledger.records.values())
    return max(max(ends), 0.1)


def _fault_color(fault: Fault) -> str:
    return FAULT_COLORS.get(fault.kind, "#7f7f7f")


def _shade_faults(ax: Axes, run: Run, span_s: float, *, label: bool = True) -> None:
    """Shade each fault window; a window with no end lasts until the run ends.

    A window of zero length (an instant) is a dotted line. Labelled with the
    fault's :meth:`~wslab.faults.Fault.describe` for the legend.
    """
    end_of_run = run.end_s if run.end_s > 0 else span_s
    for fault in run.faults:
        start = fault.start_s
        if start > span_s:  # planned after the run ended: it never happened
            continue
        stop = end_of_run if fault.end_s is None else fault.end_s
        text = fault.describe() if label else None
        if stop > start:
            artist = ax.axvspan(start, stop, color=_fault_color(fault), alpha=FAULT_ALPHA,
                                linewidth=0, zorder=0, label=text)
        else:
            artist = ax.axvline(start, color=_fault_color(fault), linestyle=":",
                                linewidth=1.5, zorder=0, label=text)
        artist.set_gid(FAULT_GID)


def _is_fault(handle: Any) -> bool:
    return getattr(handle, "get_gid", lambda: None)() == FAULT_GID


def _legend(ax: Axes, *more: Axes) -> None:
    """One legend outside the right edge of ``ax`` (labels of ``more`` too), each label once.

    What happened comes first, then the fault windows.
    """
    handles: dict[str, Any] = {}
    for source in (ax, *more):
        for handle, text in zip(*source.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    if handles:
        ordered = sorted(handles.items(), key=lambda item: _is_fault(item[1]))
        ax.legend([h for _, h in ordered], [t for t, _ in ordered], loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), fontsize=LEGEND_FONT, frameon=False,
                  borderaxespad=0.0)


def _say(ax: Axes, text: str) -> None:
    """Write ``text`` in the middle of an axes that has nothing to show."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center",
            color="0.4", fontsize="medium")


def _fmt_ms(value_ms: float) -> str:
    return f"{value_ms:.3g} ms" if value_ms < 1000 else f"{value_ms / 1000:.3g} s"


def _fmt_bytes(n: float) -> str:
    return EngFormatter(unit="B", places=0)(n) if n else "0 B"


def _samples(run: Run, key: str) -> tuple[list[float], list[float]]:
    return [s["t"] for s in run.samples], [s.get(key, 0) for s in run.samples]


def _extend(times: Sequence[float], values: Sequence[float],
            end_s: float) -> tuple[list[float], list[float]]:
    """A step series held at its last value until ``end_s``."""
    times, values = list(times), list(values)
    if times and values and times[-1] < end_s:
        times.append(end_s)
        values.append(values[-1])
    return times, values


# Timeline ---------------------------------------------------------------------


def _buckets(run: Run, bucket_s: float, span_s: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bucket edges and, per fate, the messages produced in each bucket."""
    n = max(1, math.ceil(round(span_s / bucket_s, 6)))
    counts = {fate: np.zeros(n, dtype=int) for fate in ("delivered", "lost", "rejected")}
    for record in run.ledger.records.values():
        i = min(n - 1, max(0, math.floor(round(record.produced_s / bucket_s, 6))))
        if record.deliveries:
            counts["delivered"][i] += 1
        elif record.rejected_s is not None:
            counts["rejected"][i] += 1
        else:
            counts["lost"][i] += 1
    return np.arange(n + 1) * bucket_s, counts


def _lost_headline(run: Run) -> str:
    s = run.ledger.summary()
    if not s["sent"]:
        return "no message produced"
    text = f"{s['lost']} of {s['sent']} messages lost"
    if s["rejected"]:
        text += f", {s['rejected']} refused"
    if s["duplicated"]:
        text += f", {s['duplicated']} duplicated"
    return text


def _draw_timeline(run: Run, ax: Axes, band: Axes, bucket_s: float) -> _Drawn:
    band.set_xlabel(time_label(run.clock))
    span = _span_s(run)
    edges, counts = _buckets(run, bucket_s, span)
    edge = {"edgecolor": "white", "linewidth": 0.4} if len(edges) <= 120 else {"linewidth": 0}
    bottom = np.zeros(len(edges) - 1, dtype=int)
    for fate, color, text in (("delivered", DELIVERED, "delivered"),
                              ("lost", LOST, "lost (never delivered)"),
                              ("rejected", REJECTED, "refused explicitly")):
        if fate == "rejected" and not counts[fate].any():
            continue
        ax.bar(edges[:-1], counts[fate], width=bucket_s, bottom=bottom, align="edge",
               color=color, label=text, gid=f"timeline-{fate}", **edge)
        bottom = bottom + counts[fate]
    _shade_faults(ax, run, span)
    ax.set_xlim(0, span)
    ax.set_ylabel(f"messages produced\nper {bucket_s * 1000:g} ms")
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    if not run.ledger.records:
        _say(ax, "no message produced")

    times, connected = _extend(*_samples(run, "connected"), span)
    if times:
        band.fill_between(times, connected, step="post", color=CONNECTED, alpha=0.35, linewidth=0)
        band.plot(times, connected, drawstyle="steps-post", color=CONNECTED, linewidth=1)
    else:
        _say(band, "no samples recorded")
    _shade_faults(band, run, span, label=False)
    top = max([run.clients, *connected]) if times else run.clients
    peak = max(connected, default=0)
    if times and peak < run.clients:
        band.text(0.995, 0.93, f"at most {peak} of {run.clients} connected at once",
                  transform=band.transAxes, ha="right", va="top", fontsize="x-small",
                  color="0.3")
    band.set_ylim(0, max(top, 1) * 1.15)
    band.set_yticks([0, top])
    band.set_ylabel(f"clients\nconnected\n(of {run.clients})", rotation=0, ha="right",
                    va="center", fontsize=LEGEND_FONT)
    return _Drawn(_lost_headline(run), span)


def timeline(run: Run, *, bucket_s: float = BUCKET_S, ax: Axes | None = None) -> Figure:
    """What happened to every message, by the time it was produced.

    Introduced in notebooks/00_start_here.ipynb.

    Each bar counts the messages the applications produced during one bucket
    of ``bucket_s`` seconds: green for those delivered (at least once), red for
    those never delivered (lost), orange for those the design refused
    explicitly. Shaded windows are the faults of the run (a fault with no end
    lasts until the run ends). The band underneath shows how many clients
    were connected through the proxy at each moment. The bars add up to
    ``run.summary()["sent"]`` and the red ones to ``run.summary()["lost"]``.

    ``ax``: draw into this axes (the band goes underneath it) instead of a
    new figure. Returns the figure.
    """
    if not bucket_s > 0:
        raise ValueError(f"bucket_s must be seconds > 0, got {bucket_s!r}")
    fig, ax, band = _with_band(ax, TIMELINE_BAND, TIMELINE_HEIGHT)
    drawn = _draw_timeline(run, ax, band, bucket_s)
    ax.set_title(f"{_title(run)}: {drawn.headline}")
    _legend(ax)
    return fig


# Queue growth -----------------------------------------------------------------


def _queue_headline(run: Run) -> str:
    s = run.summary()
    return (f"peak {s['peak_queue']} messages waiting, "
            f"{_fmt_bytes(s['peak_buffered_bytes'])} buffered")


def _draw_queue(run: Run, ax: Axes, band: Axes) -> _Drawn:
    band.set_xlabel(time_label(run.clock))
    span = _span_s(run)
    times, depth = _peak_per_bucket(*run.ledger.queue_series(), span)
    ax.plot(times, depth, drawstyle="steps-post", color=QUEUE, linewidth=1.8,
            label=f"accepted by the design,\nnot yet delivered\n(peak per {QUEUE_BUCKET_S * 1000:.0f} ms)",
            gid="queue-depth")
    if run.samples:
        times, backlog = _extend(*_samples(run, "producer_backlog"), span)
        ax.plot(times, backlog, drawstyle="steps-post", color=BACKLOG, linewidth=1.5,
                linestyle="--", label="produced, not yet taken\nby the design",
                gid="producer-backlog")
    _shade_faults(ax, run, span)
    ax.set_xlim(0, span)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("messages waiting")
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))

    if run.samples:
        times = _extend(*_samples(run, "t"), span)[0]
        levels = np.cumsum([_extend(*_samples(run, key), span)[1] for key, _, _ in BUFFERS],
                           axis=0, dtype=float)
        below = np.zeros(len(times))
        for (_, text, color), above in zip(BUFFERS, levels):
            band.fill_between(times, below, above, step="post", color=color, linewidth=0,
                              label=text)
            below = above
        band.set_ylim(0, max(below.max(), 10) * 1.1)
    else:
        _say(band, "no samples recorded")
    _shade_faults(band, run, span, label=False)
    band.set_ylabel("bytes in\nbuffers")
    band.yaxis.set_major_formatter(EngFormatter(unit="B", places=0))
    band.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
    return _Drawn(_queue_headline(run), span)


def _peak_per_bucket(times: Sequence[float], depth: Sequence[float],
                     span_s: float) -> tuple[np.ndarray, np.ndarray]:
    """A step series reduced to its maximum in each ``QUEUE_BUCKET_S`` bucket.

    A queue that fills and drains within a millisecond would otherwise draw
    as a solid block; the peak per bucket keeps what matters, the height.
    """
    t = np.asarray(times, dtype=float)
    d = np.asarray(depth, dtype=float)
    edges = np.arange(0.0, max(span_s, QUEUE_BUCKET_S) + QUEUE_BUCKET_S, QUEUE_BUCKET_S)
    at_edges = d[np.clip(np.searchsorted(t, edges[:-1], side="right") - 1, 0, len(d) - 1)]
    peaks = at_edges.copy()
    inside = np.clip((t // QUEUE_BUCKET_S).astype(int), 0, len(peaks) - 1)
    np.maximum.at(peaks, inside, d)
    return edges, np.append(peaks, peaks[-1])


def queue_growth(run: Run, *, ax: Axes | None = None) -> Figure:
    """What is waiting in the system, over time.

    Introduced in notebooks/01_happy_path.ipynb.

    Top: the messages the design accepted and has not delivered yet (in its
    queues, its buffers, the network; from the ledger, a step at every
    acceptance and first delivery), and the messages the applications
    produced that the design has not taken yet (sampled). A line that keeps
    climbing is a queue without a bound; one that stays up at the end holds
    messages that will never arrive. Bottom: the bytes waiting in the
    clients' sockets, the proxy (the network) and the server's sockets,
    stacked (sampled every 50 ms). Shaded windows are the faults of the run.

    ``ax``: draw into this axes (the bytes go underneath it). Returns the figure.
    """
    fig, ax, band = _with_band(ax, QUEUE_BAND, QUEUE_HEIGHT)
    drawn = _draw_queue(run, ax, band)
    ax.set_title(f"{_title(run)}: {drawn.headline}")
    _legend(ax)
    _legend(band)
    return fig


# Latency ----------------------------------------------------------------------


def _latencies_ms(run: Run) -> list[float]:
    return [t * 1000 for t in run.ledger.latencies_s()]


def _latency_bins(*samples_ms: Sequence[float]) -> tuple[np.ndarray, bool]:
    """Bin edges for all these latencies, and whether to use a log scale.

    Latencies spanning more than two orders of magnitude (a sub-millisecond
    happy path and a reconnection of seconds) get logarithmic bins.
    """
    values = [v for sample in samples_ms for v in sample]
    low, high = max(min(values), 1e-3), max(max(values), 1e-3)
    if high / low > 100:
        return np.geomspace(low, high * 1.0001, 41), True
    high = max(high, low + 1e-3)
    return np.linspace(min(0.0, min(values)), high * 1.02, 41), False


def _draw_latency(run: Run, ax: Axes, bins: np.ndarray | None = None, log: bool = False,
                  *, values_in_legend: bool = True) -> _Drawn:
    """The histogram; with ``values_in_legend=False`` the percentiles go in the headline."""
    lat = _latencies_ms(run)
    ax.set_ylabel("messages")
    if not lat:
        ax.set_xlabel("first-delivery latency (ms)")
        _say(ax, "no message delivered")
        return _Drawn("no message delivered")
    if bins is None:
        bins, log = _latency_bins(lat)
    ax.set_xlabel("first-delivery latency (ms)" + (", log scale" if log else ""))
    if log:
        ax.set_xscale("log")
    shown = [max(v, bins[0]) for v in lat] if log else lat  # a log axis has no 0
    ax.hist(shown, bins=bins, color=LATENCY, alpha=0.85, label="messages", gid="latency-hist")
    marks = []
    for q, style in PERCENTILES:
        value = percentile(lat, q)
        marks.append(f"p{q} {_fmt_ms(value)}")
        ax.axvline(value, color="black", linestyle=style, linewidth=1.3,
                   label=f"p{q} = {_fmt_ms(value)}" if values_in_legend else f"p{q}",
                   gid=f"p{q}")
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    if values_in_legend:
        return _Drawn(f"{len(lat)} delivered, p99 {_fmt_ms(percentile(lat, 99))}")
    return _Drawn(f"{len(lat)} delivered, " + ", ".join(marks))


def latency(run: Run, *, ax: Axes | None = None) -> Figure:
    """How long delivered messages took to arrive, the first time.

    Introduced in notebooks/01_happy_path.ipynb.

    A histogram of first-delivery latency (from production by the sending
    application to the first delivery to the receiving one), in
    milliseconds, with the median (p50), p95 and p99 as vertical lines: 99 %
    of the delivered messages arrived left of the p99 line. Lost messages
    have no latency and are not in the picture (see :func:`timeline`). When
    latencies span more than two orders of magnitude the time axis is
    logarithmic. A run with no delivery shows "no message delivered".

    ``ax``: draw into this axes instead of a new figure. Returns the figure.
    """
    fig, ax = _new_figure() if ax is None else (_root_figure(ax), ax)
    drawn = _draw_latency(run, ax)
    if not run.ledger.latencies_s():
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(f"{_title(run)}: {drawn.headline}")
    _legend(ax)
    return fig


# Compare ----------------------------------------------------------------------


def compare(before: Run, after: Run, *, kind: CompareKind = "timeline",
            labels: tuple[str, str] | None = None) -> Figure:
    """Two runs side by side, on the same axes, to see what a change did.

    Introduced in notebooks/01_happy_path.ipynb.

    ``kind`` picks the picture: ``"timeline"`` (see :func:`timeline`),
    ``"queue"`` (see :func:`queue_growth`) or ``"latency"`` (see
    :func:`latency`). Both panels share their x and y axes, so the same
    height means the same number; each panel is titled with its design and
    its headline number (messages lost, peak queue, latency percentiles),
    after ``labels`` when given (default: the design names). Returns the figure.
    """
    if kind not in ("timeline", "queue", "latency"):
        raise ValueError(f"kind must be 'timeline', 'queue' or 'latency', got {kind!r}")
    runs = (before, after)
    size = (2 * PANEL_SIZE[0] - 2.5, PANEL_SIZE[1])
    if kind == "latency":
        fig, axes = plt.subplots(1, 2, sharex=True, sharey=True, figsize=size,
                                 layout="constrained")
        samples = [s for s in map(_latencies_ms, runs) if s]
        bins, log = _latency_bins(*samples) if samples else (None, False)
        drawn = [_draw_latency(run, ax, bins, log, values_in_legend=False)
                 for run, ax in zip(runs, axes)]
        bands = []
    else:
        ratio = TIMELINE_BAND if kind == "timeline" else QUEUE_BAND
        height = TIMELINE_HEIGHT if kind == "timeline" else QUEUE_HEIGHT
        fig, grid = plt.subplots(2, 2, sharex=True, sharey="row", layout="constrained",
                                 figsize=(size[0], height), height_ratios=(1.0, ratio))
        axes, bands = list(grid[0]), list(grid[1])
        for ax, band in zip(axes, bands):
            _label_band(ax, band)
        if kind == "timeline":
            drawn = [_draw_timeline(run, ax, band, BUCKET_S)
                     for run, ax, band in zip(runs, axes, bands)]
        else:
            drawn = [_draw_queue(run, ax, band) for run, ax, band in zip(runs, axes, bands)]
        axes[0].set_xlim(0, max(d.span_s for d in drawn))
        bands[1].set_ylabel("")
        if kind == "timeline":  # both runs' client counts on the shared scale
            top = max(max(run.clients for run in runs), max(b.dataLim.y1 for b in bands))
            bands[0].set_ylim(0, top * 1.15)
            bands[0].set_yticks(sorted({0, *(run.clients for run in runs)}))
            bands[0].set_ylabel("clients\nconnected", rotation=0, ha="right", va="center",
                                fontsize=LEGEND_FONT)
        else:
            bands[0].set_ylim(0, max(max(b.dataLim.y1 for b in bands), 10) * 1.1)
    # Shared y: both panels' data decide the top (set_ylim on one would freeze it).
    axes[0].set_ylim(0, max(max(ax.dataLim.y1 for ax in axes), 1) * 1.08)
    axes[1].set_ylabel("")
    names = labels if labels is not None else (before.design, after.design)
    for name, ax, d in zip(names, axes, drawn):
        ax.set_title(f"{name}: {d.headline}", fontsize="medium")
    scenarios = " / ".join(dict.fromkeys(run.scenario for run in runs))
    fig.suptitle(f"{scenarios}: {names[0]} vs {names[1]}")
    _legend(axes[1], axes[0])
    if kind == "queue":
        _legend(bands[1], bands[0])
    return fig


# Scorecard grid -------------------------------------------------------------------

PASS_COLOR = "#cfe8d5"
FAIL_COLOR = "#f6c9c9"
NOT_RUN_COLOR = "#e6e6e6"


def _short_verdict(row: Any) -> str:
    """What a grid cell says: 'pass', 'not run', or the first failure's measurement, shortened."""
    if row.error is not None:
        return "did not\nfinish"
    if row.not_run:
        return "not run"
    if row.passed:
        return "pass"
    first = row.failures[0]
    measured = first.measured.replace(" messages", "").replace("connection attempts", "attempts")
    return first.criterion.key + "\n" + textwrap.fill(measured, width=22)


def scorecard(book: Any) -> Figure:
    """The designs × scenarios grid of a :class:`~wslab.grading.Gradebook` (or
    one :class:`~wslab.grading.Scorecard`): green cells passed, red cells failed,
    each red cell naming its first failed criterion and the measured value; grey
    cells were not run (a scenario that cannot apply, such as 200 client processes).

    Introduced in notebooks/02_failure_modes.ipynb.
    """
    cards = getattr(book, "cards", [book])
    scenarios = [row.scenario for row in cards[0].rows]
    fig, ax = plt.subplots(figsize=(1.35 * len(scenarios) + 2.2, 1.0 * len(cards) + 1.4),
                           layout="constrained")
    for i, card in enumerate(cards):
        for j, row in enumerate(card.rows):
            color = NOT_RUN_COLOR if row.not_run else PASS_COLOR if row.passed else FAIL_COLOR
            ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=color, edgecolor="white", linewidth=2))
            ax.text(j + 0.5, i + 0.5, _short_verdict(row), ha="center", va="center",
                    fontsize=7, wrap=True)
    ax.set_xlim(0, len(scenarios))
    ax.set_ylim(len(cards), 0)
    ax.set_xticks([j + 0.5 for j in range(len(scenarios))],
                  [s.replace("_", "\n") for s in scenarios], fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(len(cards))],
                  [f"{c.design}\n{sum(r.passed and not r.not_run for r in c.rows)}"
                   f"/{sum(not r.not_run for r in c.rows)} passed"
                   for c in cards], fontsize=9)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title("scorecard: designs × failure scenarios", fontsize="medium")
    return fig
