"""Judge a full car's retry in seconds, not at its next periodic sample.

A car that declined power (`closed_loop.declines`: ~0 W while offered its minimum, a full
battery) is offered power again after `declined_retry_s`, in case it wants more. It is judged
by its next meter sample: one at ~0 W declines again. Until that sample, up to a meter
interval (5 min and more) away, the power it is offered stands unused; on a site short of power
the others wait for it (the demo day's drivers under the 60 kW event: 6-19 kW offered to full
cars at their hourly retries while 11-16 hungry cars waited, 5- and 9-minute dips:
benchmarks/README.md "s36-quality", "s36-dips"). So when the plan offers a retried car power,
its station is asked for a meter sample (TriggerMessage MeterValues, the phase probe's way:
`phase_probe.PhaseProbing` asks) `after_s` later - once its station has accepted the retried
profile and the car had its settle time under it (`ClosedLoop.offered_minimum`), so the sample
says whether it follows that profile; a car still drawing ~0 then declines again within
seconds. Once per retry; a sample asked before the profile is in force would say nothing, so
the ask waits for it (looked at again every `after_s`, no I/O) while the car is not judged
otherwise (a periodic sample, its session's end).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from smartcharge import events as ev
from smartcharge.site.plan import Plan
from smartcharge.site.topology import ConnectorRef

class RetryProbes:
    """Which retried cars' stations are asked for a sample, and when (no I/O: the quality
    benchmark's loop asks it too). Same interface as `phase_probe.PhaseProbes`."""

    def __init__(self, closed_loop, after_s: float) -> None:
        self.loop = closed_loop
        self.after_s = after_s
        self.armed: dict[ConnectorRef, int] = {}   # ref -> transaction: this retry armed
        self.due: dict[ConnectorRef, tuple[int, datetime]] = {}   # (transaction, when)

    def on_event(self, event) -> None:
        if isinstance(event, (ev.SessionStarted, ev.SessionStopped)) and \
                event.connector_id is not None:
            ref = ConnectorRef(event.station_id, event.connector_id)
            self.armed.pop(ref, None)
            self.due.pop(ref, None)

    def on_plan(self, plan: Plan, now: datetime) -> bool:
        """Arm the retried cars this plan offers at least their minimum now; True if any."""
        retried = self.loop.retried
        for ref in [r for r, tx in self.armed.items() if retried.get(r) != tx]:
            del self.armed[ref]   # judged (or gone): its next retry is armed anew
        armed = False
        for ref, transaction_id in retried.items():
            if self.armed.get(ref) == transaction_id:
                continue
            cplan = plan.connectors.get(ref)
            if cplan is None or cplan.transaction_id != transaction_id:
                continue
            offered_w = cplan.power_at(now)
            if offered_w > 0.0 and offered_w >= cplan.min_power_w - 1e-6:
                self.armed[ref] = transaction_id
                self.due[ref] = (transaction_id, now + timedelta(seconds=self.after_s))
                armed = True
        return armed

    def next_due(self) -> datetime | None:
        return min((at for _, at in self.due.values()), default=None)

    def take_due(self, now: datetime) -> list[tuple[ConnectorRef, int]]:
        """The retried cars to ask for a sample now: due, still retried (not judged by a
        sample meanwhile), and offered their minimum by a profile in force - else looked at
        again `after_s` later."""
        out = []
        for ref, (transaction_id, at) in list(self.due.items()):
            if at > now:
                continue
            del self.due[ref]
            if self.loop.retried.get(ref) != transaction_id:
                continue
            if self.loop.offered_minimum(ref):
                out.append((ref, transaction_id))
            else:
                self.due[ref] = (transaction_id, now + timedelta(seconds=self.after_s))
        return out


class ProbeSet:
    """Several probes' decisions as one (`PhaseProbing` asks whom any of them says): a
    connector due in two at once is asked once."""

    def __init__(self, *probes) -> None:
        self.probes = [p for p in probes if p is not None]

    def on_event(self, event) -> None:
        for probe in self.probes:
            probe.on_event(event)

    def on_plan(self, plan: Plan, now: datetime) -> bool:
        return any([probe.on_plan(plan, now) for probe in self.probes])

    def next_due(self) -> datetime | None:
        return min((at for at in (p.next_due() for p in self.probes) if at is not None),
                   default=None)

    def take_due(self, now: datetime) -> list[tuple[ConnectorRef, int]]:
        out: dict[ConnectorRef, int] = {}
        for probe in self.probes:
            for ref, transaction_id in probe.take_due(now):
                out.setdefault(ref, transaction_id)
        return list(out.items())
