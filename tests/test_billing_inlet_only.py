"""A station whose meter reports its registers only at another location than the outlet.

`location: Inlet` on every value is valid OCPP and common on single-connector stations (the
one meter sits at the grid inlet). The outlet-only rule (tests/test_billing_locations.py) left
such a session unbilled (`null`, `unverifiable`) where it was billed 4 kWh before, and its
live energy, power and current unknown (found by the session 21 review). The rule now: the
outlet's registers when the session has any; otherwise one other location's, the same one for
the whole chain - never two locations mixed in one chain (the bug the outlet rule fixed)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ocpp.v16 import call

from smartcharge import ledger, store_obligations as ob
from smartcharge.events import MeterSampled, SessionStarted
from smartcharge.metering import (
    ENERGY_REGISTER,
    billed_location,
    billed_registers,
    parse_meter_values,
)
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.state import SiteState
from smartcharge.store import SqliteStore
from tests.conftest import ocpp_time
from tests.v201_billing import sessions, tx_event
from tests.v201_fixtures import station201

MIN = timedelta(minutes=1)
POWER, CURRENT = "Power.Active.Import", "Current.Import"


def flags(session):
    return set(session.flags.split(",")) - {""}


def at_inlet(event):
    """The event with every sampled value at the inlet."""
    for meter_value in event.meter_value or []:
        for sampled in meter_value["sampled_value"]:
            sampled["location"] = "Inlet"
    return event


def _inlet_sample(k: int, *, text: bool = False, ev_register: bool = False) -> list[dict]:
    """The inlet's register (k kWh), power and L1 current; with `ev_register` also the car's
    register (5 % lost on the way: two chains that must not be read as one)."""
    def v(x):
        return str(x) if text else x
    values = [{"value": v(1000 * k), "measurand": ENERGY_REGISTER, "location": "Inlet"},
              {"value": v(7000 + k), "measurand": POWER, "location": "Inlet"},
              {"value": v(10 + k), "measurand": CURRENT, "phase": "L1", "location": "Inlet"}]
    if ev_register:
        values.append({"value": v(950 * k), "measurand": ENERGY_REGISTER, "location": "EV"})
    return values


async def test_2_0_1_inlet_only_is_billed_and_read_live(harness, t0):
    station = await station201(harness)
    await station.send(at_inlet(tx_event("Started", "tx-I", 0, t0, register_wh=1000)))
    for k in range(2, 6):
        at = t0 + 5 * k * MIN
        await station.send(replace(tx_event("Updated", "tx-I", k - 1, at), meter_value=[
            {"timestamp": ocpp_time(at), "sampled_value": _inlet_sample(k)}]))
    [session] = await sessions(harness)
    # the live session, as a restart rebuilds it from the store
    registers = await harness.store.run(
        lambda tx: ob.registers_received(tx, session.transaction_id))
    assert [row[1] for row in registers] == [1000.0, 2000.0, 3000.0, 4000.0, 5000.0]
    draw = await harness.store.run(
        lambda tx: ob.latest_samples(tx, session.transaction_id, (POWER, CURRENT)))
    assert {(r["measurand"], r["value_si"]) for r in draw} >= {(POWER, 7005.0), (CURRENT, 15.0)}
    # the live events the controller plans with
    live = [e for e in harness.events if isinstance(e, MeterSampled)
            and e.energy_register_wh is not None]
    assert [e.energy_register_wh for e in live][-4:] == [2000.0, 3000.0, 4000.0, 5000.0]
    assert live[-1].power_w == 7005.0 and live[-1].current_a[0] == 15.0
    await station.send(at_inlet(tx_event("Ended", "tx-I", 5, t0 + 30 * MIN, register_wh=5000)))
    [session] = await sessions(harness)
    assert session.energy_wh == 4000, (session.energy_wh, flags(session))
    assert session.energy_method == "registers"
    assert not flags(session) & {"no_stop_register", "unverifiable"}, flags(session)


async def test_2_0_1_inlet_and_car_registers_bill_one_chain(harness, t0):
    """No outlet register, but the inlet's and the car's: one of them is billed (the inlet's),
    never both as one chain (each step between them would read as a meter reset)."""
    station = await station201(harness)
    await station.send(at_inlet(tx_event("Started", "tx-J", 0, t0, register_wh=1000)))
    for k in range(2, 6):
        at = t0 + 5 * k * MIN
        await station.send(replace(tx_event("Updated", "tx-J", k - 1, at), meter_value=[
            {"timestamp": ocpp_time(at), "sampled_value": _inlet_sample(k, ev_register=True)}]))
    await station.send(tx_event("Ended", "tx-J", 5, t0 + 30 * MIN))   # no End register
    [session] = await sessions(harness)
    assert session.energy_wh == 4000, (session.energy_wh, flags(session))
    assert "meter_reset" not in flags(session)
    live = [e.energy_register_wh for e in harness.events if isinstance(e, MeterSampled)
            and e.energy_register_wh is not None]
    assert set(live) <= {1000.0 * k for k in range(1, 6)}, live


async def test_1_6_inlet_only_is_billed(harness, t0):
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 1000, t0)).transaction_id
    for k in range(2, 6):
        await station.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[
            {"timestamp": ocpp_time(t0 + 5 * k * MIN),
             "sampledValue": _inlet_sample(k, text=True)}]), suppress=False)
    live = [e for e in harness.events if isinstance(e, MeterSampled)
            and e.energy_register_wh is not None]
    assert [e.energy_register_wh for e in live] == [2000.0, 3000.0, 4000.0, 5000.0]
    assert live[-1].power_w == 7005.0 and live[-1].current_a[0] == 15.0
    await station.call(call.StopTransaction(meter_stop=5000, timestamp=ocpp_time(t0 + 30 * MIN),
                                            transaction_id=tx_id), suppress=False)
    [session] = await sessions(harness)
    assert session.energy_wh == 4000
    assert "samples_disagree" not in flags(session), flags(session)


async def test_1_6_inlet_only_offline_start_billed_from_the_inlet_chain(harness, t0):
    """meterStart 0 from a station that started offline, its meter at 1 002 kWh 10 minutes
    later (inlet only): stop − start is implausible, so the inlet's samples decide."""
    station = await harness.station("CP1")
    tx_id = (await station.start_tx(1, 0, t0)).transaction_id
    for k in range(2, 6):
        await station.call(call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=[
            {"timestamp": ocpp_time(t0 + 5 * k * MIN), "sampledValue": [
                {"value": str(1_000_000 + 1000 * k), "measurand": ENERGY_REGISTER,
                 "location": "Inlet"}]}]), suppress=False)
    await station.call(call.StopTransaction(meter_stop=1_005_000,
                                            timestamp=ocpp_time(t0 + 30 * MIN),
                                            transaction_id=tx_id), suppress=False)
    [session] = await sessions(harness)
    assert session.energy_wh == 3000, (session.energy_wh, flags(session))   # 1 002 -> 1 005 kWh
    assert "unverifiable" not in flags(session)


