"""Problem validation: a bad field raises ValueError naming the field and the first bad index."""

import numpy as np
import pytest

from optimizer import Problem


def _fields(**override):
    fields = dict(slot_s=[3600.0, 3600.0], max_power_w=[[11000.0, 11000.0], [7000.0, 7000.0]],
                  energy_wh=[10000.0, 5000.0], arrival_slot=[0, 0], departure_slot=[2, 1],
                  node_parent=[-1, 0], connector_node=[1, 1])
    fields.update(override)
    return fields


def test_valid_problem_derives_window_and_incidence():
    problem = Problem(**_fields())
    assert problem.n_connectors == 2 and problem.n_nodes == 2 and problem.n_slots == 2
    np.testing.assert_array_equal(problem.upper_w, [[11000.0, 11000.0], [7000.0, 0.0]])
    np.testing.assert_array_equal(problem.node_connector.toarray(), [[1, 1], [1, 1]])
    np.testing.assert_allclose(problem.wh_per_w, [1.0, 1.0])


@pytest.mark.parametrize("override, message", [
    (dict(energy_wh=[10000.0, -1.0]), r"energy_wh\[1\]: must not be negative"),
    (dict(departure_slot=[2, 0], arrival_slot=[0, 1]), r"departure_slot\[1\]: is before arrival_slot"),
    (dict(max_power_w=[[1.0, 2.0, 3.0]]), r"max_power_w: shape \(1, 3\) does not fit \(2, 2\)"),
    (dict(energy_wh=[np.nan, 1.0]), r"energy_wh\[0\]: is NaN"),
    (dict(max_power_w=[[1.0, 2.0], [3.0, np.nan]]), r"max_power_w\[\(1, 1\)\]: is NaN"),
    (dict(node_parent=[-1, 1]), r"node_parent\[1\]: must name an earlier node"),
    (dict(node_parent=[0, -1]), r"node_parent\[0\]: node 0 is the root"),
    (dict(connector_node=[1, 5]), r"connector_node\[1\]: must be a node index in \[0, 2\)"),
    (dict(arrival_slot=[0, 3]), r"arrival_slot\[1\]: must be in \[0, 2\]"),
    (dict(phases=[3, 2]), r"phases\[1\]: must be 1 or 3"),
    (dict(phases=[3, 1], phase=[0, 4]), r"phase\[1\]: a single-phase connector must name phase"),
    (dict(weight=[1.0, 0.0]), r"weight\[1\]: must be positive"),
    (dict(slot_s=[3600.0, 0.0]), r"slot_s\[1\]: must be positive"),
    (dict(node_limit_w=[[1.0, 1.0], [1.0, -5.0]]), r"node_limit_w\[\(1, 1\)\]: must not be negative"),
])
def test_bad_field_is_named_with_its_index(override, message):
    with pytest.raises(ValueError, match=message):
        Problem(**_fields(**override))
