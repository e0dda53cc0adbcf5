"""Circuit tree -> optimizer node arrays, and back."""

import numpy as np
import pytest

from optimizer import Problem
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.topology import ConnectorRef, SiteTopology


def _site():
    return Site(
        name="t",
        circuits=(Circuit("grid", None, limit_w=50_000, limit_a=80),
                  Circuit("feeder-1", "grid", limit_w=30_000),
                  Circuit("breaker-1a", "feeder-1", limit_a=32)),
        stations=(
            Station("CP1", "breaker-1a",
                    (Connector(1, phases=3), Connector(2, phases=1, phase="L2"))),
            Station("CP2", "feeder-1", (Connector(1, phases=3, max_current_a=16),),
                    max_power_w=11_000),
            Station("CP3", "grid", (Connector(1, phases=1, phase="L3", max_current_a=32),),
                    max_current_a=20),
        ))


def test_nodes_parents_first_with_station_nodes():
    topo = SiteTopology(_site())
    assert topo.node_ids == ["grid", "feeder-1", "breaker-1a", "station:CP1", "station:CP2",
                             "station:CP3"]
    assert topo.node_parent.tolist() == [-1, 0, 1, 2, 1, 0]
    assert topo.refs == [ConnectorRef("CP1", 1), ConnectorRef("CP1", 2), ConnectorRef("CP2", 1),
                         ConnectorRef("CP3", 1)]
    assert topo.connector_node.tolist() == [3, 3, 4, 5]
    assert topo.index(ConnectorRef("CP2", 1)) == 2
    assert topo.static_limit_w[4] == 11_000 and topo.static_limit_a[5] == 20
    assert topo.node_sources[2].source == "circuit" and topo.node_sources[4].source == "station"


def test_connector_maxima_and_phases():
    topo = SiteTopology(_site())
    arrays = topo.arrays(topo.refs)
    assert arrays["max_power_w"].tolist() == [3 * 230 * 32, 230 * 32, 11_000, 230 * 20]
    assert arrays["min_power_w"].tolist() == [3 * 230 * 6, 230 * 6, 3 * 230 * 6, 230 * 6]
    assert arrays["phases"].tolist() == [3, 1, 3, 1]
    assert arrays["phase"].tolist()[1] == 1 and arrays["phase"].tolist()[3] == 2


def test_node_limits_take_min_of_site_file_and_root_limit():
    topo = SiteTopology(_site())
    limit_w, limit_a = topo.node_limits(np.array([40_000.0, 60_000.0, np.inf]))
    assert limit_w[0].tolist() == [40_000, 50_000, 50_000]
    assert limit_w.shape == (6, 3) and limit_a.shape == (6, 3)
    assert np.isinf(limit_w[2]).all() and (limit_a[2] == 32).all()
    # the arrays build a valid Problem
    arrays = topo.arrays(topo.refs)
    Problem(slot_s=[900] * 3, max_power_w=arrays["max_power_w"][:, None] * np.ones(3),
            energy_wh=[1000] * 4, arrival_slot=[0] * 4, departure_slot=[3] * 4,
            node_parent=topo.node_parent, connector_node=arrays["connector_node"],
            node_limit_w=limit_w, node_limit_a=limit_a)


def test_default_shares_keep_every_node_under_its_limit():
    topo = SiteTopology(_site())
    shares = topo.default_shares(root_limit_w=24_000)
    power = np.array([shares[r][0] for r in topo.refs])
    amps = np.array([shares[r][1] for r in topo.refs])
    # Each connector at its share: sum over every node within its W and A limits.
    limit_w = topo.static_limit_w.copy()
    limit_w[0] = 24_000
    for node in range(topo.n_nodes):
        under = [i for i, cn in enumerate(topo.connector_node) if node in topo.ancestors(int(cn))]
        assert power[under].sum() <= limit_w[node] + 1e-9
        assert amps[under].sum() <= topo.static_limit_a[node] + 1e-9
    # the tightest: grid 24 kW / 4 connectors = 6 kW, the 32 A breaker / 2 = 16 A
    assert shares[ConnectorRef("CP1", 1)][1] <= 16
    assert power.max() <= 6_000


def test_bad_tree_is_refused_with_the_field():
    bad = Site(name="t", circuits=(Circuit("grid", None), Circuit("b", "nowhere")), stations=())
    with pytest.raises(ValueError, match=r"circuits\[1\]"):
        SiteTopology(bad)
    bad = Site(name="t", circuits=(Circuit("grid", None),),
               stations=(Station("X", "nowhere", (Connector(1),)),))
    with pytest.raises(ValueError, match="circuit"):
        SiteTopology(bad)