async def test_the_store_and_the_live_rule_pick_the_same_location(tmp_path):
    """The bill (SQL over the stored samples) and the live energy (`metering` over the
    message) choose the same one location, whatever set of locations a station reports."""
    start = datetime(2026, 1, 1, 8, tzinfo=UTC)
    places = ("Outlet", "Inlet", "Cable", "EV", "Body", "Roof")   # Roof: not OCPP, last
    store = await SqliteStore.open(str(tmp_path / "l.sqlite"))
    try:
        for n, chosen in enumerate(itertools.chain.from_iterable(
                itertools.combinations(places[::-1], size) for size in (1, 2, 3))):
            opened = await store.run(lambda tx: ledger.start_transaction(
                tx, station_id=f"S{n}", connector_id=1, id_tag="T", meter_start_wh=500.0,
                timestamp=start, reservation_id=None, payload={"n": n},
                answer_status="Accepted", at=start, max_power_w=22_000))
            tid = opened.transaction_id
            readings = parse_meter_values([{"timestamp": "2026-01-01T08:10:00Z",
                                            "sampled_value": [
                {"value": str(1000 * (i + 1)), "measurand": ENERGY_REGISTER, "location": where}
                for i, where in enumerate(chosen)]}])
            await store.run(lambda tx: ledger.meter_values(
                tx, station_id=f"S{n}", connector_id=1, station_tx_id=tid, readings=readings,
                payload={"m": n}, at=start, max_power_w=22_000))
            stored = await store.run(lambda tx: tx.register_readings(tid))
            live = billed_registers(readings)
            assert [wh for _, wh in stored] == [r.value_wh for r in live], chosen
            assert {r.location for r in live} == {billed_location(chosen)}
            assert billed_location(chosen) == min(chosen, key=places.index)
    finally:
        await store.close()


