"""The fail-safe defaults' shares are computed once per set of node limits (issue 10): with a DR
event announced, a station's default schedule has two sets (during, after), and a one-entry
cache made every station of a round compute the whole site's shares again - O(stations x
connectors), ~14 s of a DR event at 1 000 connectors."""

from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.failsafe import FailSafeSetup
from smartcharge.site.topology import SiteTopology


class _Defaults(FailSafeSetup):
    def __init__(self, topology):
        self.topology = topology
        self._shares = {}
        self._shares_for = None


def test_each_set_of_node_limits_is_computed_once_per_round():
    site = Site(name="s", circuits=(Circuit("grid", None, limit_w=50_000.0),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1),)) for i in range(4)))
    topology = SiteTopology(site)
    calls = []
    compute = topology.default_shares
    topology.default_shares = lambda **kw: calls.append(kw) or compute(**kw)
    defaults = _Defaults(topology)
    during, after = (20_000.0, *[float("inf")] * 4), (50_000.0, *[float("inf")] * 4)
    for _ in site.stations:      # what every station's defaults ask in one round
        shares = [defaults._default_shares(node_w) for node_w in (during, after)]
    assert len(calls) == 2
    assert shares[0] != shares[1]
    assert sum(w for w, _ in shares[0].values()) <= 20_000.0 + 1e-6
