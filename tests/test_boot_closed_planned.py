"""A session a station's BootNotification closed may still be charging: the station kept the
transaction (the simulator sends a BootNotification at every reconnect, so at every restart of
ours; `docs/ocpp201.md`, "Implicit closes") and its car runs on the TxProfile it holds until
the station's next message reopens the session. Until then the plan must leave it what that
profile lets it draw.

Found by a SIGKILL probe (docs/promises.md, "Audit, session 24 (kills and restarts)"): after the
restart the reconnect's boot closed two sessions still charging and the first plan gave their
room to a car that had arrived while we were gone - a TxProfile raising it to 32 A, so the
installed profiles summed 39.9 kW under a 30 kW grid - until their next messages reopened them
(a second later there; a meter interval for a 1.6 station). Real SQLite file, the ledger's own
functions, the controller's own planner inputs and planner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge import events as ev
from smartcharge import ledger
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site import plan_inputs
from smartcharge.site.controller import SiteController
from smartcharge.site.planner import make_plan
from smartcharge.site.restore import restore
from smartcharge.site.topology import ConnectorRef
from smartcharge.store import SqliteStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 30_000.0
SITE = Site(name="b", circuits=(Circuit("grid", None, limit_w=GRID_W),),
            stations=(Station("CP1", "grid", (Connector(1), Connector(2))),))
REF1, REF2 = ConnectorRef("CP1", 1), ConnectorRef("CP1", 2)
MAX_W = 32 * 230.0 * 3


async def _restored(tmp_path, status: str | None = None) -> SiteController:
    store = await SqliteStore.open(str(tmp_path / "s.sqlite"))

    def write(tx):
        kept = tx.insert_session(station_id="CP1", connector_id=2, id_tag="T",
                                 start_time=T0, meter_start_wh=0.0, reservation_id=None,
                                 state=ledger.OPEN, at=T0)
        ledger.close_on_reboot(tx, "CP1", T0 + timedelta(minutes=10), MAX_W)
        # a car that arrived after the boot, on the other connector
        return tx.insert_session(station_id="CP1", connector_id=1, id_tag="T",
                                 start_time=T0 + timedelta(minutes=11), meter_start_wh=0.0,
                                 reservation_id=None, state=ledger.OPEN, at=T0), kept

    new, kept = await store.run(write)
    now = T0 + timedelta(minutes=12)
    controller = SiteController(SITE, ManualClock(now))
    await restore(controller, store)
    await store.close()
    assert controller.state.sessions[REF1].transaction_id == new
    assert kept in controller.state.reboot_closed and REF2 not in controller.state.sessions
    controller.state.apply(ev.StationConnected("CP1", now, "ocpp1.6"))
    if status is not None:
        controller.state.apply(ev.ConnectorStatusChanged("CP1", 2, status, "NoError", now))
    return controller


async def test_a_boot_closed_session_keeps_its_room_in_the_plan(tmp_path):
    controller = await _restored(tmp_path)
    inputs = plan_inputs.read_all(controller, controller.clock.now())
    fixed = {s.ref: s.fixed_w for s in inputs.sessions if s.fixed_w is not None}
    # nothing of ours accepted for it is known: what it may draw is its maximum
    assert fixed == {REF2: MAX_W}, inputs.sessions
    plan = make_plan(controller.topology, inputs).plan
    assert plan.connectors[REF1].power_w.max() <= GRID_W - MAX_W + 1.0
    assert plan.fixed_w == {REF2: MAX_W}


async def test_a_boot_closed_connector_seen_available_is_free(tmp_path):
    controller = await _restored(tmp_path, status="Available")
    inputs = plan_inputs.read_all(controller, controller.clock.now())
    assert [s.ref for s in inputs.sessions] == [REF1]