def test_live_energy_keeps_to_one_location_across_messages():
    """A station that reports its aligned (clock) samples at its inlet - the whole station's
    register - and its periodic samples at the outlet, in separate messages: the controller's
    live energy is the outlet's chain, as the bill is (not the inlet's steps read as resets)."""
    from smartcharge import events as ev
    from smartcharge.ocpp.sampled import samples_to_events
    from tests.test_site_controller import _controller

    controller, clock = _controller()
    now = clock.now()
    controller.on_event(ev.StationBooted("CP1", now, True, "v", "m"))
    controller.on_event(ev.SessionStarted("CP1", 1, 7, "TAG", 1000.0, now))
    for k in range(1, 5):
        for where, wh, context in (("Outlet", 1000 + 1000 * k, "Sample.Periodic"),
                                   ("Inlet", 50_000 + 2000 * k, "Sample.Clock")):
            readings = parse_meter_values([{
                "timestamp": ocpp_time(now + 5 * k * MIN), "sampled_value": [
                    {"value": str(wh), "measurand": ENERGY_REGISTER, "location": where,
                     "context": context}]}])
            for event in samples_to_events("CP1", 1, 7, readings, now + 5 * k * MIN):
                controller.on_event(event)
    assert controller.state.session_by_id(7).energy_wh == 4000


async def test_a_restart_reloads_the_inlet_chain_and_goes_on_with_it(harness, site, t0):
    """A controller rebuilt from the store (a restart) reloads an inlet-only session's
    registers at their location, so the live inlet samples after it go on with that chain."""
    from smartcharge.clock import ManualClock
    from smartcharge.ocpp.sampled import samples_to_events
    from smartcharge.site.controller import SiteController
    from smartcharge.site.restore import restore

    station = await station201(harness)
    await station.send(at_inlet(tx_event("Started", "tx-R", 0, t0, register_wh=1000)))
    await station.send(replace(tx_event("Updated", "tx-R", 1, t0 + 10 * MIN), meter_value=[
        {"timestamp": ocpp_time(t0 + 10 * MIN), "sampled_value": _inlet_sample(2)}]))
    [row] = await sessions(harness)
    controller = SiteController(site, ManualClock(t0 + 11 * MIN))
    await restore(controller, harness.store)
    assert controller.state.session_by_id(row.transaction_id).energy_wh == 1000
    later = t0 + 20 * MIN
    readings = parse_meter_values([{"timestamp": ocpp_time(later),
                                    "sampled_value": _inlet_sample(3)}])
    for event in samples_to_events("CP1", 1, row.transaction_id, readings, later):
        controller.on_event(event)
    assert controller.state.session_by_id(row.transaction_id).energy_wh == 2000


def test_live_draw_keeps_to_the_outlet_across_messages():
    """The same station's draw: its inlet's power (every connector's) in the clock-aligned
    samples must not stand for the connector's draw beside the outlet's periodic power."""
    from smartcharge import events as ev
    from smartcharge.ocpp.sampled import samples_to_events
    from smartcharge.site.topology import ConnectorRef
    from tests.test_site_controller import _controller

    controller, clock = _controller()
    now = clock.now()
    controller.on_event(ev.StationBooted("CP1", now, True, "v", "m"))
    controller.on_event(ev.SessionStarted("CP1", 1, 7, "TAG", 1000.0, now))
    for seconds, where, power_w, context in ((10, "Outlet", 7000, "Sample.Periodic"),
                                              (20, "Inlet", 40_000, "Sample.Clock")):
        at = now + timedelta(seconds=seconds)
        readings = parse_meter_values([{"timestamp": ocpp_time(at), "sampled_value": [
            {"value": str(power_w), "measurand": POWER, "location": where, "context": context},
            {"value": "60", "measurand": CURRENT, "phase": "L1", "location": where,
             "context": context}]}])
        for event in samples_to_events("CP1", 1, 7, readings, at):
            controller.on_event(event)
    later = now + timedelta(seconds=25)
    assert controller.state.measured_w(ConnectorRef("CP1", 1), later, 180) == 7000


