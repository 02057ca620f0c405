"""The writer's acknowledgement timeout arithmetic: pure, no sockets."""

from wslab.production.channel import TIMEOUT_TOLERANCE_S, _remaining


def test_a_rounding_residue_counts_as_expired():
    # Sent at 1.3 s, ack_timeout 1.0 s; a virtual clock jumps to the timer's
    # due time, 1.3 + 1.0 == 2.3, yet 2.3 - 1.3 < 1.0 by one ulp.
    last_progress, timeout_s = 1.3, 1.0
    now = last_progress + timeout_s
    residue = timeout_s - (now - last_progress)
    assert 0 < residue < TIMEOUT_TOLERANCE_S
    assert now + residue == now  # a timer due "now": time would never advance
    assert _remaining(timeout_s, now - last_progress) == 0.0


def test_remaining_is_zero_or_at_least_the_tolerance():
    assert _remaining(0.4, 0.1) == 0.4 - 0.1
    assert _remaining(0.4, 0.4) == 0.0
    assert _remaining(0.4, 0.5) == 0.0
    assert _remaining(0.4, 0.4 - TIMEOUT_TOLERANCE_S / 2) == 0.0
    assert _remaining(0.4, 0.4 - 2 * TIMEOUT_TOLERANCE_S) >= TIMEOUT_TOLERANCE_S
