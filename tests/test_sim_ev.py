"""The simulated EV: takes what it is offered up to its acceptance, tapers near full, stops at
its target, and never takes more energy than it needs."""

import random
from datetime import UTC, datetime

import pytest

from smartcharge.sim.ev import SimEV, random_ev


def test_draws_the_offer_when_below_acceptance():
    ev = SimEV(capacity_wh=50_000, soc=0.2)
    drawn_w = ev.advance(3600, 7_000)
    assert drawn_w == pytest.approx(7_000)
    assert ev.soc == pytest.approx(0.2 + 7_000 / 50_000)
    assert ev.charged_wh == pytest.approx(7_000)


def test_draw_is_capped_by_phase_dependent_maximum():
    ev = SimEV(capacity_wh=50_000, soc=0.2, max_power_w_by_phases={1: 7_400, 3: 11_000})
    assert ev.advance(60, 50_000) == pytest.approx(11_000)
    ev.phases = 1
    assert ev.advance(60, 50_000) == pytest.approx(7_400)


def test_taper_is_linear_above_threshold():
    ev = SimEV(capacity_wh=50_000, soc=0.9, taper_start_soc=0.8, taper_floor_ratio=0.1,
               max_power_w_by_phases={3: 10_000})
    # halfway through the taper range: 10 kW * (1 - 0.5 * 0.9) = 5.5 kW
    assert ev.acceptance_w() == pytest.approx(5_500)
    assert ev.advance(1, 20_000) == pytest.approx(5_500)


def test_stops_at_target_within_a_step_and_averages_down():
    ev = SimEV(capacity_wh=10_000, soc=0.7, target_soc=0.75, max_power_w_by_phases={3: 10_000})
    drawn_w = ev.advance(3600, 10_000)       # needs 500 Wh, reaches the target early
    assert ev.soc == pytest.approx(0.75)
    assert ev.charged_wh == pytest.approx(500)
    assert drawn_w == pytest.approx(500)
    assert ev.full and ev.advance(60, 10_000) == 0.0


def test_zero_offer_draws_nothing():
    ev = SimEV(capacity_wh=10_000, soc=0.5)
    assert ev.advance(600, 0) == 0.0 and ev.soc == 0.5


@pytest.mark.parametrize("kwargs", [dict(capacity_wh=0, soc=0.5), dict(capacity_wh=1, soc=1.5),
                                    dict(capacity_wh=1, soc=0.5, target_soc=2)])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        SimEV(**kwargs)


def test_random_ev_is_deterministic_for_a_seed():
    arrival = datetime(2026, 1, 1, 8, tzinfo=UTC)
    first = [random_ev(random.Random(7), arrival) for _ in range(1)][0]
    second = random_ev(random.Random(7), arrival)
    assert first == second
    assert first.departure > arrival and 0 < first.energy_need_wh