async def test_2_0_1_a_started_at_the_inlet_then_outlet_samples_bill_the_outlet_alone(
        harness, t0):
    """The Started reports only the inlet's register (the whole station: 90 kWh), every later
    value is the outlet's (2 -> 5 kWh): the session is billed from the outlet's chain alone,
    3 kWh - not its stop less the inlet's start, nor the step between them as a meter reset."""
    station = await station201(harness)
    await station.send(at_inlet(tx_event("Started", "tx-K", 0, t0, register_wh=90_000)))
    for k in range(2, 6):
        at = t0 + 5 * k * MIN
        await station.send(tx_event("Updated", "tx-K", k - 1, at, register_wh=1000 * k,
                                    context="Sample.Periodic"))
    await station.send(tx_event("Ended", "tx-K", 5, t0 + 30 * MIN, register_wh=5000))
    [session] = await sessions(harness)
    assert session.energy_wh == 3000, (session.energy_wh, flags(session))
    assert "meter_reset" not in flags(session), flags(session)
    # the site hears where the start register was measured (its live chain: the test below)
    [started] = [e for e in harness.events if isinstance(e, SessionStarted)]
    assert (started.meter_start_wh, started.meter_start_location) == (90_000.0, "Inlet")


def test_live_energy_keeps_an_inlet_start_register_out_of_the_outlet_chain(t0):
    """The site's live view of the same session (the controller plans its need with it): the
    Started's inlet register starts the inlet's chain only, not the outlet's - else the outlet's
    first value reads as a reset from 90 kWh and the car counts 5 kWh delivered for 3."""
    site = Site(name="inlet", circuits=(Circuit("grid", None, limit_w=50_000),),
                stations=(Station("CP1", "grid", (Connector(1),)),))
    state = SiteState(site)
    state.apply(SessionStarted("CP1", 1, 7, "TAG", 90_000.0, t0,
                                  meter_start_location="Inlet"))
    for k in range(2, 6):
        state.apply(MeterSampled("CP1", 1, 7, t0 + 5 * k * MIN, "Sample.Periodic",
                                 energy_register_wh=1000.0 * k))
    [session] = state.sessions.values()
    assert session.energy_wh == 3000.0


async def test_a_restart_keeps_an_inlet_start_register_out_of_the_outlet_chain(
        harness, site, t0):
    """The same session rebuilt from the store (a restart): the Started's inlet register
    (90 kWh) still starts the inlet's chain only - `restore` must say where it was measured,
    else the outlet's first value reads as a reset and the car counts 3 kWh for 1."""
    from smartcharge.clock import ManualClock
    from smartcharge.ocpp.sampled import samples_to_events
    from smartcharge.site.controller import SiteController
    from smartcharge.site.restore import restore

    station = await station201(harness)
    await station.send(at_inlet(tx_event("Started", "tx-L", 0, t0, register_wh=90_000)))
    for k in (2, 3):
        await station.send(tx_event("Updated", "tx-L", k - 1, t0 + 5 * k * MIN,
                                    register_wh=1000 * k, context="Sample.Periodic"))
    [row] = await sessions(harness)
    controller = SiteController(site, ManualClock(t0 + 16 * MIN))
    await restore(controller, harness.store)
    session = controller.state.session_by_id(row.transaction_id)
    assert session.meter_start_location == "Inlet"
    assert session.energy_wh == 1000
    later = t0 + 20 * MIN
    readings = parse_meter_values([{"timestamp": ocpp_time(later), "sampled_value": [
        {"value": "4000", "measurand": ENERGY_REGISTER, "context": "Sample.Periodic"}]}])
    for event in samples_to_events("CP1", 1, row.transaction_id, readings, later):
        controller.on_event(event)
    assert controller.state.session_by_id(row.transaction_id).energy_wh == 2000
