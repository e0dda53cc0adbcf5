"""A limit lowered now: the decreases the site draws under go out before the fail-safe defaults
that follow the limit (issue 10: at 1 000 connectors the defaults are ~1 000 of an event's ~1 400
requests, and each station sent its plan and then its two defaults in one sending slot, so the
last stations' plans waited behind the first stations' defaults). A default above which a plan
or an idle share is in force changes nothing drawn before the plans' common end; one that is
itself in force (nothing above it) is a decrease of what the connector may draw now and goes
with the plans. Every default still goes out in the same round, and the increases still wait
for it (the gates count a station's decreases, defaults included)."""

import asyncio
import json
from datetime import timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.site import dispatch
from smartcharge.site.failsafe import default_in_force
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.site.slots import LATER, NOW, SendingSlots
from smartcharge.sim.station import Quirks
from smartcharge.site.station_control import Sent, StationControl
from tests.installed_limits import connector_limit_w
from tests.site_e2e import wait_until
from tests.test_dispatch_paced import (REFS, T0, six_at_11_kw, six_charging,
                                       six_on_the_grid)
from tests.test_dispatch_trust import SPEED, trust_site


async def _requests_after(dispatcher, after_id: int) -> list[tuple[int, str, str]]:
    """(row id, station, "default" | "other") of every SetChargingProfile audited after
    `after_id`; "default": a fail-safe default (TxDefaultProfile, stack level 0, a connector)."""
    await dispatcher.flush_audit()
    out = []
    for row in await dispatcher.store.run(lambda tx: tx.profiles_sent()):
        if row["id"] <= after_id:
            continue
        payload = json.loads(row["profile_json"])
        profile = payload["csChargingProfiles"]
        default = (profile["chargingProfilePurpose"] == "TxDefaultProfile"
                   and profile["stackLevel"] == 0 and payload["connectorId"] > 0)
        out.append((row["id"], row["station_id"], "default" if default else "other"))
    return out


async def test_a_dr_events_plans_go_out_before_the_fail_safe_defaults(tmp_path, monkeypatch):
    """One sending slot, six charging stations, an event at half the grid's limit starting
    now: every lowered plan is sent before any station's new fail-safe default, and every
    station gets its new default in the same round."""
    monkeypatch.setattr(dispatch, "SEND_CONCURRENCY", 1)
    clock = AcceleratedClock(T0, speed=SPEED)
    async with trust_site(six_on_the_grid(), tmp_path, clock) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await six_charging(server, fleet)
        await six_at_11_kw(server, fleet, clock)
        await dispatcher.flush_audit()
        mark = max(row["id"] for row in await dispatcher.store.run(lambda tx: tx.profiles_sent()))
        rounds = dispatcher.rounds_done
        now = clock.now()
        half_w = len(REFS) * 11_000 / 2
        controller.limits.add_event(DemandResponseEvent(
            "dr", now, now + timedelta(hours=2), limit_w=half_w))
        controller.request_replan("dr")

        def under() -> bool:
            return sum(connector_limit_w(fleet.station(ref.station_id), 1, clock.now())[0]
                       for ref in REFS) <= half_w + 1.0

        await wait_until(lambda: under() and dispatcher.rounds_done > rounds
                         and dispatcher.idle, 10, "the event's round over")
        sent = await _requests_after(dispatcher, mark)
        defaults = [row for row in sent if row[2] == "default"]
        plans = [row for row in sent if row[2] == "other"]
        assert {station for _, station, _ in defaults} == {ref.station_id for ref in REFS}, sent
        assert len({station for _, station, _ in plans}) >= 4, sent   # most come down
        # the plans the site draws under first, then the defaults
        assert max(row_id for row_id, _, _ in plans) < min(row_id for row_id, _, _ in defaults), \
            sent


def _sent(expires) -> Sent:
    return Sent(transaction_id=7, start=T0, expires=expires, unit="A", phases=3,
                starts_s=[0], limits=[16.0])


def test_a_default_in_force_goes_with_the_plans():
    """Which connectors' defaults may wait for the plans: only those under a plan or an idle
    share still in force (the default is what a connector with neither may draw now)."""
    later = T0 + timedelta(minutes=20)
    control = StationControl("CP1")
    control.sent[1] = _sent(later)          # on its plan until later: the default can wait
    control.idle_layer[2] = _sent(later)    # on its idle share: the same
    control.sent[3] = _sent(T0)             # its plan has ended: on its default now
    # 4: nothing sent but the default: on it now
    now = T0 + timedelta(minutes=1)
    assert default_in_force(control, 1, now) is False
    assert default_in_force(control, 2, now) is False
    assert default_in_force(control, 3, now) is True
    assert default_in_force(control, 4, now) is True


