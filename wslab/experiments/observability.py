"""Lesson 11 (notebooks/11_observability.ipynb): read a chaos run from its logs and
metrics alone, and check every answer against the lab's record.

The lab records what really happened (the ground truth): every connection the
client opened and lost (``run.client_events``), every connection the server
handler served (``run.server_opens``), and every message's fate (the ledger).
A design only records what it chose to log (``run.logs``) and count
(``run.metrics``). This module puts the two side by side:

- :func:`chaos`: three clients and three faults in one plan: client 0's
  connection is cut (and new ones refused) for ``outage_s``; client 2's
  acknowledgements are dropped for half a second; then the server restarts.
- :func:`recorded_outages`: per client, each interval from losing a connection
  it was served on to the server serving it again, from the lab's record.
- :func:`diagnose`: the five questions of an incident review, answered from a
  design's structured logs (or from what it printed), each graded against the
  record: ``"right"``, ``"wrong"``, ``"partly"`` (a count, but not which
  client or when) or ``"no answer"``. :func:`plot_diagnosis` draws the grades
  of several designs as a grid.
- :func:`plot_outages`: per client, the recorded outages as bars and the
  design's own ``disconnected`` / ``connected`` / ``connect failed`` log events
  as markers: where the logs and the record agree, the markers frame the bars.

Every log reader here uses the client-side events (``side == "client"``): the
server's view of a connection ends and starts at other moments.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from ..faults import Cut, FaultPlan, FrameFault, ServerRestart
from ..frames import TextContaining
from ..run import Run
from ..scenarios import Scenario
from ..workload import Workload

__all__ = [
    "ACKS_LOST",
    "CUT_AT_S",
    "QUESTIONS",
    "RESTART_AT_S",
    "RESTART_S",
    "TOLERANCE_S",
    "Answer",
    "Diagnosis",
    "chaos",
    "diagnose",
    "log_outages",
    "plot_diagnosis",
    "plot_outages",
    "recorded_outages",
    "same_outages",
]

CUT_AT_S = 0.4  # client 0's connection is reset; new ones too, for outage_s
ACKS_LOST = (0.6, 0.5)  # client 2's acknowledgements dropped: (start_s, duration_s)
RESTART_AT_S = 1.1  # the server restarts (close 1012, memory lost)...
RESTART_S = 0.3  # ...and is down this long
TOLERANCE_S = 0.05  # log time vs record time: a log line comes a little after the fact

QUESTIONS = (
    "which connections dropped, when",
    "how long each client was away",
    "which sequence numbers were resent",
    "which copies the server dropped",
    "how often each client reconnected",
)

_CODE = re.compile(r"\b(\d{4})\b")


def chaos(outage_s: float = 0.3, *, clients: int = 3, seed: int = 11) -> Scenario:
    """Three clients, 150 messages each at 100/s; three faults in one plan:

    - at :data:`CUT_AT_S` client 0's connection is reset, and its new ones are
      reset too for ``outage_s``;
    - from 0.6 s to 1.1 s every acknowledgement to client 2 is dropped (its
      messages arrive; it just never hears so);
    - at :data:`RESTART_AT_S` the server restarts and is down :data:`RESTART_S`.
    """
    start, duration = ACKS_LOST
    return Scenario(
        "chaos",
        f"Client 0 cut off for {outage_s:g} s at {CUT_AT_S} s; client 2's acknowledgements "
        f"dropped from {start} s to {start + duration:g} s; the server restarts at "
        f"{RESTART_AT_S:g} s for {RESTART_S} s.",
        Workload(count=150, rate_per_s=100, direction="up"),
        FaultPlan([
            Cut(start_s=CUT_AT_S, duration_s=outage_s, clients={0}),
            FrameFault(start_s=start, duration_s=duration, direction="down", action="drop",
                       match=TextContaining('"ack"'), clients=frozenset({2} & set(range(clients)))
                       or None),
            ServerRestart(start_s=RESTART_AT_S, duration_s=RESTART_S),
        ]),
        clients=clients, seed=seed, settle_s=0.8)


# The record (ground truth) -----------------------------------------------------------

Outages = dict[int, list[tuple[float, "float | None"]]]


def recorded_outages(run: Run) -> Outages:
    """Per client, ``(start_s, end_s)`` of every outage, from the lab's record.

    An outage starts when the client's side of a connection the server had
    served closes, and ends when the server serves that client again (``None``:
    not before the run ended). Attempts that failed in between (the network
    still down, the server not back) are part of the outage. Clients that never
    lost a connection map to ``[]``.
    """
    events = sorted([(t, c, "served") for t, c in run.server_opens
                     if c is not None and t <= run.end_s]  # not the teardown's
                    + [(t, c, e) for t, c, e in run.client_events if e == "close"])
    out: Outages = {c: [] for c in range(run.clients)}
    up: dict[int, bool] = defaultdict(bool)
    for t, client, event in events:
        if event == "served":
            if out[client] and out[client][-1][1] is None:
                out[client][-1] = (out[client][-1][0], t)
            up[client] = True
        elif up[client]:  # the first close after a served connection: it dropped
            up[client] = False
            out[client].append((t, None))
    return out


# What the logs say -------------------------------------------------------------------

def _client_side(logs: Iterable[Mapping], event: str) -> list[Mapping]:
    return [e for e in logs if e.get("side") == "client" and e.get("event") == event]


def _code(entry: Mapping) -> int | None:
    if isinstance(entry.get("code"), int):
        return entry["code"]
    match = _CODE.search(str(entry.get("reason", "")))
    return int(match.group(1)) if match else None


def log_outages(logs: Iterable[Mapping]) -> Outages:
    """Per client, ``(start_s, end_s)`` from the client-side log: each
    ``disconnected`` to the same client's next ``connected`` (``None``: none came)."""
    out: Outages = defaultdict(list)
    for entry in sorted((e for e in logs if e.get("side") == "client"), key=lambda e: e["t"]):
        client, event = entry.get("client"), entry.get("event")
        if event == "disconnected":
            out[client].append((entry["t"], None))
        elif event == "connected" and out[client] and out[client][-1][1] is None:
            out[client][-1] = (out[client][-1][0], entry["t"])
    return dict(out)


