"""Lesson 03's exercise: the delay before each reconnection attempt (full jitter).

The learner writes ``delay(attempt, rng)``: seconds to wait before attempt
``attempt`` (0 for the first retry after a connection was lost), drawn from
``rng`` (a seeded :class:`random.Random`), uniform in
``[0, min(cap_s, base_s * 2**attempt)]``.

:func:`check_delay_values` calls it many times and checks the range, the cap,
the jitter, that it draws from ``rng``, that it starts from 0 and reaches the
ceiling, and that it grows; every hint names the attempt and the value.
:func:`check_delay` does that, then runs it for real: the production client
reconnecting with it through the lesson's storm (100 clients, a server that
restarts and answers at most 10 handshakes per 10 ms).
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Callable

from .checking import Verdict, call_safely

Delay = Callable[[int, random.Random], float]

ATTEMPTS = (*range(12), 20, 40, 64)  # past the cap too: 0.05 * 2**64 is far beyond any cap
DRAWS = 400  # per attempt: enough that a uniform draw gets near 0 and near the ceiling


def _ceiling(attempt: int, base_s: float, cap_s: float) -> float:
    return min(cap_s, base_s * 2**attempt)


def check_delay_values(delay: Delay, *, base_s: float = 0.05, cap_s: float = 1.0,
                       draws: int = DRAWS) -> Verdict:
    """Call ``delay(attempt, rng)`` ``draws`` times for each attempt of
    :data:`ATTEMPTS` and check what full jitter promises. No lab run."""
    means: dict[int, float] = {}
    for attempt in ATTEMPTS:
        ceiling = _ceiling(attempt, base_s, cap_s)
        rng = random.Random(1000 + attempt)
        values: list[float] = []
        for _ in range(draws):
            value, error = call_safely(delay, attempt, rng)
            if error:
                return Verdict(False, f"at attempt {attempt}: {error}")
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not math.isfinite(value):
                return Verdict(False, f"at attempt {attempt} your function returned {value!r}; "
                                      "return a number of seconds (a float)")
            value = float(value)
            if not -1e-12 <= value <= ceiling * (1 + 1e-9):
                return Verdict(False, _out_of_range(attempt, value, ceiling, base_s, cap_s))
            values.append(value)
        if len(set(values)) < draws // 2:
            return Verdict(False, (
                f"attempt {attempt} gave {values[0]:.3g} s every time ({len(set(values))} "
                f"different value(s) in {draws} calls): no jitter. Clients that lost the server "
                "together would all retry at the same moments; draw the delay from rng"))
        low, high = min(values), max(values)
        if low > 0.1 * ceiling:
            return Verdict(False, (
                f"at attempt {attempt} your smallest delay in {draws} calls was {low:.3g} s, "
                f"for a ceiling of {ceiling:.3g} s: full jitter draws from 0 (never waiting less "
                "than half the ceiling is 'equal jitter')"))
        if high < 0.9 * ceiling:
            return Verdict(False, (
                f"at attempt {attempt} your largest delay in {draws} calls was {high:.3g} s, "
                f"but the ceiling is {ceiling:.3g} s = min(cap {cap_s:g} s, base {base_s:g} s "
                f"× 2**{attempt}): draw up to the ceiling (is it doubling each attempt?)"))
        means[attempt] = sum(values) / draws
    for attempt in ATTEMPTS[1:]:
        previous = ATTEMPTS[ATTEMPTS.index(attempt) - 1]
        if means[attempt] < 0.7 * means[previous]:
            return Verdict(False, (
                f"your delays shrink: attempt {previous} waited {means[previous]:.3g} s on "
                f"average, attempt {attempt} {means[attempt]:.3g} s; each attempt may wait longer "
                "than the one before, up to the cap"))
    first = [delay(a, random.Random(7)) for a in range(6)]
    again = [delay(a, random.Random(7)) for a in range(6)]
    if first != again:
        return Verdict(False, (
            f"two generators seeded alike gave different delays for attempt 0 ({first[0]:.3g} s "
            f"and {again[0]:.3g} s): draw from the rng you are given (rng.uniform, rng.random), "
            "not from the random module, so that a run can be replayed"))
    return Verdict(True, (
        f"{draws} delays for each of {len(ATTEMPTS)} attempts: always within [0, min({cap_s:g}, "
        f"{base_s:g} × 2**attempt)], jittered from 0 to the ceiling, growing, capped, "
        "drawn from rng"))


def _out_of_range(attempt: int, value: float, ceiling: float, base_s: float, cap_s: float) -> str:
    said = (f"at attempt {attempt} your delay was {value:.4g} s, outside [0, {ceiling:.4g}] "
            f"(the ceiling is min(cap {cap_s:g} s, base {base_s:g} s × 2**{attempt}))")
    if value < 0:
        return said + ": a delay cannot be negative"
    if value <= base_s * 2**attempt:
        return said + ": did you forget the cap?"
    if value <= min(cap_s, base_s * 2 ** (attempt + 1)):
        return said + f": off by one? attempt 0's ceiling is the base, {base_s:g} s"
    return said


async def check_delay(delay: Delay, *, base_s: float = 0.05, cap_s: float = 1.0,
                      clients: int = 100, seed: int = 9, per_window: int = 10) -> Verdict:
    """:func:`check_delay_values`, then a real storm: the production client
    reconnecting with ``delay`` after a server restart, ``clients`` clients, the
    server answering at most ``per_window`` handshakes per 10 ms. Passes when
    every client is back, nothing is lost, and the restarted server answered at
    most 2.5 handshakes per client (measured with the lesson's storm, with and
    without two CPU hogs: full jitter 1.0 to 1.04; no jitter 1.2 to 2, often
    with clients still out; no backoff 1.6 to 3). The storm's clock is
    CPU-charged, and the garbage collector is paused while it runs
    (``collector_paused``)."""
    from ..experiments import reconnection as experiment
    from ..lab import arun

    values = check_delay_values(delay, base_s=base_s, cap_s=cap_s)
    if not values:
        return values
    design = experiment.with_budget(experiment.design_with_delay(delay, "your delay"),
                                    experiment.HandshakeBudget(per_window))
    with experiment.collector_paused():
        run = await arun(design, experiment.storm(clients, seed))
    n = experiment.storm_numbers(run)
    if run.errors:
        first = run.errors[0]
        return Verdict(False, f"in the storm, {first.where} failed at {first.t_s:.2f} s: {first.error}")
    if n["missing"]:
        return Verdict(False, (
            f"in the storm, {n['missing']} of {clients} clients were not back when the run ended "
            f"({run.end_s:.2f} s after its start): are your delays too long?"))
    if n["lost"]:
        return Verdict(False, f"in the storm, {n['lost']} messages were lost")
    if n["answered"] > 2.5 * clients:
        return Verdict(False, (
            f"in the storm, the restarted server had to answer {n['answered']} handshakes for "
            f"{clients} clients ({n['answered'] / clients:.1f} each): too many came back in the "
            "same moments and were refused; the delays do not spread them"))
    return Verdict(True, (
        f"{values.message}. In a storm of {clients} clients: {n['answered']} handshakes for the "
        f"restarted server to answer ({n['answered'] / clients:.2f} per client), every client "
        f"back {n['back_s']:.2f} s after it returned, nothing lost"))
