"""The taper-aware bound that honours the minimum rate (benchmarks/quality_bound.py,
`min_rates=True`): a car whose battery takes less than its 6 A minimum still holds the minimum
of the limit while it charges (the fail-safe rule: every installed profile must fit), so the
bound must charge that difference against the limit - and stay an upper bound."""

import copy
import dataclasses
from datetime import timedelta

from benchmarks.quality_bound import taper_aware_optimum_wh
from benchmarks.quality_days import START, Day
from smartcharge.config import load_site
from smartcharge.demo.arguments import default_site_path
from smartcharge.demo.scenario import Visit
from smartcharge.sim.ev import SimEV

CAP_W = 14_000.0
MIN_W = 6 * 3 * 230.0          # the demo site's 6 A on three phases at 230 V


def two_car_day() -> tuple[Day, SimEV, SimEV]:
    """Two 11 kW bays under a 14 kW grid cap for an hour: car A hungry and far from its taper,
    car B at 95 % of 40 kWh wanting 100 %, its acceptance 3 575 W falling to 1 100 W - under
    the 4 140 W minimum all along."""
    site = load_site(default_site_path())
    root = dataclasses.replace(site.circuits[0], limit_w=CAP_W)
    site = dataclasses.replace(site, circuits=(root,) + tuple(site.circuits[1:]))
    bays = [(s.station_id, s.connectors[0].connector_id) for s in site.stations
            if s.connectors[0].phases == 3][:2]
    car_a = SimEV(capacity_wh=77_000.0, soc=0.1, target_soc=0.8,
                  max_power_w_by_phases={1: 7_400.0, 3: 11_000.0})
    car_b = SimEV(capacity_wh=40_000.0, soc=0.95, target_soc=1.0,
                  max_power_w_by_phases={1: 7_400.0, 3: 11_000.0})
    end = START + timedelta(hours=1)
    visits = [Visit(station, connector, START, end, car, f"tag{k}", car.energy_need_wh, True)
              for k, (car, (station, connector)) in enumerate(zip((car_a, car_b), bays))]
    return (Day("two-cars", site, visits, START, 1.0, None), copy.deepcopy(car_a),
            copy.deepcopy(car_b))


def lawful_best_wh(car_a: SimEV, car_b: SimEV) -> float:
    """A controller that keeps the minimum and the fail-safe rule, minute by minute (the
    replay's 60-s steps): B offered its minimum (A the rest of the cap) while that takes more
    in all than A alone at its maximum, else B paused."""
    taken = 0.0
    for _ in range(60):
        b_on = not car_b.full and car_b.acceptance_w() + (CAP_W - MIN_W) > 11_000.0
        offer_b = MIN_W if b_on else 0.0
        taken += car_a.advance(60.0, min(11_000.0, CAP_W - offer_b)) / 60.0
        taken += car_b.advance(60.0, offer_b) / 60.0
    return taken


def relaxed_best_wh() -> float:
    """What the bound may promise by hand: the LP holds limits on 5-min averages, so A stays at
    11 kW and B is offered its minimum a share 3 000 / 4 140 of the time (3 kW of the cap on
    average: 43.5 of the 60 steps). B's acceptance falls by (1 - k h) each step it is on, k =
    11 000 x 4.5 / 40 000 W per Wh, h = 1/60 h, from a0 = 3 575 W: it takes
    (a0 / k)(1 - (1 - k h)^43.5) = 1 722 Wh."""
    k, a0 = 11_000.0 * 4.5 / 40_000.0, 3_575.0
    return 11_000.0 + a0 / k * (1.0 - (1.0 - k / 60.0) ** (60.0 * 3_000.0 / MIN_W))


def test_the_bound_with_minimum_rates_charges_a_tapering_cars_minimum_against_the_cap():
    """Without the minimum the bound gives B the cap's 3 kW of room at whatever it takes:
    A 11 000 + B 2 000 Wh (its need). With it, each Wh B takes costs 4 140 / a(e) Wh of the
    cap: within the 5-min averaging the bound still has, what `relaxed_best_wh` computes."""
    day, car_a, car_b = two_car_day()
    assert car_b.acceptance_w() < MIN_W
    lawful = lawful_best_wh(car_a, car_b)
    with_min = taper_aware_optimum_wh(day, min_rates=True)
    without = taper_aware_optimum_wh(day)
    assert abs(without - 13_000.0) < 1.0, without
    assert lawful <= with_min + 1e-6, (lawful, with_min)        # still an upper bound
    assert with_min < without - 150.0, (with_min, without)      # it sees the minimum's price
    relaxed = relaxed_best_wh()
    # no less than the relaxation's own optimum, no more than its bands' resolution above it
    assert relaxed - 1.0 <= with_min <= relaxed + 100.0, (relaxed, with_min)


def test_a_tapering_car_the_others_cannot_replace_is_the_only_price():
    """Where the others can take the room a tapering car would waste (a hungry 22 kW car under
    the 14 kW cap), pausing the tapering car costs nothing: the bound with the minimum is the
    bound without it (the clairvoyant pauses it), as on the quality benchmark's days."""
    day, car_a, _ = two_car_day()
    car_a.max_power_w_by_phases = {1: 7_400.0, 3: 22_000.0}
    day.visits[0].ev.max_power_w_by_phases = {1: 7_400.0, 3: 22_000.0}
    depot = next(s for s in day.site.stations if s.connectors[0].max_current_a >= 32
                 and s.connectors[0].phases == 3 and s.station_id != day.visits[1].station_id)
    day.visits[0] = dataclasses.replace(day.visits[0], station_id=depot.station_id,
                                        connector_id=depot.connectors[0].connector_id)
    with_min = taper_aware_optimum_wh(day, min_rates=True)
    without = taper_aware_optimum_wh(day)
    assert abs(without - CAP_W) < 1.0, without
    assert abs(with_min - without) < 1.0, (with_min, without)
