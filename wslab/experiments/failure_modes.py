"""Lesson 02: the connection's lifecycle, where each standard failure strikes, and
the taxonomy that ties each scenario to what it breaks and the lesson that fixes it."""

from __future__ import annotations

import html
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..course import lesson
from ..grading import CRITERIA
from ..scenarios import SCENARIOS

# state -> (x, y) on the drawing
STATES: dict[str, tuple[float, float]] = {
    "connect": (0.0, 2.0),
    "authenticate": (2.6, 2.0),
    "open:\nreceive · process · send": (5.6, 2.0),
    "disconnected": (5.6, 0.0),
    "back off": (2.6, 0.0),
    "shut down": (8.6, 0.0),
}
# (from, to, what makes the transition)
TRANSITIONS = [
    ("connect", "authenticate", "handshake"),
    ("authenticate", "open:\nreceive · process · send", "token accepted"),
    ("open:\nreceive · process · send", "disconnected", "close, reset,\nping timeout"),
    ("disconnected", "back off", "wait"),
    ("back off", "connect", "retry"),
    ("connect", "back off", "connect\nfailed"),
    ("open:\nreceive · process · send", "shut down", "stop"),
]


@dataclass(frozen=True)
class FailureMode:
    """One standard scenario, placed in the lifecycle."""

    scenario: str
    stage: str  # where in the lifecycle it strikes
    breaks: str  # what goes wrong in a design that did not plan for it


FAILURE_MODES = [
    FailureMode("network_interruption", "open → disconnected",
                "messages in flight and sent while down vanish; a client that never reconnects is gone"),
    FailureMode("server_restart", "open → disconnected",
                "the server's memory (sessions, what it had read) is lost; every client must come back"),
    FailureMode("slow_consumer", "open (send)",
                "messages pile up in buffers the sender cannot see; latency and memory grow"),
    FailureMode("queue_overflow", "open (receive)",
                "the producer outruns the server; without a bound, the backlog grows without limit"),
    FailureMode("idle_black_hole", "open (nothing happens)",
                "the connection is dead but no socket closes; everything sent into it is lost silently"),
    FailureMode("latency_spike", "open (keepalive)",
                "timeouts shorter than the round trip see a dead peer that is alive"),
    FailureMode("lost_acknowledgements", "open (acknowledge)",
                "a lost acknowledgement makes the sender resend: duplicates unless de-duplicated"),
    FailureMode("shutdown_in_flight", "open → shut down",
                "messages read but not processed die with the server; tasks outlive their connection"),
    FailureMode("token_expiry", "authenticate, and open",
                "a token expires mid-session; a revoked client must be refused, not retried forever"),
    FailureMode("reconnect_storm", "back off → connect",
                "every client retries at once; the restarted server is flooded"),
]


def lifecycle_diagram() -> Figure:
    """The connection lifecycle as a state diagram, each transition labelled (black) and
    each standard failure placed where it strikes (red)."""
    fig, ax = plt.subplots(figsize=(10.5, 4.2), layout="constrained")
    boxes = {}
    for name, (x, y) in STATES.items():
        width = 2.4 if "\n" in name else 1.7
        boxes[name] = (x, y, width)
        ax.add_patch(FancyBboxPatch((x - width / 2, y - 0.32), width, 0.64,
                                    boxstyle="round,pad=0.05", facecolor="#e8eef7",
                                    edgecolor="#4c72b0"))
        ax.text(x, y, name, ha="center", va="center", fontsize=9)

    def edge(a: str, b: str) -> tuple[tuple[float, float], tuple[float, float]]:
        (xa, ya, wa), (xb, yb, wb) = boxes[a], boxes[b]
        if ya == yb:  # horizontal
            sign = 1 if xb > xa else -1
            return (xa + sign * wa / 2, ya), (xb - sign * wb / 2, yb)
        if xa == xb:  # vertical
            sign = 1 if yb > ya else -1
            return (xa, ya + sign * 0.37), (xb, yb - sign * 0.37)
        # diagonal: leave by the side facing b, arrive at b's top or bottom
        side = 1 if xb > xa else -1
        level = 1 if yb > ya else -1
        return (xa + side * wa / 2, ya), (xb, yb - level * 0.37)

    for a, b, label in TRANSITIONS:
        start, end = edge(a, b)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14,
                                     color="#333333", connectionstyle="arc3,rad=0.0"))
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        ax.text(mx, my + 0.12, label, ha="center", va="bottom", fontsize=8, color="#333333")
    where = {
        "connect": (0.0, 2.55, "reconnect storm"),
        "authenticate": (2.6, 2.55, "token expired / revoked\n(refused: stop, no retry)"),
        "open:\nreceive · process · send": (5.6, 2.75,
                                            "slow consumer · producer too fast · black hole\n"
                                            "latency spike · lost acknowledgement"),
        "disconnected": (6.55, 1.0, "network drop\nserver restart"),
        "shut down": (8.6, 0.55, "shutdown in flight"),
    }
    for x, y, text in where.values():
        ax.text(x, y, text, ha="center", va="bottom", fontsize=8, color="#d62728",
                fontweight="bold")
    ax.set_xlim(-1.4, 10.0)
    ax.set_ylim(-0.7, 3.4)
    ax.axis("off")
    ax.set_title("the connection lifecycle, and where the standard failures strike (red)",
                 fontsize="medium")
    return fig


class Taxonomy(list):
    """The failure taxonomy: shows as a table in Jupyter."""

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(m.scenario)}</code></td><td>{html.escape(m.stage)}</td>"
            f"<td style='text-align:left'>{html.escape(m.breaks)}</td>"
            f"<td style='text-align:left'>{html.escape(criteria)}</td>"
            f"<td>{html.escape(lessons)}</td></tr>"
            for m, criteria, lessons in self)
        return ("<table><thead><tr><th>scenario</th><th>where</th><th>what breaks</th>"
                "<th>graded as</th><th>lessons</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")


def taxonomy() -> Taxonomy:
    """Every standard scenario: where it strikes, what breaks, the grader's criteria
    for it, and the lessons that teach the fixes (from :data:`wslab.grading.CRITERIA`)."""
    table = Taxonomy()
    for mode in FAILURE_MODES:
        criteria = CRITERIA[mode.scenario]
        numbers = sorted({c.lesson for c in criteria})
        table.append((mode, "; ".join(c.key for c in criteria),
                      ", ".join(f"{n} {lesson(n).title.split(':')[0]}" for n in numbers)))
    assert [m.scenario for m, _, _ in table] == list(SCENARIOS), "a scenario has no place"
    return table
