"""A decrease goes out with the schedule its comparison built (issue 10: building a connector's
schedule twice per decrease was ~5 % of the loop's CPU in a DR event at 1 000 connectors), and
the station installs what the plan says."""

from datetime import UTC, datetime

from smartcharge.clock import AcceleratedClock
from smartcharge.site.dispatch import Dispatcher
from tests.site_e2e import wait_until
from tests.test_dispatch_paced import REFS, six_at_11_kw, six_charging, six_on_the_grid
from tests.test_dispatch_trust import SPEED, limit_w, trust_site

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def test_a_decrease_is_sent_with_the_schedule_its_comparison_built(tmp_path,
                                                                         monkeypatch):
    clock = AcceleratedClock(T0, speed=SPEED)
    async with trust_site(six_on_the_grid(), tmp_path, clock) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await six_charging(server, fleet)
        await six_at_11_kw(server, fleet, clock)

        # counted per round: under CPU load (four workers on two cores, load 11) the guard or
        # the closed loop re-planned once more and a second round built them again, as it must
        built: dict = {}
        rounds: list = []          # held, so that no round's id is reused

        def schedule_for(self, cplan, *args):
            rounds.append(self._newest_round)
            key = (id(self._newest_round), cplan.ref)
            built[key] = built.get(key, 0) + 1
            return original(self, cplan, *args)

        original = Dispatcher._schedule_for

        monkeypatch.setattr(Dispatcher, "_schedule_for", schedule_for)
        controller.ev_cap_w.update({ref: 5_000.0 for ref in REFS[:3]})
        controller.request_replan("test")
        await wait_until(lambda: all(limit_w(fleet, ref) <= 5_000 + 100 for ref in REFS[:3]),
                         10, "5 kW installed")
        await wait_until(lambda: dispatcher.idle, 10, "rounds over")
        assert all(abs(limit_w(fleet, ref) - 11_000) < 100 for ref in REFS[3:])
        # each lowered plan's schedule built once in a round, by its comparison, and sent as
        # it is
        lowered = [(key, n) for key, n in built.items() if key[1] in REFS[:3]]
        assert {ref for (_, ref), _ in lowered} == set(REFS[:3]), built
        assert all(n == 1 for _, n in lowered), built
