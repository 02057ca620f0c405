"""Lesson 06's exercise: choose the keepalive values for a network.

The learner writes ``choose_keepalive(worst_rtt_s, detect_within_s)``, which
returns ``(ping_interval_s, ping_timeout_s)``, or None when no pair is both
fast enough and safe. :func:`check_keepalive_choice` runs the pair it gives
for the lab's network for real (a black hole at the worst moment, a latency
spike in the lab) and then tries the rule on other networks.

The values are real-world ones (a 10 s detection target, pings seconds apart):
the runs keep virtual lab time (:mod:`wslab.clock`), so they cost milliseconds
and measure the worst case exactly.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from ..experiments import keepalive as experiment
from ..lab import arun
from .checking import Verdict, call_safely

# A pong may be late by the worst round trip, plus whatever queues in front of
# it (data, a busy event loop): ask for a quarter more than the worst round trip.
MARGIN = 1.25
# In virtual lab time the measured worst case is interval + timeout to the
# microsecond (less the first ping's round trip); this only absorbs rounding.
SLACK_S = 0.001
MIN_INTERVAL_S = 0.01  # below this, pings flood the connection
MAX_WATCH_S = 3600.0  # lab seconds the check waits for a black-holed keepalive to give up

LAB_NETWORK = (experiment.SPIKE_WORST_RTT_S, 10.0)  # (worst round trip, detection target), s
# A data centre, a good broadband line, a mobile network at its worst.
OTHER_NETWORKS = [(0.05, 2.0), (0.2, 5.0), (4.0, 30.0)]
IMPOSSIBLE = (8.0, 9.0)  # a target below MARGIN × worst round trip: no safe pair

def _spike_start_s() -> float:
    return min(f.start_s for f in experiment.spike_scenario().faults)


Choice = Callable[[float, float], "tuple[float, float] | None"]


def _shape_error(got: object, rtt_s: float, target_s: float) -> str | None:
    where = f"for worst round trip {rtt_s:g} s and target {target_s:g} s"
    if not (isinstance(got, tuple) and len(got) == 2):
        return f"return a tuple (ping_interval_s, ping_timeout_s) or None; {where} you returned {got!r}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in got):
        return f"both values must be numbers of seconds; {where} you returned {got!r}"
    interval, timeout = got
    if interval < MIN_INTERVAL_S or timeout <= 0:
        return (f"{where} you returned ping_interval_s={interval:g}, ping_timeout_s={timeout:g}: "
                f"both must be positive (an interval of at least {MIN_INTERVAL_S:g} s, or pings "
                "flood the connection)")
    return None


def _rule_errors(interval: float, timeout: float, rtt_s: float, target_s: float) -> list[str]:
    """What the arithmetic says is wrong with a pair, one sentence each."""
    errors = []
    if interval + timeout > target_s + 1e-9:
        errors.append(
            f"too slow to notice: a flow that dies just after a pong goes unnoticed for a whole "
            f"interval and then the whole timeout, {interval:g} + {timeout:g} = "
            f"{interval + timeout:g} s, over the target of {target_s:g} s")
    if timeout < MARGIN * rtt_s - 1e-9:
        errors.append(
            f"a false alarm waiting to happen: a pong can take {rtt_s:g} s, and a timeout of "
            f"{timeout:g} s leaves less than a {MARGIN - 1:.0%} margin over it (at least "
            f"{MARGIN * rtt_s:g} s)")
    return errors


async def _measure(interval: float, timeout: float, target_s: float):
    """The worst-case black hole (if it ends within an hour of lab time: an hour
    of waiting costs a few timers) and the lab's spike."""
    spike = arun(experiment.keepalive_design(interval, timeout, "your keepalive"),
                 experiment.spike_scenario())
    if interval + timeout <= MAX_WATCH_S:
        return await asyncio.gather(experiment.detect_dead_peer(interval, timeout, phase="worst"),
                                    spike)
    return None, await spike


