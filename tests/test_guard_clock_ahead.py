"""A station whose clock runs ahead of ours: a sample it took before a decrease, read late, is
not taken for disobedience.

Its stamps are 10 min ahead, so the guard put the sample at the moment it arrived (a stamp is
never later than its arrival) - after the decrease and its settle time when the sample came
late, though the car had drawn its old rate before the decrease. Under CPU load the simulated
stations' samples came that late: "guard: CP1/2 draws 6900 W, more than the 0 W its profiles
allow" and a car planned as a fixed load at its old rate (test_restart_clock_ahead and
test_restart_first_round, 10 of 16 copies at load 12-16). The station's clock offset is known
from its own stamps (ocpp/clock_offset.py): the sample is put where the stamp says on our clock.

A scripted 1.6 station over a real WebSocket against the real server; the guard is asked
directly after each sample (its own pass is throttled)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ocpp.v16 import call

from smartcharge.clock import format_ocpp_time
from smartcharge.site.topology import ConnectorRef
from tests.scripted_16 import TakesProfiles, one_station_site
from tests.site_e2e import wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
AHEAD_S = 600.0
REF = ConnectorRef("CP1", 1)
OLD_W, CAP_W = 11_000.0, 4_000.0


class AheadStation(TakesProfiles):
    """Takes every profile; stamps its messages `AHEAD_S` ahead of the site's clock."""

    def stamp(self, at: datetime | None = None) -> str:
        return format_ocpp_time((at or self.clock.now()) + timedelta(seconds=AHEAD_S))

    async def sample(self, transaction_id: int, power_w: float, at: datetime) -> None:
        await self.call(call.MeterValues(connector_id=1, transaction_id=transaction_id,
                                         meter_value=[{"timestamp": self.stamp(at),
                                                       "sampled_value": [{
                                                           "value": f"{power_w:.0f}",
                                                           "measurand": "Power.Active.Import",
                                                           "unit": "W"}]}]), suppress=False)


def _limit_below(station: AheadStation, watts: float) -> datetime | None:
    """Our time at which the station accepted a profile for connector 1 below `watts` (W, or
    A at 230 V on three phases), None: not yet."""
    for at, profile in station.accepted:
        periods = profile["charging_schedule"]["charging_schedule_period"]
        unit = profile["charging_schedule"]["charging_rate_unit"]
        limit_w = float(periods[0]["limit"]) * (1.0 if unit == "W" else 230.0 * 3)
        if profile["connector_id"] == 1 and limit_w < watts:
            return at
    return None


async def test_a_late_sample_from_before_a_decrease_is_not_disobedience(tmp_path):
    async with one_station_site(tmp_path, AheadStation, "Ahead") as (site, clock, server, station):
        controller = server.controller
        for connector_id in (0, 1):   # two own stamps agree: its clock is 10 min ahead
            await station.call(call.StatusNotification(
                connector_id=connector_id, error_code="NoError", status="Available",
                timestamp=station.stamp()), suppress=False)
        started = await station.call(call.StartTransaction(
            connector_id=1, id_tag="DRIVER-1", meter_start=0, timestamp=station.stamp()),
            suppress=False)
        tx = started.transaction_id
        await station.sample(tx, OLD_W, clock.now())
        await wait_until(lambda: REF in controller.state.sessions, 10, "the session")

        controller.limits.set_operator_cap(CAP_W, since=clock.now())
        controller.request_replan("test")
        await wait_until(lambda: _limit_below(station, CAP_W + 1) is not None, 10,
                         "the decrease accepted")
        decreased = _limit_below(station, CAP_W + 1)
        # the car's settle time runs from the last change the site read it accept (all it
        # can know), not from the station's acceptance of the decrease: under CPU load (load
        # 20-28) the site read that 2-3 site s later, or the round's next change (its
        # defaults) came later still, and a sample 7 s after the station's acceptance was
        # inside the settle time (5 of 48 copies; 12 of 48 waiting on the first read only)
        await wait_until(lambda: server.dispatcher.idle, 10, "the round over")
        changed_at = server.dispatcher.changed_at   # the site's record of accepted changes
        assert changed_at[REF] >= decreased
        settled = changed_at[REF] + timedelta(seconds=site.server.settle_s + 2)
        await wait_until(lambda: clock.now() > settled, 10, "its settle time over")

        # taken a second before the decrease (its old draw), read after the settle time
        await station.sample(tx, OLD_W, decreased - timedelta(seconds=1))
        controller.guard.check()
        assert REF not in controller.overdraw_w, controller.overdraw_w

        # taken after the settle time at its old draw: that is disobedience
        await station.sample(tx, OLD_W, settled)
        controller.guard.check()
        assert REF in controller.overdraw_w
