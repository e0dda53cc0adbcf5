"""A station whose connection drops while a round waits for it must not end the round.

A round takes its stations when it starts and compares each again under the station's lock
(`dispatch_round._current`). A station busy with an unanswered request when the round began is
compared once that request ends - when its connection drops, after its port is gone: the
comparison read the capabilities of a port that no longer exists (AttributeError), the round
failed, and `DispatchRound.run`'s cleanup cancelled every other station's decreases still on
their way (seen under load in tests/test_site_phase_probe.py: "dispatching plan ... failed").
A station gone has nothing to be sent; what it may draw stays counted as before, and its
profiles go out again when it is back (`control.resend`)."""

import logging
from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.sim.station import Quirks
from tests.test_dispatch_trust import (REF1, REF2, REF3, limit_w, start_three, trust_site,
                                       two_feeders)
from tests.site_e2e import wait_until

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def test_a_station_gone_while_the_round_waits_for_it_ends_nothing_else(tmp_path, caplog):
    clock = AcceleratedClock(T0, speed=60.0)
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(two_feeders(), tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        cp2 = fleet.station("CP2")
        await start_three(server, fleet, clock)
        cp2.quirks = Quirks(silent_profiles=True)   # CP2 hangs on its next request
        controller.ev_cap_w[REF2] = 4_000.0
        controller.request_replan("test")
        await wait_until(lambda: cp2.profiles_held > 0, 10, "CP2 busy with its decrease")
        rounds = dispatcher.rounds_done
        controller.ev_cap_w[REF1] = 5_000.0         # a newer round: CP2 waits for its lock
        controller.request_replan("test")
        await wait_until(lambda: dispatcher.rounds_running > 0 or dispatcher.rounds_done > rounds,
                         10, "the newer round begun")
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="smartcharge.site.dispatch"):
            await cp2.go_offline()                  # its request ends: the round compares it
            await wait_until(lambda: not controller.state.online.get("CP2", True), 10,
                             "CP2 offline")
            await wait_until(lambda: dispatcher.idle, 10, "every round over")
        failed = [r for r in caplog.records if "failed" in r.getMessage()]
        assert not failed, [r.getMessage() for r in failed]



async def test_a_station_whose_capabilities_are_not_read_yet_has_nothing_to_send(tmp_path):
    """A station back on a new connection gets a fresh port whose capabilities are read by its
    set-up; a set-up that fails (offline or unanswered again) leaves it so, and a round taken
    before compares it (first without its lock, or once the set-up let the lock go): the
    comparison read `caps.idle_layer` of None, and the round failed with every other station's
    decreases on their way cancelled (seen under load in tests/test_site_phase_probe.py)."""
    clock = AcceleratedClock(T0, speed=60.0)
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(two_feeders(), tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await start_three(server, fleet, clock)
        control = dispatcher.stations["CP2"]
        # the set-up's first step on a new connection, its capabilities not read (failsafe.py)
        control.port = dispatcher.ports(dispatcher.registry.get("CP2"), dispatcher._record,
                                        voltage_v=dispatcher._voltage_v["CP2"],
                                        unit=control.config_unit,
                                        settings=dispatcher._port_settings)
        assert control.caps is None
        plan = controller.plan
        cplans = [c for ref, c in plan.connectors.items() if ref.station_id == "CP2"]
        assert cplans, "CP2 has a plan to compare"
        assert dispatcher._work(control, plan, cplans) == ([], [])


async def test_one_stations_failure_does_not_hold_the_other_stations_decreases(
        tmp_path, monkeypatch, caplog):
    """Defence in depth for what the two tests above found: any error comparing or sending to
    one station (a defect we have not found yet) ended the whole round, and its cleanup
    cancelled every other station's decreases on their way - a lowered limit then waited for
    the next round. One station's failure is now its own: logged, the others' work goes on.
    The failure is injected into CP1's comparison (its own code path is what the tests above
    check)."""
    clock = AcceleratedClock(T0, speed=60.0)
    dispatch = DispatchSettings(call_timeout_s=60.0, retries=0)
    async with trust_site(two_feeders(), tmp_path, clock, dispatch=dispatch) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await start_three(server, fleet, clock)
        work = type(dispatcher)._work

        def failing_for_cp1(self, control, plan, cplans):
            if control.station_id == "CP1":
                raise RuntimeError("injected: CP1's comparison fails")
            return work(self, control, plan, cplans)

        monkeypatch.setattr(type(dispatcher), "_work", failing_for_cp1)
        controller.ev_cap_w[REF1] = 4_000.0
        del controller.ev_cap_w[REF2]               # CP2 planned into the room CP1 leaves
        controller.ev_cap_w[REF3] = 2_000.0         # CP3 (feeder B) down to its minimum too
        with caplog.at_level(logging.ERROR, logger="smartcharge.site.dispatch"):
            rounds = dispatcher.rounds_done
            controller.request_replan("test")
            await wait_until(lambda: limit_w(fleet, REF3) < 4_500, 10,  # 5 -> 4.14 kW
                             "CP3's decrease, beside CP1's failure")
            await wait_until(lambda: controller.plan.connectors[REF2].power_at(clock.now())
                             > 15_000 and dispatcher.rounds_done > rounds
                             and dispatcher.rounds_running == 0, 10, "CP2's raise's round")
        assert any("CP1" in r.getMessage() for r in caplog.records), \
            [r.getMessage() for r in caplog.records]
        # CP1 was not lowered (its comparison failed): CP2's raise under feeder A waits, as
        # behind a refused decrease, however long after sending it would come into force
        later = clock.now() + timedelta(seconds=120)
        assert limit_w(fleet, REF1) > 10_000
        assert limit_w(fleet, REF1, later) + limit_w(fleet, REF2, later) <= 22_000 + 1
