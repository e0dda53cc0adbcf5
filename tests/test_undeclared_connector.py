"""A station that reports a session on a connector its site entry does not declare (1.6
connectorId 3, 2.0.1 EVSE 3, where the site file lists 1-2): its draw is counted under the
station's node by the guard and the site reading, and its station's maximum is kept free above
the station from the moment the connector is seen, idle or charging, so the feeder it hangs
under stays within its limit even when a car starts there without notice. Its session is
billed like any other."""

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from smartcharge.sim.ev import SimEV
from smartcharge.sim.fleet import Fleet
from tests.site_e2e import LoadMonitor, control_server, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SPEED = 120.0
FEEDER_W = 20_000.0
STATION_MAX_W = 14_000.0      # CP1's own maximum: what bounds its undeclared connector


def _sites() -> tuple[Site, Site]:
    """(what the site file says, what is really there): CP1 has a third connector."""
    def site(cp1_connectors):
        return Site(name="undeclared",
                    circuits=(Circuit("grid", None, limit_w=100_000),
                              Circuit("feeder", "grid", limit_w=FEEDER_W)),
                    stations=(Station("CP1", "feeder", cp1_connectors,
                                      max_power_w=STATION_MAX_W),
                              Station("CP2", "feeder", (Connector(1),))),
                    id_tags=frozenset({"DRIVER-1"}),
                    session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))
    return (site((Connector(1), Connector(2))),
            site((Connector(1), Connector(2), Connector(3))))


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_undeclared_connector_is_counted_and_planned_around(tmp_path, version, caplog):
    clock = AcceleratedClock(T0, speed=SPEED)
    declared, physical = _sites()
    dispatch = DispatchSettings(call_timeout_s=2.0, retries=0, settle_s=5.0)
    async with control_server(declared, tmp_path / "sc.sqlite", clock,
                              settings=ControllerSettings(stale_after_s=120.0),
                              dispatch=dispatch) as server:
        controller = server.controller
        fleet = Fleet(physical, server.ws_url, clock, meter_interval_s=20, reconnect_min_s=0.05,
                      reconnect_max_s=0.3, call_timeout_s=30.0,
                      ocpp_versions={"CP1": version, "CP2": version})
        # what the stations under the feeder really draw, summed over every connector they have
        # (declared or not), judged against the feeder below
        monitor = LoadMonitor(fleet, clock, lambda at: FEEDER_W)
        hidden = ConnectorRef("CP1", 3)
        try:
            await fleet.start(wait_booted_s=10)
            control = server.dispatcher.stations
            await wait_until(lambda: all(control[s].default_layer for s in ("CP1", "CP2")), 10,
                             "both stations set up (before, a car draws what it likes)")
            # a car that takes everything the feeder gives, under the site's control: all but
            # CP1's maximum, kept free above CP1 for its connector 3 (idle: a start there
            # needs nobody's leave)
            fast = SimEV(capacity_wh=100_000, soc=0.1, max_power_w_by_phases={1: 7_400.0,
                                                                              3: 22_000.0})
            assert await fleet.plug_in("CP2", 1, fast, "DRIVER-1")
            room_w = FEEDER_W - STATION_MAX_W
            await wait_until(lambda: room_w - 500 < fleet.draw_w("CP2", 1) <= room_w + 1, 20,
                             "CP2's car taking the feeder")
            # a car on the connector the site file does not list: the feeder holds from its
            # first moment, not only once the plan has reacted
            monitor.start()
            hidden_car = SimEV(capacity_wh=100_000, soc=0.1,
                               max_power_w_by_phases={1: 7_400.0, 3: 11_000.0})
            assert await fleet.plug_in("CP1", 3, hidden_car, "DRIVER-1")
            await wait_until(lambda: hidden in controller.state.sessions, 10,
                             "its session known")
            await wait_until(lambda: fleet.draw_w("CP1", 3) > 10_000, 20, "it draws")
            await wait_until(lambda: controller.state.measured_w(
                hidden, clock.now(), 120.0) is not None, 20, "its draw metered")
            # the plan has reacted: it holds the connector as a fixed load, dispatched, the
            # settle time passed (waiting for the next re-plan instead took a slot: 7 s real)
            await wait_until(lambda: controller.plan is not None
                             and hidden in controller.plan.fixed_w, 10, "planned around")
            await wait_until(lambda: server.dispatcher.idle, 10, "the plan dispatched")
            settled = clock.now() + timedelta(seconds=dispatch.settle_s + 30)
            await wait_until(lambda: clock.now() > settled, 10, "the settle time")
            await wait_until(lambda: clock.now() > settled + timedelta(minutes=2), 10,
                             "two minutes")
            await monitor.stop()
            over = monitor.excesses()
            assert not over, f"feeder over {FEEDER_W} W: {over[:5]}"
            assert fleet.draw_w("CP1", 3) > 10_000      # it really draws: the others made room
            # the guard and the site reading count it under the station's node
            now = clock.now()
            load_w, _, draws = controller.guard.node_loads(now)
            feeder = controller.topology.node_ids.index("feeder")
            assert draws[hidden][0] > 10_000
            assert load_w[feeder] >= draws[hidden][0] + draws[ConnectorRef("CP2", 1)][0] - 1.0
            reading = controller.site_reading()
            assert reading.draws[hidden][0] > 10_000
            # planned as a fixed load, shown as undeclared, warned about
            assert hidden in controller.plan.fixed_w
            shown = [c for c in controller.snapshot()["connectors"]
                     if (c["station_id"], c["connector_id"]) == ("CP1", 3)]
            assert shown and shown[0]["undeclared"] is True and shown[0]["session_id"]
            assert any("not in the site file" in r.getMessage() for r in caplog.records)
            # the fail-safe defaults: once the profiles of this plan have ended (or with us
            # gone), CP2's default for a car and all CP1 may draw (its station maximum, the
            # only bound on connector 3) fit under the feeder together
            later = clock.now() + timedelta(hours=6)
            cp1, cp2 = fleet.station("CP1"), fleet.station("CP2")
            cp1_max_w = cp1.profiles.station_limit(later).to_w(230.0, 3)
            cp2_default_w = cp2.profiles.limit_w(1, later, None, voltage_v=230.0,
                                                 phases_in_use=3)
            assert cp1_max_w == pytest.approx(STATION_MAX_W, abs=100.0)   # sent in A
            assert cp1_max_w + cp2_default_w <= FEEDER_W + 1.0, (cp1_max_w, cp2_default_w)
            # billed like any other: the car leaves, its session is stopped with its energy
            delivered_wh = hidden_car.charged_wh
            await fleet.unplug("CP1", 3)
            await wait_until(lambda: hidden not in controller.state.sessions, 10,
                             "its session stopped")
            with sqlite3.connect(tmp_path / "sc.sqlite") as db:
                rows = db.execute("SELECT state, energy_wh FROM sessions WHERE station_id = "
                                  "'CP1' AND connector_id = 3").fetchall()
            assert len(rows) == 1 and rows[0][0] == "stopped", rows
            assert rows[0][1] == pytest.approx(delivered_wh, abs=50.0)
        finally:
            await monitor.stop()
            await fleet.stop()