async def check_keepalive_choice(choose_keepalive: Choice) -> Verdict:
    """Lesson 06: ``choose_keepalive(worst_rtt_s, detect_within_s)`` returns
    ``(ping_interval_s, ping_timeout_s)``, or None when no pair is safe.

    For the lab's network (round trips up to 0.7 s in a spike, a 10 s target)
    it measures, for real: a connection black-holed right after a pong (the
    worst moment) and the production design with those values through the
    lab's latency spike (a reconnection there is a false alarm). Then it checks
    the rule on other networks, and that an impossible target gets None.
    """
    rtt_s, target_s = LAB_NETWORK
    got, error = call_safely(choose_keepalive, rtt_s, target_s)
    if error:
        return Verdict(False, error)
    if got is None:
        return Verdict(False, f"for worst round trip {rtt_s:g} s and target {target_s:g} s a safe "
                              f"pair exists (a timeout of {MARGIN * rtt_s:g} s leaves "
                              f"{target_s - MARGIN * rtt_s:g} s for the interval): you returned None")
    if (shape := _shape_error(got, rtt_s, target_s)) is not None:
        return Verdict(False, shape)
    interval, timeout = float(got[0]), float(got[1])

    detection, spike = await _measure(interval, timeout, target_s)
    problems = []
    noticed = None if detection is None else detection.gave_up_s
    if noticed is None or noticed > target_s + SLACK_S or interval + timeout > target_s + 1e-9:
        seen = (f"gave up after {noticed:.2f} s" if noticed is not None
                else "had not given up when the check stopped watching")
        problems.append(
            f"too slow to notice: black-holed right after a pong, your keepalive (ping every "
            f"{interval:g} s, timeout {timeout:g} s) {seen}; the target is {target_s:g} s. "
            f"The worst case is a whole interval, then the whole timeout: "
            f"{interval + timeout:g} s")
    reconnects = spike.summary()["reconnects"]
    if reconnects or timeout < MARGIN * rtt_s - 1e-9:
        if reconnects:
            closes = [t for t, _, event in spike.client_events if event == "close"]
            when = f" at {min(closes):.2f} s (the spike began at {_spike_start_s():g} s)" if closes else ""
            seen = (f"your keepalive declared the live connection dead{when}, and the client "
                    f"reconnected {reconnects} time(s)")
        else:
            seen = "no reconnection in this run, by luck"
        problems.append(
            f"a false alarm: through a latency spike (round trips "
            f"{experiment.SPIKE_BEST_RTT_S:g}–{rtt_s:g} s) "
            f"{seen}. A timeout of {timeout:g} s must exceed the worst round trip with a "
            f"margin: at least {MARGIN * rtt_s:g} s")
    if problems:
        return Verdict(False, "; and ".join(problems))

    for other_rtt, other_target in OTHER_NETWORKS:
        got, error = call_safely(choose_keepalive, other_rtt, other_target)
        if error:
            return Verdict(False, error)
        if got is None:
            return Verdict(False, f"for worst round trip {other_rtt:g} s and target {other_target:g} s "
                                  f"a safe pair exists: you returned None")
        if (shape := _shape_error(got, other_rtt, other_target)) is not None:
            return Verdict(False, shape)
        errors = _rule_errors(float(got[0]), float(got[1]), other_rtt, other_target)
        if errors:
            return Verdict(False, f"the lab's network passed, but for worst round trip {other_rtt:g} s "
                                  f"and target {other_target:g} s your pair {got!r} is "
                                  + "; and ".join(errors))
    got, error = call_safely(choose_keepalive, *IMPOSSIBLE)
    if error:
        return Verdict(False, f"for an impossible target return None rather than raise: {error}")
    if got is not None:
        return Verdict(False, f"for worst round trip {IMPOSSIBLE[0]:g} s and target {IMPOSSIBLE[1]:g} s "
                              f"no pair is both fast enough and safe (the timeout alone needs "
                              f"{MARGIN * IMPOSSIBLE[0]:g} s): return None; you returned {got!r}")
    return Verdict(True, f"black-holed at the worst moment, your keepalive (ping every {interval:g} s, "
                         f"timeout {timeout:g} s) gave up after {noticed:.2f} s (target "
                         f"{target_s:g} s); through the latency spike it raised no false alarm; "
                         f"the rule also holds on {len(OTHER_NETWORKS)} other networks and "
                         "refuses an impossible target")
