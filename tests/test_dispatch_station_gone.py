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
from datetime import UTC, datetime

from smartcharge.clock import AcceleratedClock
from smartcharge.site.dispatch import DispatchSettings
from smartcharge.sim.station import Quirks
from tests.test_dispatch_trust import REF1, REF2, start_three, trust_site, two_feeders
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
