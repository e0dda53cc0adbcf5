"""A car whose last piece of energy is smaller than one slot at its minimum rate.

A tapering car's bound falls to its minimum (a 6 A three-phase car: 4 140 W): after its taper
it can take whole slots at 4 140 W only, 1 035 Wh a 15-min slot. What the LP plans past the
last whole slot sits below the minimum and the rounding pauses it, although a lawful plan
delivers the whole request: one more slot at the minimum and that much less in a slot where
the car runs above it. On the demo day these lost remainders decided the portfolio guard: a
baseline whose remainders happened to fit beat our rounded plan over the horizon and was
returned, pausing running cars (benchmarks/README.md, "s37-pause").
"""

import numpy as np
import pytest

from optimizer import Problem, check, solve
from optimizer.solve import weighted_energy_wh

SLOT_S = 900.0
MIN_W = 4140.0


def tapering_car(first_w: float, energy_wh: float, n_slots: int = 6, previous_w=None,
                 limit_w: float = 1e9) -> Problem:
    """One car: `first_w` W in slot 0, its minimum in every slot after (a taper)."""
    bound = np.full((1, n_slots), MIN_W)
    bound[0, 0] = first_w
    return Problem(slot_s=[SLOT_S] * n_slots, max_power_w=bound, energy_wh=[energy_wh],
                   arrival_slot=[0], departure_slot=[n_slots], node_parent=[-1],
                   connector_node=[0], node_limit_w=limit_w, min_power_w=[MIN_W],
                   previous_w=previous_w)


@pytest.mark.parametrize("backend", ["auto", "highs"])
def test_a_remainder_below_one_slot_at_the_minimum_is_delivered(backend):
    # 7 000 W in slot 0 (1 750 Wh) and one and a half slots at the minimum: 3 302.5 Wh. Lawful
    # exactly: slot 0 at 4 930 W, two slots at 4 140 W.
    energy_wh = 7000.0 * SLOT_S / 3600.0 + 1.5 * MIN_W * SLOT_S / 3600.0
    problem = tapering_car(7000.0, energy_wh)
    s = solve(problem, backend=backend)
    assert check(problem, s.power_w, tol=0.0) == []
    assert s.delivered_wh[0] == pytest.approx(energy_wh, rel=1e-9)


def test_the_remainder_keeps_a_shared_limit():
    # Two such cars under a limit that holds one car's minimum in every slot after the first:
    # each car's remainder would need a slot that the other one fills - the plan stays lawful
    # and loses nothing it could keep.
    energy_wh = 7000.0 * SLOT_S / 3600.0 + 1.5 * MIN_W * SLOT_S / 3600.0
    one = tapering_car(7000.0, energy_wh)
    problem = Problem(slot_s=one.slot_s, max_power_w=np.vstack([one.max_power_w] * 2),
                      energy_wh=[energy_wh] * 2, arrival_slot=[0, 0], departure_slot=[6, 6],
                      node_parent=[-1], connector_node=[0, 0],
                      node_limit_w=np.array([[14000.0] + [MIN_W] * 5]), min_power_w=[MIN_W] * 2)
    s = solve(problem)
    assert check(problem, s.power_w, tol=0.0) == []
    # 5 slots of 1 035 Wh after slot 0, 3 500 Wh in it: at most 8 675 Wh in all
    assert weighted_energy_wh(problem, s.power_w) == pytest.approx(
        min(2 * energy_wh, 14000.0 * SLOT_S / 3600.0 + 5 * MIN_W * SLOT_S / 3600.0), rel=1e-9)