async def test_undeclared_is_a_fixed_load_at_the_station_maximum_and_connector_0_is_not():
    """Fed domain events directly: an undeclared connector with a session is planned at its
    station's maximum until it is metered (missing is not zero), counted by the guard at its
    fresh sample then; the station's main meter (connector 0) is no connector of its own."""
    from smartcharge import events as ev
    from smartcharge.site.controller import SiteController

    clock = AcceleratedClock(T0, speed=1.0)
    declared, _ = _sites()
    controller = SiteController(declared, clock)
    hidden = ConnectorRef("CP1", 3)
    for sid in ("CP1", "CP2"):
        controller.on_event(ev.StationBooted(sid, clock.now(), True, "v", "m"))
    controller.on_event(ev.MeterSampled("CP1", 0, None, clock.now(), "Sample.Periodic",
                                        power_w=9_000.0, received_at=clock.now()))
    assert ConnectorRef("CP1", 0) not in controller.state.undeclared
    controller.on_event(ev.SessionStarted("CP2", 1, 1, "TAG", 0.0, clock.now()))
    controller.on_event(ev.SessionStarted("CP1", 3, 2, "TAG", 0.0, clock.now()))
    assert list(controller.state.undeclared) == [hidden]
    await controller.replan({"test"})
    assert controller.plan.fixed_w[hidden] == pytest.approx(STATION_MAX_W)
    cp2 = controller.plan.connectors[ConnectorRef("CP2", 1)].power_at(clock.now())
    assert cp2 <= FEEDER_W - STATION_MAX_W + 1e-6
    feeder = controller.topology.node_ids.index("feeder")
    load_w, load_a, draws = controller.guard.node_loads(clock.now())
    assert draws[hidden] == (STATION_MAX_W, "stale")     # not metered yet: its maximum
    for _ in range(2):   # twice: the reading's instant is one both were sampled before
        controller.on_event(ev.MeterSampled("CP1", 3, 2, clock.now(), "Sample.Periodic",
                                            power_w=7_000.0, received_at=clock.now()))
        controller.on_event(ev.MeterSampled("CP2", 1, 1, clock.now(), "Sample.Periodic",
                                            power_w=5_000.0, received_at=clock.now()))
    load_w, load_a, draws = controller.guard.node_loads(clock.now())
    assert draws[hidden] == (7_000.0, "fresh")
    assert load_w[feeder] >= 7_000.0 and load_a[feeder].min() >= 7_000.0 / (3 * 230) - 1e-6
    reading = controller.site_reading()
    assert reading.draws[hidden][0] == pytest.approx(7_000.0)
    assert reading.load_w == pytest.approx(12_000.0)    # not the main meter's 9 kW on top


