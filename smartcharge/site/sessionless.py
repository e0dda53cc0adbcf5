"""Connectors drawing without a transaction: planned as fixed loads at what they draw.

A station may charge before or without its StartTransaction (1.6: status `Charging`, MeterValues
without a transactionId; a free-vend station never starts one). Its draw is measured and the
guard counts it, but the plan had no session there: the others kept their room beside it (30.9
kW measured on a 20 kW grid for as long as it drew: docs/promises.md, the 1.6 judge of session
32). A declared connector with no session whose latest sample is fresh (stale_after_s) and above
MIN_DRAW_W comes off the room of every node above it at its measured draw, at every re-plan.

At its draw, not at more: its idle share (what a car arriving may draw, plan.idle_shares) is
still given out of the room the plan leaves, and it may draw that on top - so a station that
obeys what it holds stays within the plan as it rises to it, and one that ignores it (the
judge's held 0 W) is counted at what it draws. A draw that rises by more than RISE_W over what
was last planned re-plans at once, as does the first one seen; a draw that falls under
MIN_DRAW_W or a session starting there ends it (the next re-plan gives the room back). It is
never a session: not billed (the ledger only bills transactions), not listed, sent no
TxProfile (it has no transaction, so dispatch has no plan for it), only counted in the room.

Left out: a connector the site file does not list (its station's maximum is kept free already,
undeclared.py), one with a boot-closed session planned (plan_inputs._boot_closed_inputs), and a
stale sample (the guard counts such a connector idle too).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from smartcharge.site.topology import ConnectorRef

# over meter noise and a station's own standby (tens of W); under any car's smallest rate
# (6 A on one phase, ~1.4 kW)
MIN_DRAW_W = 200.0
# a rise over what was last planned this large (or this fraction of it) re-plans at once
RISE_W = 500.0
RISE_FRACTION = 0.1


class SessionlessDraws:
    """The declared connectors seen drawing without a session, and what each was last
    re-planned for (what a new sample is compared with to decide on a re-plan)."""

    def __init__(self, state, topology, request_replan: Callable[[str], None]) -> None:
        self.state = state
        self.topology = topology
        self.request_replan = request_replan
        self.planned_w: dict[ConnectorRef, float] = {}

    def on_sample(self, ref: ConnectorRef) -> None:
        """A sample came for `ref` (state.MEASUREMENT): re-plan if it starts drawing without
        a session, draws clearly more than it was planned at, or stops."""
        before = self.planned_w.get(ref)
        sample = self.state.measurements.get(ref)
        if ref in self.state.sessions or not self.topology.has(ref) or sample is None:
            self.planned_w.pop(ref, None)   # a session's draw: planned as its car
            return
        watts = sample.power_w
        name = f"{ref.station_id}/{ref.connector_id}"
        if watts > MIN_DRAW_W:
            if before is None or watts > before + max(RISE_W, RISE_FRACTION * before):
                self.planned_w[ref] = watts
                self.request_replan(f"sessionless:{name}")
        elif before is not None:
            del self.planned_w[ref]
            self.request_replan(f"sessionless-ended:{name}")

    def loads_w(self, now: datetime, stale_after_s: float,
                planned: set[ConnectorRef]) -> tuple[tuple[ConnectorRef, float], ...]:
        """(ref, W) of each such connector drawing now (fresh, over MIN_DRAW_W), in site
        order; `planned`: connectors the plan counts already (a session, a boot-closed one)."""
        out = []
        for ref in list(self.planned_w):
            if ref in self.state.sessions:
                del self.planned_w[ref]
                continue
            if ref in planned:
                continue
            watts = self.state.measured_w(ref, now, stale_after_s)
            if watts is None:
                del self.planned_w[ref]   # stale: its next sample is a first one again
            elif watts > MIN_DRAW_W:
                out.append((ref, float(watts)))
        return tuple(sorted(out, key=lambda item: self.topology.index(item[0])))
