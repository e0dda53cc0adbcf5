"""The guard asks every connector's installed step on every pass; `InstalledLimits.step_of`
keeps it while nothing it is made of changed (s22-msgcost). Kept or not, it must be what
`current_step` makes from the same state: after a newly accepted plan, idle share or default,
a new transaction, an older transaction than the process, and the car's phases learned."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.ocpp.port import Installed
from smartcharge.site.installed import InstalledLimits
from smartcharge.site.state import Session, SiteState
from smartcharge.site.station_control import StationControl
from smartcharge.site.topology import ConnectorRef, SiteTopology

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REF = ConnectorRef("CP1", 1)


def profile(tx: int, amps: float, *, minutes: int = 30, default: bool = False) -> Installed:
    return Installed(transaction_id=tx, start=T0, expires=T0 + timedelta(minutes=minutes),
                     unit="A", phases=3, starts_s=[0, 600], limits=[amps, amps / 2],
                     default=default)


def session(tx: int, started_at: datetime) -> Session:
    return Session(transaction_id=tx, ref=REF, id_tag="T", started_at=started_at,
                   meter_start_wh=0.0, requested_wh=20_000.0,
                   departure=started_at + timedelta(hours=4))


def test_the_kept_step_follows_every_input_it_is_made_of() -> None:
    site = Site(name="kept", circuits=(Circuit("grid", None, limit_w=50_000.0),),
                stations=(Station("CP1", "grid", (Connector(1),)),))
    clock = ManualClock(T0)
    state = SiteState(site)
    state.earlier_transactions_upto = 5        # the store's ids up to 5 came before us
    phases = {"n": 3}
    control = StationControl("CP1")
    view = InstalledLimits(SiteTopology(site), state, lambda ref: (phases["n"], 0, True),
                           clock, 30.0, {"CP1": control})

    def same() -> list:
        kept = view.step_of(REF)
        assert kept == view.current_step(control, REF)
        return kept

    assert view.step_of(REF) is None                        # no default accepted yet
    control.default_layer[1] = profile(0, 16.0, minutes=10 ** 6, default=True)
    first = same()
    assert view.step_of(REF) is first                       # nothing changed: kept
    state.sessions[REF] = session(7, T0 + timedelta(minutes=1))
    control.sent[1] = profile(7, 32.0)                      # its plan accepted
    with_plan = same()
    assert with_plan != first
    control.sent[1] = profile(7, 20.0)                      # a new plan, same transaction
    assert same() != with_plan
    control.idle_layer[1] = profile(0, 10.0, minutes=60, default=True)
    same()
    control.default_layer[1] = profile(0, 8.0, minutes=10 ** 6, default=True)
    same()
    phases["n"] = 1                                         # a single-phase car learned
    one_phase = same()
    state.sessions[REF] = session(8, T0 + timedelta(minutes=2))   # a new transaction
    assert same() != one_phase                              # the old plan is not its own
    state.sessions[REF] = session(5, T0 - timedelta(hours=1))     # older than the process
    older = same()
    assert older[0][1] == view.topology.max_power_w(REF)    # it may run a plan we never sent
    control.sent[1] = replace(profile(5, 6.0))
    same()
