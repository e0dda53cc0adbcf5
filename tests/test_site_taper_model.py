"""The taper model (`site/taper.py`) learns a car's acceptance from what its meter shows against
what it was offered - never from the car's state of charge - and says what it will take slot by
slot. The cars are the simulator's (`sim.ev.SimEV`: linear taper above 80 %)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smartcharge.sim.ev import SimEV
from smartcharge.site.taper import Point, TaperModel

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REF = ("CP1", 1)


def _samples(car: SimEV, offered_w: float, minutes: int, every: int = 5):
    """(Point, offered) every `every` minutes of a car charging at min(offer, acceptance)."""
    energy_wh, out = 0.0, []
    for minute in range(1, minutes + 1):
        drawn_w = car.advance(60.0, offered_w)
        energy_wh += drawn_w / 60.0
        if minute % every == 0:
            out.append(Point(T0 + timedelta(minutes=minute), energy_wh, drawn_w))
    return out


def test_two_samples_under_the_offer_give_the_line_the_car_tapers_along():
    car = SimEV(capacity_wh=60_000.0, soc=0.83, max_power_w_by_phases={3: 11_000.0})
    true_per_wh = 11_000.0 * 0.9 / (0.2 * 60_000.0)
    model = TaperModel()
    first, second = _samples(car, 11_000.0, 10)
    assert model.observe(REF, first, 11_000.0, 75.0) is None      # one point: no line yet
    assert model.observe(REF, second, 11_000.0, 75.0) == "fitted"
    assert model.fits[REF].per_wh == pytest.approx(true_per_wh, rel=0.02)
    # what it says the car takes in each 15-min slot of the next hour, against what the car
    # then takes when offered everything
    starts = [second.at + timedelta(minutes=15 * k) for k in range(4)]
    ends = [s + timedelta(minutes=15) for s in starts]
    caps = model.caps_w(REF, second.at, second.energy_wh, starts, ends, None, 0.0)
    taken = [sum(car.advance(60.0, 22_000.0) for _ in range(15)) / 15.0 for _ in range(4)]
    for cap, took in zip(caps, taken):
        assert cap == pytest.approx(took, rel=0.03)
    # until the next sample the cap is what it takes at that sample (all of it is taken)
    next_sample = second.at + timedelta(minutes=5)
    first_slot = model.caps_w(REF, second.at, second.energy_wh, starts, ends, next_sample, 0.0)[0]
    assert first_slot == pytest.approx(
        model.fits[REF].along_w(second.at, second.energy_wh, next_sample))


def test_a_car_at_its_own_maximum_is_no_taper():
    # an 11 kW car on a 22 kW bay draws 11 kW flat: under the offer, but not falling
    car = SimEV(capacity_wh=80_000.0, soc=0.3, max_power_w_by_phases={3: 11_000.0})
    model = TaperModel()
    for point in _samples(car, 22_000.0, 30):
        model.observe(REF, point, 22_000.0, 75.0)
    assert REF not in model.fits


def test_a_car_that_takes_more_than_the_line_allows_refutes_it():
    car = SimEV(capacity_wh=60_000.0, soc=0.83, max_power_w_by_phases={3: 11_000.0})
    model = TaperModel()
    first, second = _samples(car, 11_000.0, 10)
    model.observe(REF, first, 11_000.0, 75.0)
    model.observe(REF, second, 11_000.0, 75.0)
    line_w = model.fits[REF].acceptance_w(second.energy_wh + 500.0)
    # the car had limited itself: it now draws 2 kW more than the line says, at a lower offer
    point = Point(second.at + timedelta(minutes=5), second.energy_wh + 500.0, line_w + 2_000.0)
    assert model.observe(REF, point, line_w + 2_000.0, 75.0) == "refuted"
    assert REF not in model.fits


def test_a_car_drawing_its_whole_offer_keeps_the_line():
    # capped by the line, the car takes all it is offered: that shows nothing new
    car = SimEV(capacity_wh=60_000.0, soc=0.83, max_power_w_by_phases={3: 11_000.0})
    model = TaperModel()
    first, second = _samples(car, 11_000.0, 10)
    model.observe(REF, first, 11_000.0, 75.0)
    model.observe(REF, second, 11_000.0, 75.0)
    fit = model.fits[REF]
    offer_w = fit.acceptance_w(second.energy_wh + 300.0) - 200.0
    point = Point(second.at + timedelta(minutes=5), second.energy_wh + 300.0, offer_w)
    assert model.observe(REF, point, offer_w, 75.0) is None
    assert model.fits[REF] is fit


def test_the_sample_after_one_that_took_its_whole_offer_bounds_the_slope_at_once():
    # a 22 kW car just under its taper start draws its whole 22 kW offer, then, five minutes
    # on, less: it accepted at least 22 kW then, so its line falls at least that steeply - a
    # line from the first sample under the offer, never steeper than the car's own
    car = SimEV(capacity_wh=40_000.0, soc=0.75, max_power_w_by_phases={3: 22_000.0})
    true_per_wh = 22_000.0 * 0.9 / (0.2 * 40_000.0)
    model = TaperModel()
    took_all, under = _samples(car, 22_000.0, 10)
    assert took_all.power_w == 22_000.0 and under.power_w < 21_000.0
    assert model.observe(REF, took_all, 22_000.0, 75.0) is None
    assert model.observe(REF, under, 22_000.0, 75.0) == "fitted"
    bound = model.fits[REF].per_wh
    assert 0.3 * true_per_wh < bound < true_per_wh
    # the next sample under the offer measures it (a sample's power is its last minute's
    # average: ~5 % off for a car tapering this fast)
    (later,) = _samples(car, 22_000.0, 5)
    later = Point(later.at + timedelta(minutes=10), under.energy_wh + later.energy_wh,
                  later.power_w)
    model.observe(REF, later, 22_000.0, 75.0)
    assert bound < model.fits[REF].per_wh == pytest.approx(true_per_wh, rel=0.05)