def test_a_freed_slot_goes_to_the_oldest_waiter_of_the_most_urgent_level():
    """One slot held; a LATER waiter queued before two NOW waiters (one of them cancelled):
    the live NOW waiter gets it first, then the LATER one; a slot is never lost."""
    async def main():
        slots, order = SendingSlots(1), []
        await slots.acquire()

        async def take(name, level):
            await slots.acquire(level)
            order.append(name)
            await asyncio.sleep(0)
            slots.release()

        later = asyncio.ensure_future(take("later", LATER))
        gone = asyncio.ensure_future(take("gone", NOW))
        now = asyncio.ensure_future(take("now", NOW))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(later, now)
        assert order == ["now", "later"]
        await asyncio.wait_for(slots.acquire(LATER), 1)   # free again
    asyncio.run(main())


async def test_an_overtaken_rounds_later_defaults_are_left_to_the_newer_round(tmp_path,
                                                                              monkeypatch):
    """One sending slot, six stations charging under a DR event; the limit is lowered and CP1
    does not answer its decrease, so every station is busy with that round (its plan queued
    for the slot, its defaults to follow). The limit is lowered again before CP1 answers: the
    older round's defaults not yet sent are obsolete and left to the newer round, which
    compares them again - each station gets one default, the newer one. Before, each older
    default still waited for its slot under the station's lock, the newer round's cut of that
    station waited behind it, and every station was sent its defaults twice."""
    monkeypatch.setattr(dispatch, "SEND_CONCURRENCY", 1)
    # 20x, not 60x: what is counted is dr1's and dr2's rounds only. Under CPU load (four
    # workers on two cores) this took 12-20 s real, at 60x past the plan's slot edge (15 site
    # minutes): another round sent CP1 and CP6 defaults after dr0's, and CP1, silent, held one
    # (4 of 8 copies at once failed so, load 14)
    clock = AcceleratedClock(T0, speed=20.0)
    async with trust_site(six_on_the_grid(), tmp_path, clock,
                          dispatch=dispatch.DispatchSettings(call_timeout_s=60.0, retries=0)
                          ) as (server, fleet):
        controller, dispatcher = server.controller, server.dispatcher
        await six_charging(server, fleet)
        await six_at_11_kw(server, fleet, clock)

        def under(limit_w: float) -> bool:
            return sum(connector_limit_w(fleet.station(ref.station_id), 1, clock.now())[0]
                       for ref in REFS) <= limit_w + 1.0

        now = clock.now()
        controller.limits.add_event(DemandResponseEvent("dr0", now, now + timedelta(hours=3),
                                                        limit_w=48_000))
        controller.request_replan("dr0")
        await wait_until(lambda: under(48_000) and dispatcher.idle, 10, "under dr0")
        await dispatcher.flush_audit()
        mark = max(row["id"] for row in await dispatcher.store.run(lambda tx: tx.profiles_sent()))

        cp1 = fleet.station("CP1")
        cp1.quirks = Quirks(silent_profiles=True)   # holds the one slot with its decrease
        now = clock.now()
        controller.limits.add_event(DemandResponseEvent("dr1", now, now + timedelta(hours=2),
                                                        limit_w=30_000))
        controller.request_replan("dr1")
        await wait_until(lambda: cp1.profiles_held > 0
                         and all(c.lock.locked() for c in dispatcher.stations.values()),
                         10, "every station busy with dr1's round, CP1 silent")
        older = dispatcher._newest_round
        now = clock.now()
        controller.limits.add_event(DemandResponseEvent("dr2", now, now + timedelta(hours=2),
                                                        limit_w=12_000))
        controller.request_replan("dr2")
        await wait_until(lambda: dispatcher._newest_round is not older, 10, "dr2's round begun")
        cp1.quirks = Quirks()
        cp1.profile_answers.set()
        await wait_until(lambda: under(12_000) and dispatcher.idle, 20, "under dr2")

        sent = await _requests_after(dispatcher, mark)
        defaults = sorted(station for _, station, kind in sent if kind == "default")
        assert defaults == sorted(ref.station_id for ref in REFS), sent
