"""A raise the station may have taken before its connection dropped counts as installed.

A station that goes away while our SetChargingProfile (an increase) is on its way may have
installed it: like an increase left unanswered (`test_dispatch_trust.py`), it is the upper
bound of what the connector may draw - planned so while the station is offline, and compared
with so once it is back. Before, a raise cut by `StationOffline` was forgotten: the site was
planned as if the connector still drew its old, lower limit. The same for an idle share's
raise and a fail-safe default's raise (cut off, or - a default - left unanswered): they were
counted only once accepted."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.site import steps
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.sim.station import Quirks
from tests.test_dispatch_trust import (REF1, REF2, big_ev, start_three, trust_site,
                                       two_feeders)
from tests.site_e2e import wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def test_a_raise_cut_off_by_a_dropped_connection_counts_as_installed(tmp_path):
    clock = AcceleratedClock(T0, speed=60.0)
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(two_feeders(), tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller = server.controller
        cp2 = fleet.station("CP2")
        await start_three(server, fleet, clock)
        controller.ev_cap_w[REF1] = 3_000.0
        del controller.ev_cap_w[REF2]
        cp2.quirks = Quirks(silent_profiles=True)   # holds the raise (~19 kW) unanswered
        controller.request_replan("test")
        await wait_until(lambda: cp2.profiles_held > 0, 10, "CP2's raise on its way")
        await cp2.go_offline()                      # and the connection drops under it
        await wait_until(lambda: not controller.state.online.get("CP2", True), 10,
                         "CP2 offline")
        control = server.dispatcher.stations["CP2"]
        await wait_until(lambda: 1 in control.sent and max(control.sent[1].limits) > 0
                         and controller.installed.installed_max_w(REF2) > 15_000, 10,
                         "the raise counted as installed")
        await wait_until(lambda: controller.plan is not None and REF2 in controller.plan.fixed_w
                         and controller.plan.fixed_w[REF2] > 15_000, 10,
                         "CP2 planned at the raise while offline")
        assert controller.plan.connectors[REF1].power_at(clock.now()) \
            <= 22_000 - controller.plan.fixed_w[REF2] + 1


async def test_an_idle_shares_raise_cut_off_by_a_dropped_connection_counts_as_installed(
        tmp_path):
    """CP2 idle beside CP1's car on feeder A; CP1's car takes less, CP2's idle share is raised,
    and the connection drops while the raise is on its way: the raise bounds what CP2 may
    draw, as a plan's raise does."""
    clock = AcceleratedClock(T0, speed=60.0)
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(two_feeders(), tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller = server.controller
        await fleet.start(wait_booted_s=10)
        assert await fleet.plug_in("CP1", 1, big_ev(), "DRIVER-1")
        controller.ev_cap_w[REF1] = 20_000.0
        controller.request_replan("test")
        control = server.dispatcher.stations["CP2"]
        await wait_until(lambda: controller.plan is not None and REF1 in controller.plan.connectors
                         and server.dispatcher.idle and 1 in control.idle_layer, 20,
                         "CP2's small idle share")
        before = controller.installed.installed_max_w(REF2)
        cp2 = fleet.station("CP2")
        cp2.quirks = Quirks(silent_profiles=True)   # holds the raise unanswered
        controller.ev_cap_w[REF1] = 3_000.0
        controller.request_replan("test")
        await _hold(cp2, control, 1, "CP2's idle raise on its way")
        await cp2.go_offline()
        await wait_until(lambda: not controller.state.online.get("CP2", True), 10, "CP2 offline")
        await wait_until(lambda: controller.installed.installed_max_w(REF2) > before + 5_000,
                         10, f"the idle raise counted as installed (before: {before} W)")


async def _hold(station, control, stack_level: int, what: str) -> None:
    """A silent station holds (unanswered) the first TxDefaultProfile at `stack_level` it is
    sent (1: an idle share, 0: a fail-safe default); one of another kind before it (an idle
    share moved on at a slot start, under load) is answered."""
    answered = None
    for _ in range(5):
        await wait_until(lambda: station.profiles_held > 0
                         and control.port.last_payload is not answered, 10, what)
        profile = control.port.last_payload["csChargingProfiles"]
        if profile["chargingProfilePurpose"] == "TxDefaultProfile" \
                and profile["stackLevel"] == stack_level:
            return
        answered = control.port.last_payload
        station.profile_answers.set()     # wakes the one held ...
        station.profile_answers.clear()   # ... and holds the next
    raise AssertionError(f"not sent: {what}")


def _default_w(server, ref, at) -> float:
    """What the fail-safe default a connector's station is counted with lets it draw at `at`."""
    dispatcher = server.dispatcher
    control = dispatcher.stations[ref.station_id]
    return steps.value_at(dispatcher.installed.below_steps(control, ref, 3, 1.0, True), at)


async def _default_raise_held(tmp_path, call_timeout_s: float):
    """CP1 and CP2 idle on feeder A; a DR event announced for later on the feeder lowers
    their fail-safe defaults in its window to 0 W; its limit is raised to 16 kW (8 kW each)
    and CP2 holds the raise of its default unanswered. Yields (server, fleet, the event's
    window's middle)."""
    clock = AcceleratedClock(T0, speed=60.0)
    dispatch = DispatchSettings(call_timeout_s=call_timeout_s, retries=0)
    async with trust_site(two_feeders(), tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller = server.controller
        await fleet.start(wait_booted_s=10)
        start = clock.now() + timedelta(hours=2)
        middle = start + timedelta(minutes=30)
        event = DemandResponseEvent("later", start, start + timedelta(hours=1),
                                    limit_w=4_000, circuit_id="feeder-a")
        controller.limits.add_event(event)
        controller.request_replan("dr")
        await wait_until(lambda: server.dispatcher.idle
                         and _default_w(server, REF2, middle) < 1.0, 20,
                         "CP2's default lowered in the window")
        cp2 = fleet.station("CP2")
        cp2.quirks = Quirks(silent_profiles=True)   # holds the raise unanswered
        controller.limits.update_event(replace(event, limit_w=16_000))
        controller.request_replan("dr raised")
        await _hold(cp2, server.dispatcher.stations["CP2"], 0, "CP2's default raise on its way")
        yield server, fleet, middle


async def test_a_default_raise_cut_off_by_a_dropped_connection_counts_as_installed(tmp_path):
    async for server, fleet, middle in _default_raise_held(tmp_path, 60.0):
        await fleet.station("CP2").go_offline()
        await wait_until(lambda: not server.controller.state.online.get("CP2", True), 10,
                         "CP2 offline")
        await wait_until(lambda: _default_w(server, REF2, middle) > 5_000, 10,
                         "the default's raise counted as installed")


async def test_an_unanswered_default_raise_counts_as_installed(tmp_path):
    async for server, fleet, middle in _default_raise_held(tmp_path, 1.0):
        control = server.dispatcher.stations["CP2"]
        # what it was sent is recorded with the answer (none, after 1 s): counted by then
        await wait_until(lambda: min(w for _, w in control.default_sent[1]) > 5_000, 10,
                         "CP2's default raise unanswered")
        assert _default_w(server, REF2, middle) > 5_000
        # (the silent station is set up again later, when its defaults count at its maximum)
