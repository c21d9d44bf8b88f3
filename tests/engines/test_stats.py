"""The engine's phase clock."""

from __future__ import annotations

from culturealign.engines import stats


def test_the_phase_clock_counts_a_nested_phase_apart_from_the_one_around_it(monkeypatch):
    now = iter([0.0, 1.0, 3.0, 6.0, 10.0])  # enter outer, enter inner, leave inner, leave outer, enter outer
    monkeypatch.setattr(stats.time, "perf_counter", lambda: next(now))
    clock = stats.PhaseClock()
    with clock("prompt pass"):
        with clock("cache bookkeeping"):
            pass
    assert clock.seconds == {"prompt pass": 1.0 + 3.0, "cache bookkeeping": 2.0}