def test_site_phase_follows_the_connectors_wiring():
    site = Site(name="t", circuits=(Circuit("grid", None, limit_a=32),),
                stations=(Station("CP1", "grid", (Connector(1, phases=3, phase="L2"),
                                                  Connector(2, phases=3),
                                                  Connector(3, phases=1, phase="L3"))),))
    topo = SiteTopology(site)
    rotated, plain, single = (ConnectorRef("CP1", i) for i in (1, 2, 3))
    assert [topo.site_phase(rotated, k) for k in range(3)] == [1, 2, 0]   # L1 -> L2 ...
    assert [topo.site_phase(plain, k) for k in range(3)] == [0, 1, 2]     # L1 -> L1 default
    assert topo.site_phase(single, 0) == 2
    assert topo.max_power_w(plain, phases=1) == pytest.approx(230 * 32)
    assert topo.phase_limited(plain)


def test_default_shares_are_usable_or_zero_fewer_stations_get_one():
    """A share below a car's minimum (6 A) lets no car charge: fewer, usable shares."""
    site = Site(name="t", circuits=(Circuit("grid", None),
                                    Circuit("feeder", "grid", limit_a=40)),
                stations=tuple(Station(f"CP{i}", "feeder", (Connector(1),))
                               for i in range(1, 9)))
    topo = SiteTopology(site)
    shares = topo.default_shares(root_limit_w=10_000)
    amps = [shares[r][1] for r in topo.refs]
    watts = [shares[r][0] for r in topo.refs]
    assert all(a == 0 or a >= 6.0 for a in amps), amps
    assert sum(watts) <= 10_000 + 1e-6 and sum(amps) <= 40 + 1e-6
    # 10 kW holds two 3-phase cars at 6 A (4 140 W each): two usable shares, not eight useless
    assert sum(1 for a in amps if a > 0) == 2
    # a looser grid: the 40 A feeder is the limit, six shares of 6.67 A
    shares = topo.default_shares(root_limit_w=100_000)
    amps = [shares[r][1] for r in topo.refs]
    assert sum(1 for a in amps if a > 0) == 6 and min(a for a in amps if a > 0) >= 6.0


def test_held_connectors_keep_what_they_hold_and_the_others_share_the_rest():
    """An offline station's accepted default (`held_w`) is its own and off every node above it:
    the shares under each node still sum within its limits with it counted."""
    topo = SiteTopology(_site())
    first = topo.refs[0]
    plain = topo.default_shares(root_limit_w=24_000)
    # holding its own share takes from no one (CP1/2 gains the current CP1/1 leaves on
    # their 32 A breaker: equal shares are split by count, and CP1/1's is capped by the grid)
    same = topo.default_shares(root_limit_w=24_000, held_w={first: plain[first][0]})
    assert all(same[r][0] >= plain[r][0] - 1e-6 for r in topo.refs)
    assert sum(same[r][0] for r in topo.refs) <= 24_000 + 1e-6
    # holding more than its share: the rest of the grid shared by the others
    held = topo.default_shares(root_limit_w=12_000, held_w={first: 9_000.0})
    assert held[first][0] == 9_000.0
    assert sum(held[r][0] for r in topo.refs) <= 12_000 + 1e-6
    for node in range(topo.n_nodes):
        under = [r for i, r in enumerate(topo.refs)
                 if node in topo.ancestors(int(topo.connector_node[i]))]
        assert sum(held[r][1] for r in under) <= topo.static_limit_a[node] + 1e-6
    # more than the grid: nothing left for the others
    over = topo.default_shares(root_limit_w=8_000, held_w={first: 9_000.0})
    assert all(over[r] == (0.0, 0.0) for r in topo.refs[1:])


def test_arrays_looked_up_once_are_the_same_for_any_subset_and_order():
    # `arrays` keeps each connector's values from the first plan (s33-warm): a later call for
    # other refs, in another order, or none, gives what a fresh topology gives
    topo = SiteTopology(_site())
    first = topo.arrays(topo.refs)
    subset = [topo.refs[3], topo.refs[0], topo.refs[3]]
    again, fresh = topo.arrays(subset), SiteTopology(_site()).arrays(subset)
    for name, values in fresh.items():
        assert again[name].dtype == values.dtype and again[name].tolist() == values.tolist()
        assert again[name].tolist() == [first[name][3], first[name][0], first[name][3]]
    empty = topo.arrays([])
    assert all(v.shape == (0,) for v in empty.values())
    assert empty["connector_node"].dtype == np.int64
    with pytest.raises(KeyError):
        topo.arrays([ConnectorRef("CP9", 1)])