def same_outages(mine: Mapping, truth: Mapping, tolerance_s: float = TOLERANCE_S) -> bool:
    """Whether two ``{client: [(start_s, end_s), ...]}`` agree, client by client,
    interval by interval, to ``tolerance_s`` (clients with no outage may be absent)."""
    for client in set(mine) | set(truth):
        a, b = list(mine.get(client, [])), list(truth.get(client, []))
        if len(a) != len(b):
            return False
        for (s1, e1), (s2, e2) in zip(a, b):
            if abs(s1 - s2) > tolerance_s or (e1 is None) != (e2 is None) or (
                    e1 is not None and abs(e1 - e2) > tolerance_s):
                return False
    return True


@dataclass(frozen=True)
class Answer:
    grade: str  # "right", "wrong", "partly", "no answer"
    text: str


@dataclass
class Diagnosis:
    """The five questions (:data:`QUESTIONS`), each answered and graded."""

    label: str
    answers: dict[str, Answer] = field(default_factory=dict)

    def grades(self) -> list[str]:
        return [self.answers[q].grade for q in QUESTIONS]

    def text(self) -> str:
        width = max(map(len, QUESTIONS))
        return "\n".join([self.label] + [f"  {q:<{width}}  {self.answers[q].grade:<9}  "
                                         f"{self.answers[q].text}" for q in QUESTIONS])

    def __repr__(self) -> str:
        return self.text()


