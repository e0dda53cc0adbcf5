"""A baseline the portfolio guard returns keeps the cars the previous plan ran: its on/off pattern
with those cars held at their minimum, re-solved (optimizer/pattern.py)."""

import dataclasses

import numpy as np
import pytest

from optimizer import Problem, instances, solve
from optimizer.check import check
from optimizer.objective import build_objective
from optimizer.pattern import held_pattern, hold_pattern
from optimizer.solve import weighted_energy_wh

BASELINES = ("edf", "llf", "equal_share")


def captured_tight_replan() -> Problem:
    """A re-plan of the tight day (truthful drivers, 00:11; 17 of its 22 sessions, 35 slots,
    the first 240 s) where our rounded plan delivered less weighted energy over the horizon
    than LLF, and the guard returned LLF, which paused car 4 (11 kW, the previous plan ran it
    at 11 040 W; 15 kWh to go by slot 12): the car was paused five times in 3 hours this way."""
    inf = np.inf
    n_slots = 35
    max_w = np.repeat(np.array(
        [3680, 11040, 11040, 11040, 11040, 11040, 7360, 7360, 3772, 7360, 7360, 7360, 7360,
         22080, 11150, 22080, 22080], float)[:, None], n_slots, axis=1)
    # car 8 is in taper (site/taper.py): what it takes falls slot by slot to its minimum
    max_w[8, :12] = [3772, 3593, 3259, 2957, 2684, 2438, 2216, 2015, 1834, 1670, 1522, 1389]
    max_w[8, 12:] = 1380
    previous = np.full((17, n_slots), np.nan)
    previous[:, :3] = [
        [4923, 10644, 10144], [0, 4140, 4140], [4140, 4140, 4140], [0, 0, 0],
        [11040, 10836, 6900], [0, 0, 0], [0, 0, 0], [0, 0, 0], [4027, 1380, 1631], [0, 0, 0],
        [7360, 7360, 7360], [0, 0, 0], [7360, 7360, 7360], [0, 0, 0], [11150, 4140, 8325],
        [0, 0, 0], [0, 0, 0]]
    return Problem(
        slot_s=[240.0] + [900.0] * (n_slots - 1), max_power_w=max_w,
        min_power_w=[1380, 4140, 4140, 4140, 4140, 4140, 1380, 1380, 1380, 1380, 1380, 1380,
                     1380, 12420, 4140, 12420, 12420],
        energy_wh=[16592, 27407, 22613, 23262, 14980, 16104, 18969, 26013, 7282, 28005, 27783,
                   7753, 24993, 14077, 22667, 16189, 23638],
        arrival_slot=[0] * 17,
        departure_slot=[13, 26, 19, 32, 12, 29, 27, 34, 13, 33, 10, 29, 14, 17, 13, 18, 22],
        phases=[1, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3],
        phase=[0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0, 1, 2, 0, 0, 0, 0],
        node_parent=[-1, 0, 0, 0, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 4, 4, 4, 5, 5, 5],
        connector_node=[6, 8, 10, 10, 12, 13, 14, 15, 17, 17, 18, 19, 19, 21, 23, 24, 25],
        node_limit_w=[50000, inf, inf, 66000] + [inf] * 22,
        node_limit_a=[200, 100, 80, inf, 63, 63] + [16] * 8 + [inf] * 6 + [32] * 6,
        previous_w=previous)


def _lawful_with_minimums(problem: Problem, power_w: np.ndarray) -> None:
    assert check(problem, power_w, tol=1e-6) == []
    on = power_w > 1e-6
    assert (power_w[on] >= np.broadcast_to(problem.min_power_w[:, None], on.shape)[on]
            - 1e-6).all()


def test_the_pattern_is_the_winners_plus_the_running_cars_it_pauses():
    problem = captured_tight_replan()
    llf = solve(problem, backend="llf").power_w
    pattern = held_pattern(problem, llf)
    assert pattern is not None
    assert (pattern >= (llf > 0)).all()      # the winner's entries all stay
    added = pattern & ~(llf > 0)
    assert added[4, 0]                       # car 4, the one LLF paused
    # only cars the previous plan ran, only in the kept slots
    assert not added[:, 3:].any()
    assert (problem.previous_w[:, :3][added[:, :3]] > 0).all()


def test_a_car_whose_request_pays_for_its_minimum_now_gives_up_its_latest_entries():
    # Car 0 has 1 100 Wh left: the winner runs it at 4 400 W in slot 3 (1 100 Wh); held at its
    # minimum in slots 0-1 (2 x 1 035 Wh would be more than its request) it keeps slot 0 and
    # gives up slot 3 - its energy comes now instead.
    previous = np.full((2, 4), np.nan)
    previous[:, :2] = [[4140, 4140], [0, 0]]
    problem = Problem(slot_s=[900.0] * 4, max_power_w=11040.0, energy_wh=[1100.0, 8000.0],
                      arrival_slot=[0, 0], departure_slot=[4, 4], node_parent=[-1],
                      connector_node=[0, 0], node_limit_w=11040.0, min_power_w=4140.0,
                      previous_w=previous)
    winner = np.array([[0.0, 0.0, 0.0, 4400.0], [11040.0, 11040.0, 9000.0, 0.0]])
    pattern = held_pattern(problem, winner)
    np.testing.assert_array_equal(pattern, [[True, False, False, False],
                                            [True, True, True, False]])


def test_nothing_to_hold_is_none():
    problem = captured_tight_replan()
    ours = solve(dataclasses.replace(problem, previous_w=None)).power_w
    # a winner that runs every car the previous plan ran: nothing to add
    ran = (np.nan_to_num(problem.previous_w) > 0).any(axis=1)
    winner = np.where(ran[:, None], np.maximum(ours, 1.0), ours)
    assert held_pattern(problem, winner) is None
    assert held_pattern(dataclasses.replace(problem, previous_w=None), ours) is None


@pytest.mark.parametrize("family", ["power", "phase"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_held_patterns_are_lawful_and_deliver_at_least_the_winner(family, seed):
    # A re-plan at slot 34 after one car's need changed (benchmarks/stable.py's case): whatever
    # baseline wins, its pattern with the previous plan's running cars held is lawful (limits,
    # 0 or at least each minimum) and delivers at least the baseline's weighted energy, or is
    # not made.
    problem = instances.generate(20, family=family, seed=seed)
    energy = np.array(problem.energy_wh)
    energy[0] *= 0.5
    before = solve(dataclasses.replace(problem, energy_wh=energy), backend="highs").power_w
    previous = np.full(problem.upper_w.shape, np.nan)
    previous[:, 34:36] = before[:, 34:36]
    problem = dataclasses.replace(problem, previous_w=previous)
    objective = build_objective(problem)
    for name in BASELINES:
        winner = solve(problem, backend=name).power_w
        winner_wh = weighted_energy_wh(problem, winner)
        held = hold_pattern(problem, objective, winner, winner_wh, weighted_energy_wh)
        if held is None:
            continue
        _lawful_with_minimums(problem, held)
        assert weighted_energy_wh(problem, held) >= winner_wh * (1 - 1e-9)
        pattern = held_pattern(problem, winner)
        assert not (held[~pattern] > 0).any()
