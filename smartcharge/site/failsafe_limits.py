"""What the fail-safe defaults are sized for, over time: the W limit of every node of the tree
(the grid connection and each circuit; stations keep their own maxima) from each moment a limit
begins or ends, the first from now.

Every limit counts - the site file's, the operator's cap and cap windows, demand-response events
on the grid connection *and on a circuit* (an OpenADR program on a feeder) - so the stations'
defaults carry the periods of every event announced ahead and drop in time even if smartcharge
is gone before it starts; the last entry holds on (back up after the last event). Pure.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from smartcharge.clock import TIMES_UNTIL
from smartcharge.site.limits import SiteLimits
from smartcharge.site.topology import SiteTopology

NodeLimits = tuple[float, ...]   # W per node, in topology order (inf: no W limit)


def node_limits_at(topology: SiteTopology, limits: SiteLimits, moment: datetime) -> NodeLimits:
    """Every node's W limit in force at `moment` (one second of it)."""
    starts, ends = [moment], [moment + timedelta(seconds=1)]
    out = topology.static_limit_w.astype(float).copy()
    root_w, _ = limits.effective_root_limit_w(starts, ends)
    out[0] = min(out[0], float(root_w[0]))
    for circuit_id in limits.circuits_limited() & set(topology.node_ids[1:]):
        values, _ = limits.circuit_limit_w(circuit_id, starts, ends)
        node = topology.node_ids.index(circuit_id)
        out[node] = min(out[node], float(values[0]))
    return tuple(float(v) for v in out)


def node_limit_schedule(topology: SiteTopology, limits: SiteLimits, now: datetime
                        ) -> list[tuple[datetime, NodeLimits]]:
    """[(from, every node's W limit)], the first from `now`, one entry per change."""
    out: list[tuple[datetime, NodeLimits]] = []
    # no change from 2090 on (clock.TIMES_UNTIL): no schedule can carry it in a 32-bit
    # startPeriod, and a limit restored from an older store may end at 9999-12-31T23:59:59
    # (a second later is no datetime: every round's comparison failed)
    changes = [m for m in limits.change_times(now) if m < TIMES_UNTIL]
    for moment in [now] + changes:
        value = node_limits_at(topology, limits, moment)
        if not out or out[-1][1] != value:
            out.append((moment, value))
    return out