def diagnose(run: Run, *, printed: str | None = None, label: str | None = None) -> Diagnosis:
    """Answer :data:`QUESTIONS` from ``run.logs`` (structured events), or, when the
    design logged nothing and ``printed`` holds what it printed, from that text.
    Each answer is graded against the lab's record of the run."""
    diagnosis = Diagnosis(label or run.design)
    logs = [e for e in run.logs if e["t"] <= run.end_s]  # until the lab stopped the run
    if not logs:
        diagnosis.answers = _from_printed(printed or "", run)
        return diagnosis
    truth = recorded_outages(run)
    answers = diagnosis.answers

    drops = _client_side(logs, "disconnected")
    said = {c: [(e["t"], None) for e in drops if e.get("client") == c]
            for c in {e.get("client") for e in drops}}
    dropped_at = {c: [(start, None) for start, _ in spans] for c, spans in truth.items()}
    answers[QUESTIONS[0]] = Answer(
        ("right" if same_outages(said, dropped_at) else "wrong") if drops else "no answer",
        ", ".join(f"client {e.get('client')} at {e['t']:.2f} s (code {_code(e)})" for e in drops))

    away = log_outages(logs)
    answers[QUESTIONS[1]] = Answer(
        "right" if away and same_outages(away, truth) else "wrong" if away else "no answer",
        ", ".join(f"client {c}: " + " + ".join(
            f"{(end - start):.2f} s" if end is not None else "never back" for start, end in spans)
            for c, spans in sorted(away.items())))

    resends = [e for e in logs if e.get("side") == "client" and "seq" in e
               and "resending" in e]
    records = run.ledger.records
    consistent = all(
        (rec := records.get(f"u{e.get('client')}.{seq}")) is not None
        and rec.accepted_s is not None and rec.accepted_s <= e["t"]
        for e in resends for seq in range(e["seq"], e["seq"] + e["resending"]))
    answers[QUESTIONS[2]] = Answer(
        ("right" if consistent else "wrong") if resends else "no answer",
        ", ".join(f"client {e.get('client')}: {e['seq']}–{e['seq'] + e['resending'] - 1} "
                  f"at {e['t']:.2f} s" for e in resends))

    copies = [e for e in logs if e.get("side") == "server" and e.get("event") == "duplicate dropped"]
    really_copies = run.summary()["duplicated"] == 0 and all(
        (rec := records.get(f"u{e.get('client')}.{e['seq']}")) is not None
        and len(rec.deliveries) == 1 and rec.deliveries[0] <= e["t"] for e in copies)
    per_client: dict[int, list[int]] = defaultdict(list)
    for e in copies:
        per_client[e.get("client")].append(e["seq"])
    answers[QUESTIONS[3]] = Answer(
        ("right" if really_copies else "wrong") if copies else "no answer",
        ", ".join(f"client {c}: {len(s)} ({min(s)}–{max(s)})" for c, s in sorted(per_client.items())))

    connects = _client_side(logs, "connected")
    counts: dict[int, int] = defaultdict(int)
    for e in connects:
        counts[e.get("client")] += 1
    reconnects = {c: n - 1 for c, n in sorted(counts.items())}
    answers[QUESTIONS[4]] = Answer(
        ("right" if sum(reconnects.values()) == run.reconnects else "wrong") if connects
        else "no answer",
        ", ".join(f"client {c}: {n}" for c, n in reconnects.items()))
    return diagnosis


