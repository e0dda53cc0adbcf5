"""What the profiles installed in simulated stations let the cars draw when a car takes the
settle time to follow a decrease: at an instant, each connector may still draw the highest limit
in force at any moment of the settle time before it (a raise is in force when its schedule says;
a decrease is followed only a settle time later). Summed under every node and compared with its
W limit, this is the promise a raise that relies on a decrease keeps by waiting: every raise in
force no sooner than the settle time after the decreases that make room for it.

The stations' own view (`sim.profiles.ProfileStore`), recorded at every install or clear: what
was installed at an instant is the record before it, never the store as a later install left it."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from smartcharge.site.topology import SiteTopology


class SettleWatch:
    def __init__(self, site, fleet, limits, clock, settle_s: float) -> None:
        self.site, self.fleet, self.limits, self.clock = site, fleet, limits, clock
        self.settle_s = settle_s
        self.topology = SiteTopology(site)
        self.records: dict[str, list[tuple[datetime, object, dict]]] = {}
        for station in fleet.stations.values():
            self._record(station)
            station.on_profiles_changed = self._record

    def _record(self, station) -> None:
        store = dataclasses.replace(station.profiles, profiles=list(station.profiles.profiles))
        self.records.setdefault(station.spec.station_id, []).append(
            (self.clock.now(), store, station._tx_contexts()))

    def limit_w(self, ref, at: datetime) -> float:
        """The connector's limit in force at `at` (three phases), as installed then."""
        station = self.fleet.station(ref.station_id)
        earlier = [r for r in self.records[ref.station_id] if r[0] <= at]
        _, store, contexts = earlier[-1] if earlier else self.records[ref.station_id][0]
        limit = store.limit_w(ref.connector_id, at, contexts.get(ref.connector_id),
                              voltage_v=station.spec.voltage_v, phases_in_use=3)
        maximum = station.connectors[ref.connector_id].spec.max_current_a \
            * station.spec.voltage_v * 3
        return maximum if limit is None else min(limit, maximum)

    def excesses(self, since: datetime, until: datetime, step_s: float = 0.25,
                 tol_w: float = 1.0) -> list[str]:
        """Every instant of [since, until] (every `step_s`, and every install) at which a node's
        connectors may draw more than its W limit, each at the highest limit it had within the
        settle time before."""
        grid = []
        moment = since - timedelta(seconds=self.settle_s)
        while moment <= until:
            grid.append(moment)
            moment += timedelta(seconds=step_s)
        grid = sorted(set(grid) | {t for rs in self.records.values() for t, _, _ in rs
                                   if since - timedelta(seconds=self.settle_s) <= t <= until})
        limits = {ref: [self.limit_w(ref, t) for t in grid] for ref in self.topology.refs}
        out = []
        window = timedelta(seconds=self.settle_s)
        for i, at in enumerate(grid):
            if at < since:
                continue
            first = next(k for k, t in enumerate(grid) if t >= at - window)
            node_w = [0.0] * self.topology.n_nodes
            for ref, values in limits.items():
                may_w = max(values[first:i + 1])
                for node in self.topology.ancestors(self.topology.station_node[ref.station_id]):
                    node_w[node] += may_w
            root_w, _ = self.limits.effective_root_limit_w([at], [at + timedelta(seconds=1)])
            for node, load_w in enumerate(node_w):
                cap_w = self.topology.static_limit_w[node]
                if node == 0:
                    cap_w = min(cap_w, float(root_w[0]))
                if load_w > cap_w + tol_w:
                    out.append(f"{at:%H:%M:%S.%f} {self.topology.node_ids[node]}: "
                               f"{load_w:.0f} W may be drawn > {cap_w:.0f} W")
        return out