def test_failsafe_room_for_the_station_maximum_on_a_feeder_limited_in_amps():
    """A breaker in A: the fail-safe shares of the others and the current CP1's maximum allows
    (balanced, what its ChargePointMaxProfile lets through) fit under it together."""
    from smartcharge.site import undeclared
    from smartcharge.site.topology import SiteTopology

    site = Site(name="amps", circuits=(Circuit("grid", None, limit_w=100_000),
                                       Circuit("feeder", "grid", limit_a=40)),
                stations=(Station("CP1", "feeder", (Connector(1),), max_current_a=20),
                          Station("CP2", "feeder", (Connector(1),)),
                          Station("CP3", "feeder", (Connector(1),))))
    topology = SiteTopology(site)
    seen = [ConnectorRef("CP1", 2), ConnectorRef("CP1", 0), ConnectorRef("CP9", 1)]
    assert undeclared.reserve_a(topology, seen[1:]) is None    # main meter, unknown station
    node_a = undeclared.reserve_a(topology, seen)
    node_w = undeclared.reserve_w(topology, seen, tuple(topology.static_limit_w))
    shares = topology.default_shares(node_limit_w=node_w, node_limit_a=node_a)
    others_a = sum(shares[ConnectorRef(s, 1)][1] for s in ("CP2", "CP3"))
    assert others_a + 20.0 <= 40.0 + 1e-6
    assert min(shares[ConnectorRef(s, 1)][1] for s in ("CP2", "CP3")) >= 6.0   # still usable
    before = topology.default_shares()
    assert sum(before[ConnectorRef(s, 1)][1] for s in ("CP2", "CP3")) + 20.0 > 40.0


def _wide_site() -> Site:
    """A feeder with room for CP1's maximum and more: 30 kW, CP1 14 kW (a 10 A connector
    listed), CP2 two connectors."""
    return Site(name="undeclared-wide",
                circuits=(Circuit("grid", None, limit_w=100_000),
                          Circuit("feeder", "grid", limit_w=30_000)),
                stations=(Station("CP1", "feeder", (Connector(1, max_current_a=10),
                                                    Connector(2)),
                                  max_power_w=STATION_MAX_W),
                          Station("CP2", "feeder", (Connector(1), Connector(2)))),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))