def _from_printed(text: str, run: Run) -> dict[str, Answer]:
    """Free-text lines: counts at best, never which client or when."""
    lines = text.splitlines()

    def count(*words: str) -> int:
        return sum(1 for line in lines if any(w in line.lower() for w in words))

    none = Answer("no answer", "")
    answers = {q: none for q in QUESTIONS}
    if not lines:
        return answers
    if n := count("connection lost", "disconnected"):
        answers[QUESTIONS[0]] = Answer("partly", f"{n} lines say a connection was lost; "
                                                 "no client, no time")
    resent = [int(m.group(1)) for line in lines if (m := re.search(r"resending (\d+)", line.lower()))]
    if resent:
        answers[QUESTIONS[2]] = Answer("partly", f"{sum(resent)} events resent in {len(resent)} "
                                                 "batches; no client, no sequence numbers")
    if n := count("duplicate"):
        answers[QUESTIONS[3]] = Answer("partly", f"{n} duplicates skipped; no client")
    if n := count("connected to server"):
        answers[QUESTIONS[4]] = Answer("partly", f"{n} connections, {run.clients} clients: "
                                                 f"{n - run.clients} reconnections, no client")
    return answers


# Pictures ------------------------------------------------------------------------

_GRADES = ("no answer", "partly", "wrong", "right")
_GRADE_COLORS = ("#d9d9d9", "#fdd49e", "#d62728", "#2ca02c")


def plot_diagnosis(diagnoses: Iterable[Diagnosis]) -> Figure:
    """A grid: one row per design, one column per question, colored by grade."""
    diagnoses = list(diagnoses)
    grid = [[_GRADES.index(g) for g in d.grades()] for d in diagnoses]
    fig, ax = plt.subplots(figsize=(9.0, 0.6 * len(diagnoses) + 1.6))
    ax.imshow(grid, cmap=ListedColormap(_GRADE_COLORS), vmin=0, vmax=len(_GRADES) - 1,
              aspect="auto")
    for row, d in enumerate(diagnoses):
        for col, grade in enumerate(d.grades()):
            ax.text(col, row, grade, ha="center", va="center", fontsize="small",
                    color="white" if grade in ("right", "wrong") else "0.2")
    ax.set_xticks(range(len(QUESTIONS)),
                  [q.replace(", ", ",\n").replace(" the server", "\nthe server")
                   .replace(" each client", "\neach client").replace(" numbers", "\nnumbers")
                   for q in QUESTIONS], fontsize="small")
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(diagnoses)), [d.label for d in diagnoses])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title("Answered from the design's own output, checked against the lab's record",
                 fontsize="medium", pad=52)
    fig.tight_layout()
    return fig


def plot_outages(run: Run, *, ax=None) -> Figure:
    """Per client, the recorded outages (grey bars) and the design's client-side
    log events: ``disconnected`` (red ✕), ``connect failed`` (grey |) and
    ``connected`` (green ●). Fault windows are shaded as in every wslab picture."""
    from ..plots import _shade_faults  # the same shading as the other pictures

    if ax is None:
        fig, ax = plt.subplots(figsize=(9.0, 0.55 * run.clients + 1.6))
    else:
        fig = ax.figure
    span = max([run.end_s] + [e["t"] for e in run.logs if e["t"] <= run.end_s + 0.5])
    _shade_faults(ax, run, span)
    for client, spans in recorded_outages(run).items():
        for start, end in spans:
            ax.barh(client, (end if end is not None else run.end_s) - start, left=start,
                    height=0.5, color="0.75", label="away (the lab's record)")
    marks = (("disconnected", "x", "#d62728", 60), ("connect failed", "|", "0.35", 60),
             ("connected", "o", "#2ca02c", 30))
    for event, marker, color, size in marks:
        entries = _client_side([e for e in run.logs if e["t"] <= run.end_s], event)
        ax.scatter([e["t"] for e in entries], [e.get("client") for e in entries], marker=marker,
                   color=color, s=size, zorder=3, label=f"log: {event}")
    ax.set_yticks(range(run.clients), [f"client {c}" for c in range(run.clients)])
    ax.set_ylim(run.clients - 0.5, -0.5)
    ax.set_xlim(0, span)
    ax.set_xlabel("lab time since start (s)")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize="small", loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{run.design}: outages from the logs (markers) and the record (bars)",
                 fontsize="medium")
    fig.tight_layout()
    return fig
