"""The online replay plans a car still plugged in after the departure its driver told as the
site controller does (`site/planner.py` `departure_slot`: an hour more), not as leaving
within the current period (which crammed all its energy into that period, ahead of cars truly
about to leave, and then planned it nothing until the next re-plan)."""

import numpy as np

from optimizer.replay import Sessions, online


def _sessions() -> Sessions:
    # car 0 said it leaves at period 1 but stays to 24 and needs 5 kWh; car 1 comes at 3, truly
    # leaves at 6 and needs 3 periods at 7 kW; one 7 kW limit: both can be served in full
    return Sessions(arrival=[0, 3], departure=[24, 6], energy_wh=[5_000.0, 1_750.0],
                    max_power_w=[7_000.0, 7_000.0], period_s=300.0, n_periods=24,
                    told_departure=[1, 6])


def test_a_car_past_its_told_departure_is_planned_to_stay_an_hour_more():
    delivered = online(_sessions(), 7_000.0, "solve", replan_on_change=True,
                       min_stay_periods=12)
    np.testing.assert_allclose(delivered, [5_000.0, 1_750.0], rtol=1e-6)


def test_planned_to_leave_at_once_it_took_the_leaving_car_s_period():
    delivered = online(_sessions(), 7_000.0, "solve", replan_on_change=True)
    assert delivered[1] < 1_750.0 - 100.0
