"""An operator asks a 1.6 station for a BootNotification (`trigger-message`, TriggerMessage
BootNotification, OCPP 1.6 5.17): the station sends one on the same connection without
restarting - its transactions go on, under the TxProfiles they run. 1.6 has no boot reason, and
every BootNotification was taken for a reboot: the station's sessions were closed, the site
planned its cars' connectors as idle (the car held at 0 W, its plan replaced by the idle
share, until a meter value of its transaction reopened the session - an hour here) and gave
their power to the others. A BootNotification that answers our accepted TriggerMessage on the
same connection is not a reboot (2.0.1 says so itself: reason Triggered). Real server,
simulated 1.6 stations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.fleet import Fleet
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.topology import ConnectorRef
from tests.site_e2e import big_car, control_server, draws_over, wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GRID_W = 22_000.0
TOKEN = "operator-token"


def _site() -> Site:
    return Site(name="trigger", circuits=(Circuit("grid", None, limit_w=GRID_W),),
                stations=(Station("CP1", "grid", (Connector(1),)),
                          Station("CP2", "grid", (Connector(1),))),
                id_tags=frozenset({"DRIVER-1"}), operator_tokens=frozenset({TOKEN}))


async def test_a_triggered_boot_notification_ends_no_session(tmp_path):
    site = _site()
    clock = AcceleratedClock(T0, speed=60.0)
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=5.0)) as server:
        fleet = Fleet(site, server.ws_url, clock, meter_interval_s=3600, call_timeout_s=5.0,
                      reconnect_min_s=0.05, reconnect_max_s=0.3)
        controller = server.controller
        try:
            await fleet.start(wait_booted_s=10)
            for station_id in ("CP1", "CP2"):
                assert await fleet.plug_in(station_id, 1, big_car(), "DRIVER-1")
            refs = [ConnectorRef("CP1", 1), ConnectorRef("CP2", 1)]
            await wait_until(lambda: all(r in controller.state.sessions for r in refs)
                             and all(5_000 < fleet.draw_w(r.station_id, 1) for r in refs)
                             and fleet.site_draw_w() <= GRID_W + 1, 20,
                             "both cars charging under the grid limit")
            await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
            running = controller.state.sessions[refs[0]].transaction_id
            async with aiohttp.ClientSession() as http:
                async with http.post(
                        f"{server.http_url}/api/stations/CP1/trigger-message",
                        json={"requested_message": "BootNotification"},
                        headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                    assert resp.status == 200, await resp.text()
                    assert (await resp.json())["answer"]["status"] == "Accepted"
            triggered = clock.now()
            await wait_until(lambda: clock.now() > triggered + timedelta(minutes=1), 10,
                             "a minute")
            await wait_until(lambda: server.dispatcher.idle, 10, "every plan dispatched")
            session = controller.state.sessions.get(refs[0])
            assert session is not None and session.transaction_id == running, \
                controller.state.sessions
            # the car under its plan all along, not at the 0 W of an idle connector
            assert fleet.draw_w("CP1", 1) > 5_000, fleet.draws_w()
            over = await draws_over(fleet, clock, GRID_W, minutes=5, every_s=10.0)
            assert over == [], over[:3]
        finally:
            await fleet.stop()