@pytest.mark.parametrize("hidden_charging", [False, True])
async def test_listed_connectors_charge_beside_an_undeclared_one_and_a_zero_notice_start_fits(
        hidden_charging):
    """CP1 has a connector the site file does not list (3), idle or charging. The station may
    start a transaction on it without asking us, and nothing of ours bounds it but CP1's
    maximum: above CP1 the plan keeps that maximum free whatever connector 3 does, so a
    zero-notice start never takes a feeder over its limit (an idle one was not counted: the
    others filled the feeder). Inside CP1 the station's own maximum profile bounds its total,
    so its listed connectors keep charging (they got nothing while 3 charged)."""
    from smartcharge import events as ev
    from smartcharge.site.controller import SiteController

    clock = AcceleratedClock(T0, speed=1.0)
    site = _wide_site()
    controller = SiteController(site, clock)
    for sid in ("CP1", "CP2"):
        controller.on_event(ev.StationBooted(sid, clock.now(), True, "v", "m"))
    controller.on_event(ev.ConnectorStatusChanged("CP1", 3, "Available", "NoError",
                                                  clock.now()))
    controller.on_event(ev.SessionStarted("CP1", 1, 1, "TAG", 0.0, clock.now()))
    controller.on_event(ev.SessionStarted("CP2", 1, 2, "TAG", 0.0, clock.now()))
    controller.on_event(ev.SessionStarted("CP2", 2, 4, "TAG", 0.0, clock.now()))
    if hidden_charging:
        controller.on_event(ev.SessionStarted("CP1", 3, 3, "TAG", 0.0, clock.now()))
    await controller.replan({"test"})
    plan, now = controller.plan, clock.now()
    listed = plan.connectors[ConnectorRef("CP1", 1)].power_at(now)
    assert listed > 1_000.0
    # what the others may draw before the next plan (their plans, the idle shares) and all
    # CP1 may draw fit under the feeder
    others_w = sum(p.power_at(now) for ref, p in plan.connectors.items()
                   if ref.station_id != "CP1")
    others_w += sum(w for ref, w in plan.idle_w.items() if ref.station_id != "CP1")
    assert others_w + STATION_MAX_W <= 30_000.0 + 1e-6, others_w
    assert plan.root_limit_w == pytest.approx(100_000.0)


async def test_a_restart_keeps_the_room_for_an_undeclared_connector(tmp_path):
    """CP1 reported connector 3 (idle) before the server restarted. After the restart nothing
    has said so again (a reconnect without a reboot sends no status that did not change), yet
    its station's maximum must still be kept free above it - in the plan and in the others'
    fail-safe defaults: the set of such connectors lived in memory only, and the defaults sent
    after the restart left no room for it."""
    import json

    import aiohttp

    from smartcharge.site import undeclared

    clock = AcceleratedClock(T0, speed=1.0)
    declared, _ = _sites()
    db = tmp_path / "sc.sqlite"
    async with control_server(declared, db, clock) as server, aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.ws_url}/CP1", protocols=("ocpp1.6",)) as ws:
            for frame in ([2, "b", "BootNotification", {"chargePointVendor": "V",
                                                        "chargePointModel": "M"}],
                          [2, "s", "StatusNotification", {"connectorId": 3,
                                                          "errorCode": "NoError",
                                                          "status": "Available"}]):
                await ws.send_str(json.dumps(frame))
                while (answer := json.loads((await ws.receive(timeout=5)).data))[1] != frame[1]:
                    await ws.send_str(json.dumps([4, answer[1], "NotSupported", "", {}]))
        assert ConnectorRef("CP1", 3) in server.controller.state.undeclared
    async with control_server(declared, db, clock) as server:
        controller = server.controller
        assert list(controller.state.undeclared) == [ConnectorRef("CP1", 3)]
        assert undeclared.station_reserves_w(controller.state, controller.topology) == (
            ("CP1", STATION_MAX_W),)
