"""The quality benchmark's taper-aware bound is an upper bound on what a simulated car can take,
and tighter than the bound that ignores taper (benchmarks/quality_bound.py)."""

import copy
from datetime import timedelta

from benchmarks.quality_bound import taper_aware_optimum_wh
from benchmarks.quality_days import START, Day, offline_optimum_wh
from smartcharge.config import load_site
from smartcharge.demo.arguments import default_site_path
from smartcharge.demo.scenario import Visit
from smartcharge.sim.ev import SimEV


def one_car_day(hours: float) -> tuple[Day, SimEV]:
    """A 11 kW car at 60 % of 40 kWh wanting 100 %, alone on the demo site for `hours`."""
    site = load_site(default_site_path())
    station = next(s for s in site.stations if any(c.phases == 3 for c in s.connectors))
    connector = next(c for c in station.connectors if c.phases == 3)
    car = SimEV(capacity_wh=40_000.0, soc=0.6, target_soc=1.0,
                max_power_w_by_phases={1: 7_400.0, 3: 11_000.0})
    visit = Visit(station.station_id, connector.connector_id, START,
                  START + timedelta(hours=hours), car, "tag", car.energy_need_wh, True)
    return Day("one-car", site, [visit], START, hours, None), copy.deepcopy(car)


def took_wh(car: SimEV, hours: float) -> float:
    """Offered its maximum all along, in the simulator's 60 s steps."""
    before = car.charged_wh
    for _ in range(int(hours * 60)):
        car.advance(60.0, 11_000.0)
    return car.charged_wh - before


def test_the_taper_aware_bound_holds_what_the_car_takes_and_is_tighter():
    for hours in (1.0, 1.5):          # the car is not full by then
        day, car = one_car_day(hours)
        taken = took_wh(car, hours)
        bound = taper_aware_optimum_wh(day)
        plain = offline_optimum_wh(day)
        assert taken <= bound + 1e-6, (hours, taken, bound)
        assert bound < plain - 200, (hours, bound, plain)       # taper costs energy here
        assert bound - taken < 0.03 * taken, (hours, taken, bound)   # and the bound is close


def test_the_taper_aware_bound_of_a_car_in_taper_all_along_is_the_hand_computed_energy():
    """An 11 kW car at 90 % of 40 kWh, alone for an hour: its acceptance is the line
    a(e) = 11 000 (1 - 4.5 (0.9 + e / 40 000 - 0.8)) W = 6 050 - 1.2375 e, and the replay's
    60-s steps each take a(e) / 60 Wh, so after 60 steps it has taken
    (6 050 / 1.2375) (1 - (1 - 1.2375 / 60)^60) = 3 488.8 Wh (its need is 4 000 Wh).
    The bound must be that energy: no more (the slot-start acceptance held over each 5-min
    slot gave 3 564.6 Wh) and no less (it is what the simulated car takes)."""
    day, car = one_car_day(1.0)
    car.soc = day.visits[0].ev.soc = 0.9
    day.visits[0].requested_wh = car.energy_need_wh
    k, a0 = 11_000.0 * 4.5 / 40_000.0, 11_000.0 * (1.0 - 4.5 * 0.1)
    hand_wh = a0 / k * (1.0 - (1.0 - k / 60.0) ** 60)
    assert abs(hand_wh - 3_488.8) < 0.1
    assert abs(took_wh(car, 1.0) - hand_wh) < 1e-6          # the simulator agrees
    assert abs(taper_aware_optimum_wh(day) - hand_wh) < 0.5
    assert offline_optimum_wh(day) > 3_900.0                  # the plain bound: its need
