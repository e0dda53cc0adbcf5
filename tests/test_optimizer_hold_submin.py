"""A running car held at its minimum now, paid by a later piece of its own below its minimum.

The demo day's drivers, 08:26 (benchmarks/README.md, "s37-pause"): a car at its 6 A minimum
(4 140 W is also its maximum, so it takes whole slots or nothing) ran in the previous plan; the
stable plan left it 3 399 W in the first slot (240 s long), two whole slots, and 270 W in a
fourth. Raising it to its minimum now would put it above its request, so its later energy must
pay: but its later entries were whole slots at the minimum (nothing to take without pausing
them) and the 270 W, which was more than the 49 Wh to move. So it was not held, the rounding
paused it now - a pause made by the re-plan alone - and paused the 270 W too. The 270 W is
lost to the car either way (below its minimum): taken whole, it pays for the hold.
"""

import numpy as np
import pytest

from optimizer import Problem, check
from optimizer.stable import hold_minimums

SLOTS_S = [240.0, 900.0, 900.0, 900.0, 900.0]
MIN_W = 4140.0
CAP_W = 3399.0 + 11040.0


def the_0826_case() -> tuple[Problem, np.ndarray]:
    wh = np.array(SLOTS_S) / 3600.0
    car = np.array([3399.0, MIN_W, MIN_W, 270.0, 0.0])   # the stable plan's, car 0
    other = np.array([11040.0, 6900.0, 6900.0, 6900.0, 6900.0])
    previous = np.full((2, 5), np.nan)
    previous[:, :2] = [[MIN_W, MIN_W], [11040.0, 6900.0]]
    problem = Problem(slot_s=SLOTS_S, max_power_w=np.array([[MIN_W] * 5, [11040.0] * 5]),
                      energy_wh=[float(car @ wh), 40000.0], arrival_slot=[0, 0],
                      departure_slot=[5, 5], node_parent=[-1], connector_node=[0, 0],
                      node_limit_w=CAP_W, min_power_w=[MIN_W, MIN_W], previous_w=previous)
    return problem, np.vstack([car, other])


def test_the_running_car_is_held_paid_by_its_later_piece_below_the_minimum():
    problem, plan_w = the_0826_case()
    held_w, held = hold_minimums(problem, plan_w)
    assert held == 1
    assert held_w[0, 0] == MIN_W
    assert held_w[0, 3] == 0.0                       # its 270 W piece taken whole
    assert check(problem, held_w, tol=1e-9) == []    # lawful, within the car's request
    wh = problem.wh_per_w
    # the donor keeps its energy: what it gave now came back later (in the piece's slot)
    assert held_w[1] @ wh == pytest.approx(plan_w[1] @ wh, rel=1e-12)
    # after the rounding's rule (0 or at least the minimum) the car delivers more than
    # the plan paused now would: 276 + 2 070 Wh against 2 070
    paused_wh = 2 * MIN_W * 900.0 / 3600.0
    assert held_w[0] @ wh > paused_wh
