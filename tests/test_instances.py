"""The seeded instance generator follows its documented distribution."""

import numpy as np
import pytest

from optimizer.instances import generate

N = 2000


@pytest.fixture(scope="module")
def power():
    return generate(N, family="power", seed=7)


@pytest.fixture(scope="module")
def phase():
    return generate(N, family="phase", seed=7)


def test_same_seed_same_problem_other_seed_other_problem(power):
    again = generate(N, family="power", seed=7)
    other = generate(N, family="power", seed=8)
    for name in ("energy_wh", "arrival_slot", "departure_slot", "max_power_w", "node_limit_w"):
        np.testing.assert_array_equal(getattr(power, name), getattr(again, name))
    assert not np.array_equal(power.energy_wh, other.energy_wh)


def test_three_level_tree(power):
    parent = power.node_parent
    assert parent[0] == -1
    feeders = np.flatnonzero(parent == 0)
    assert feeders.size == 20
    stations = np.flatnonzero(np.isin(parent, feeders))
    assert stations.size == N // 2
    assert set(power.connector_node) == set(stations)
    assert np.all(np.bincount(power.connector_node)[stations] == 2)


def test_sessions_follow_the_documented_distribution(power):
    hours_per_slot = power.slot_s[0] / 3600.0
    arrival_h = power.arrival_slot * hours_per_slot
    assert 7.5 <= np.median(arrival_h) <= 9.5  # morning peak
    assert np.mean((arrival_h >= 7.0) & (arrival_h < 9.0)) > 0.4
    assert np.mean(arrival_h >= 12.0) > 0.05  # some spread through the day
    inside = power.departure_slot < power.n_slots
    dwell_h = (power.departure_slot - power.arrival_slot)[inside] * hours_per_slot
    assert dwell_h.min() >= 2.0 - 2 * hours_per_slot and dwell_h.max() <= 10.0 + hours_per_slot
    assert power.energy_wh.min() >= 5_000.0 and power.energy_wh.max() <= 60_000.0
    assert set(np.unique(power.weight)) == {1.0, 2.0}


def test_connectors_and_phases(phase):
    max_w = phase.max_power_w[:, 0]
    assert set(np.round(np.unique(max_w))) == {7_360.0, 11_000.0, 22_000.0}
    single = phase.phases == 1
    assert 0.15 < single.mean() < 0.5
    share = np.bincount(phase.phase[single], minlength=3) / single.sum()
    assert share[0] > share[1] > share[2]  # uneven on purpose
    assert np.all(max_w[single] <= 32.0 * 230.0 + 1e-9)


def test_site_cap_binds_and_dips_for_demand_response(power):
    site_w = power.node_limit_w[0]
    fraction = site_w[0] / power.max_power_w[:, 0].sum()
    assert 0.35 <= fraction <= 0.50
    hour = np.arange(power.n_slots) * power.slot_s / 3600.0
    evening = (hour >= 17.0) & (hour < 19.0)
    np.testing.assert_allclose(site_w[evening], 0.7 * site_w[0])
    # At the morning peak the cars present could draw more than the cap.
    assert (power.upper_w.sum(axis=0) > site_w).any()


def test_families_differ_only_in_current_limits(power, phase):
    assert not power.has_phase_limits
    assert phase.has_phase_limits
    limited = np.flatnonzero(np.isfinite(phase.node_limit_a).any(axis=1))
    np.testing.assert_array_equal(limited, np.arange(21))  # site and feeders
    np.testing.assert_allclose(phase.node_limit_a[limited],
                               phase.node_limit_w[limited] / (3 * 230.0))
    np.testing.assert_array_equal(power.energy_wh, phase.energy_wh)


def test_options_and_bad_arguments():
    problem = generate(10, n_slots=48, slot_s=1800, min_power=False, prices=False, seed=1)
    assert problem.n_slots == 48 and problem.price_per_kwh is None
    assert np.all(problem.min_power_w == 0.0)
    with_min = generate(10, seed=1)
    np.testing.assert_allclose(with_min.min_power_w,
                               np.where(with_min.phases == 1, 1380.0, 4140.0))
    with pytest.raises(ValueError, match="family"):
        generate(10, family="dc")
    with pytest.raises(ValueError, match="n_connectors"):
        generate(0)
