"""Learn a new car's phases in seconds, not at its first periodic sample.

A car on a three-phase connector is planned on unknown phases until a meter sample shows its
per-phase currents (state.py, `_learn_phases`): balanced, and on a station addressed in W sent a
third of its plan (installed.w_factor), since a single-phase car would draw a W limit on one
phase. The first periodic sample can be a whole meter interval (5 min and more) away; on a site
that is short of power that third is power the car is not given. So once per session, when the
plan first offers the car power (it starts drawing), the central system asks its station for a
meter sample now: TriggerMessage MeterValues for the connector (1.6) or EVSE (2.0.1), through the
station's control port (`StationPort.trigger_meter_values`). The sample comes as any MeterValues
does (metered by the same rules: a register reading, never an increment) and teaches the
phases; the plan follows.

Once per session and no retries: a refusal, no answer, or a station gone leaves the car to its
periodic samples; a station that says it does not implement it is not asked again on that
connection (the port remembers). `PhaseProbes` decides who is asked when (no I/O: the quality
benchmark's loop asks it too); `PhaseProbing` asks the stations.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Mapping
from datetime import datetime, timedelta

from smartcharge import events as ev
from smartcharge.clock import Clock
from smartcharge.ocpp.registry import StationOffline
from smartcharge.site import learned
from smartcharge.site.plan import Plan
from smartcharge.site.state import SiteState
from smartcharge.site.station_control import StationControl
from smartcharge.site.topology import ConnectorRef, SiteTopology
from smartcharge.tasks import OwnedTasks

log = logging.getLogger(__name__)

PROBES_AT_ONCE = 16   # stations asked at once (a burst of arrivals after a restart)


class PhaseProbes:
    """Which sessions' stations are asked for a sample, and when: a session on a three-phase
    connector is armed by the first plan that offers its car power now, and due `after_s` of
    site time later (the plan reaching the station, the car following it: IEC 61851-1 gives a
    car seconds); when due, asked only if its phases are still unknown. Each session once."""

    def __init__(self, topology: SiteTopology, state: SiteState, after_s: float) -> None:
        self.topology = topology
        self.state = state
        self.after_s = after_s
        self.waiting: dict[ConnectorRef, int] = {}     # ref -> transaction: not armed yet
        self.due: dict[ConnectorRef, tuple[int, datetime]] = {}   # armed: (transaction, when)

    def on_event(self, event) -> None:
        if isinstance(event, ev.SessionStarted):
            ref = ConnectorRef(event.station_id, event.connector_id)
            live = self.state.sessions.get(ref)   # the state has taken the event (setup.py)
            if live is not None and live.transaction_id != event.transaction_id:
                return   # an older transaction's late start: the running car keeps its probe
            self.due.pop(ref, None)
            if self.topology.has(ref) and self.topology.connector(ref).phases == 3:
                self.waiting[ref] = event.transaction_id
            else:
                self.waiting.pop(ref, None)
        elif isinstance(event, ev.SessionStopped) and event.connector_id is not None:
            ref = ConnectorRef(event.station_id, event.connector_id)
            if self.waiting.get(ref) == event.transaction_id:
                del self.waiting[ref]
            if self.due.get(ref, (None,))[0] == event.transaction_id:
                del self.due[ref]

    def on_plan(self, plan: Plan, now: datetime) -> bool:
        """Arm the waiting sessions this plan offers power now; True if any was armed."""
        armed = False
        for ref, transaction_id in list(self.waiting.items()):
            if ref in plan.fixed_w:
                offered_w = plan.fixed_w[ref]
            else:
                cplan = plan.connectors.get(ref)
                if cplan is None or cplan.transaction_id != transaction_id:
                    continue
                offered_w = cplan.power_at(now)
            if offered_w > 0.0:
                del self.waiting[ref]
                self.due[ref] = (transaction_id, now + timedelta(seconds=self.after_s))
                armed = True
        return armed

    def next_due(self) -> datetime | None:
        return min((at for _, at in self.due.values()), default=None)

    def take_due(self, now: datetime) -> list[tuple[ConnectorRef, int]]:
        """The sessions to ask for a sample now (each only once): due, still running, and
        their car's phases still unknown."""
        out = []
        for ref, (transaction_id, at) in list(self.due.items()):
            if at > now:
                continue
            del self.due[ref]
            session = self.state.sessions.get(ref)
            if session is not None and session.transaction_id == transaction_id \
                    and session.phases_in_use is None:
                out.append((ref, transaction_id))
        return out


class PhaseProbing:
    """Asks the stations (`PhaseProbes` says whom, when) through their control ports. Fed the
    domain events (after the controller: the picture must have the session) and the site
    bus's plans; `run` is its task."""

    def __init__(self, probes: PhaseProbes, stations: Mapping[str, StationControl],
                 clock: Clock) -> None:
        self.probes = probes
        self.stations = stations
        self.clock = clock
        self.answers: Counter[str] = Counter()   # the stations' answers ("Accepted", ...)
        self._wake = asyncio.Event()
        # the sessions due, in order, and the askers taking them: at most PROBES_AT_ONCE
        # tasks, not one per session made in one turn of the loop (a burst of 5 000 arrivals
        # held the loop 33 ms and left thousands of tasks waiting: s22-msgcost)
        self._queued: deque[tuple[ConnectorRef, int]] = deque()
        self._askers = 0
        self._tasks = OwnedTasks(log, "phase probe")

    def on_event(self, event) -> None:
        self.probes.on_event(event)

    def on_learned(self, event) -> None:
        if isinstance(event, learned.PlanMade) and \
                self.probes.on_plan(event.plan, self.clock.now()):
            self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._queued.extend(self.probes.take_due(self.clock.now()))
                while self._queued and self._askers < PROBES_AT_ONCE:
                    self._askers += 1
                    self._tasks.spawn(self._asker())
                await self._until_due()
        finally:
            self._tasks.cancel_all()

    async def _until_due(self) -> None:
        """Until the next session is due, or one is armed."""
        self._wake.clear()
        due = self.probes.next_due()
        waits = [asyncio.ensure_future(self._wake.wait())]
        if due is not None:
            seconds = (due - self.clock.now()).total_seconds()
            waits.append(asyncio.ensure_future(self.clock.sleep(max(seconds, 0.0))))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _asker(self) -> None:
        """Asks the queued sessions' stations one after the other, until none is left."""
        try:
            while self._queued:
                ref, transaction_id = self._queued.popleft()
                try:
                    await self._ask(ref, transaction_id)
                except Exception:   # one station's failure must not leave the others unasked
                    log.exception("station %s connector %d: asking for a meter sample failed",
                                  ref.station_id, ref.connector_id)
        finally:
            self._askers -= 1

    async def _ask(self, ref: ConnectorRef, transaction_id: int) -> None:
        control = self.stations.get(ref.station_id)
        port = control.port if control is not None else None
        if port is None:
            self.answers["no port"] += 1
            return
        try:
            answer = await port.trigger_meter_values(ref.connector_id)
        except StationOffline:
            self.answers["offline"] += 1
            return
        self.answers[answer.value] += 1
        log.info("station %s connector %d: meter sample asked for session %d's phases: %s",
                 ref.station_id, ref.connector_id, transaction_id, answer.value)
