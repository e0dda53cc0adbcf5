"""Cars charged minute by minute at what the site controller offers them: the controller alone
(no stations, no dispatch) on a manual clock, its cars the simulator's (`sim.ev.SimEV`), their
meter samples every METER_S. The set-up of the closed-loop tests (`test_site_taper.py`,
`test_site_need_now.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.ev import SimEV
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CAP_W = 20_000.0
METER_S = 300
VOLTAGE_V = 230.0   # the stations' (model.Station's default)


def two_stations(name: str, cap_w: float = CAP_W) -> Site:
    """CP1 and CP2, one connector each, under a grid cap of `cap_w`."""
    return Site(name=name, circuits=(Circuit("grid", None, limit_w=cap_w),),
                stations=(Station("CP1", "grid", (Connector(1),)),
                          Station("CP2", "grid", (Connector(1),))))


def start_session(controller: SiteController, ref: ConnectorRef, transaction_id: int,
                  at: datetime = T0) -> None:
    """The connector's station booted and a session begun on it (register 0) at `at`."""
    controller.on_event(ev.StationBooted(ref.station_id, at, True, "v", "m"))
    controller.on_event(ev.SessionStarted(ref.station_id, ref.connector_id, transaction_id,
                                          "TAG", 0.0, at))


@dataclass
class Minutes:
    """Per minute: both cars' draw [W]; what the first car was offered and did not take, and
    what it drew [W]."""

    site_w: list[float] = field(default_factory=list)
    unused_w: list[float] = field(default_factory=list)
    taken_w: list[float] = field(default_factory=list)


async def charge_by_minute(site: Site, minutes: int, first: SimEV, second: SimEV, *,
                           settings: ControllerSettings | None = None, told_needs: bool = False,
                           sample_offset_min: int = 0,
                           stays_s: tuple[float, float] | None = None,
                           charging_states: bool = False,
                           dr_events: tuple = (), phase_currents: bool = False) -> Minutes:
    """`first` at CP1 and `second` at CP2 charge minute by minute at what the plan offers;
    their meter samples every METER_S, `sample_offset_min` minutes after each multiple of it;
    a re-plan whenever the controller asks and at every slot (15 min). `told_needs`: each
    session's need is the car's (as a driver tells it); `stays_s`: each driver tells a departure
    this long after T0 too. `charging_states`: the stations say when a car's state changes
    (`ChargingStateChanged`: SuspendedEV once full, Charging while it draws, else SuspendedEVSE),
    as the simulator's do. `dr_events`: demand-response events (`limits.DemandResponseEvent`)
    known from the start. `phase_currents`: the samples carry the per-phase currents of a
    three-phase car (its phases are known from its first sample)."""
    clock = ManualClock(T0)
    controller = SiteController(site, clock, settings)
    cars = {ConnectorRef("CP1", 1): (1, first), ConnectorRef("CP2", 1): (2, second)}
    register = {ref: 0.0 for ref in cars}
    for ref, (tx, car) in cars.items():
        start_session(controller, ref, tx)
        if told_needs:
            controller.state.set_need(tx, requested_wh=car.energy_need_wh)
        if stays_s is not None:
            controller.state.set_need(tx, departure=T0 + timedelta(seconds=stays_s[tx - 1]))
    for event in dr_events:
        controller.limits.add_event(event)
    await controller.replan()
    out = Minutes()
    per_sample_min = METER_S // 60
    said: dict[ConnectorRef, str] = {}
    for minute in range(minutes):
        if controller._replan.is_set() or minute % 15 == 0:
            controller._replan.clear()
            await controller.replan()
        drawn = {}
        for ref, (tx, car) in cars.items():
            offered = controller.allocated_now_w(ref) or 0.0
            drawn[ref] = car.advance(60, offered)
            register[ref] += drawn[ref] / 60
            if car is first:
                out.unused_w.append(offered - drawn[ref])
                out.taken_w.append(drawn[ref])
            state = "SuspendedEV" if car.full else "Charging" if drawn[ref] > 0 \
                else "SuspendedEVSE"
            if charging_states and said.get(ref) != state:
                said[ref] = state
                controller.on_event(ev.ChargingStateChanged(ref.station_id, ref.connector_id,
                                                            tx, state, clock.now()))
        out.site_w.append(sum(drawn.values()))
        clock.advance(60)
        if (minute + 1) % per_sample_min == sample_offset_min:
            for ref, (tx, _) in cars.items():
                per_phase_a = drawn[ref] / (3 * VOLTAGE_V) if phase_currents else None
                controller.on_event(ev.MeterSampled(
                    ref.station_id, ref.connector_id, tx, clock.now(), "Sample.Periodic",
                    energy_register_wh=register[ref], power_w=drawn[ref],
                    current_a=(per_phase_a,) * 3, received_at=clock.now()))
    return out
