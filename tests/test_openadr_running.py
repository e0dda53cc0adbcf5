"""Events that are already running: a SIMPLE event that arrives after its start (2.0b: a start in
the past; 3: the user guide's start "0001-01-01", which is "now") and a running event whose
level a modification raises (2.0b: the next modificationNumber; 3: the event object updated).
Profiles cannot be lowered before the VEN hears of it: from the moment the event is stored, the
stations' installed composite limits go under its limit (at now and for the rest of the event)
within a bounded time, and the measured draw follows. Then smartcharge restarts while the
event runs: the limit is in force before the VEN even reaches the VTN again, and the re-sent
event changes nothing."""

from datetime import timedelta

from smartcharge.openadr.setup import VENS
from tests.openadr_vtn2b import vtn_2b
from tests.openadr_vtn3 import vtn_3
from tests.site_e2e import control_server, wait_until
from tests.test_openadr_2b import (CAP_W, DISPATCH, SETTINGS, _clock, _profiles_sum_w, _site,
                                   charging_site)
from tests.test_openadr_3 import _site3

LEVEL_1_W, LEVEL_2_W = 0.75 * CAP_W, 0.5 * CAP_W
FOLLOW_S = 10.0         # real seconds for a running event's limit to reach every station
GRACE_S = 600.0         # site seconds (10 real at 60x) the draw may take to follow it


def _under(fleet, clock, limit_w: float, minutes: int = 8) -> bool:
    """The installed profiles sum under `limit_w` now and every minute of the next ones."""
    now = clock.now()
    return all(_profiles_sum_w(fleet, now + timedelta(minutes=m)) <= limit_w + 1
               for m in range(minutes + 1))


async def _follow(controller, fleet, clock, dr_id: str, limit_w: float, what: str,
                  told):
    """Wait until the DR event `dr_id` holds `limit_w`, then until the profiles follow it;
    returns `told`, the site moment just before the VTN was told, from which the change is
    a zero-notice one: the limit is in force from the instant the VEN stores it, which this
    polling wait sees only later, and the monitor may sample in between."""
    await wait_until(lambda: (e := controller.limits.event(dr_id)) is not None
                     and e.limit_w == limit_w, 10, f"{what} stored")
    await wait_until(lambda: _under(fleet, clock, limit_w), FOLLOW_S,
                     f"profiles under {limit_w:.0f} W after {what}")
    return told


async def test_2b_running_simple_event_then_raised_by_a_modification_and_a_restart(tmp_path):
    clock = _clock()
    db = tmp_path / "sc.sqlite"
    async with vtn_2b() as vtn:
        site = _site(vtn.url)
        async with charging_site(site, db, clock, "peak") as (server, ven, fleet, monitor):
            controller = server.controller
            await wait_until(lambda: ven.status.state == "online", 10, "VEN online")
            monitor.start()
            assert not _under(fleet, clock, LEVEL_1_W), "the cars charge above SIMPLE 1 first"
            start = clock.now().replace(microsecond=0) - timedelta(minutes=3)
            told = clock.now()
            vtn.simple_event("run-1", start, minutes=20, level=1, intervals=2)
            arrived = await _follow(controller, fleet, clock, "openadr:peak/run-1", LEVEL_1_W,
                                    "the running SIMPLE 1", told)
            event = controller.limits.event("openadr:peak/run-1")
            assert (event.start, event.end) == (start, start + timedelta(minutes=40))
            assert controller.snapshot()["limit_binding"]["id"] == "openadr:peak/run-1"
            await vtn.wait_until(lambda: vtn.opts.get("run-1") == "optIn", what="opt-in")
            # the VTN raises the running event to SIMPLE 2 (modificationNumber 1)
            told = clock.now()
            vtn.modify("run-1", [2.0, 2.0])
            raised = await _follow(controller, fleet, clock, "openadr:peak/run-1", LEVEL_2_W,
                                   "the modification to SIMPLE 2", told)
            assert controller.limits.event("openadr:peak/run-1").start == start
            # reports of the metered load and the limit in force arrive at the VTN
            await vtn.wait_until(lambda: vtn.reports.get("site-load") and any(
                v == LEVEL_2_W / 1000 for _, v in vtn.reports.get("site-limit", [])),
                what="load and limit reports")
            assert ven.status.reports_sent >= 1
            await monitor.stop()
            assert monitor.samples and not monitor.excesses(
                allow_after=[arrived, raised], grace_s=GRACE_S), monitor.excesses()[:5]
        # smartcharge restarts while the event runs (the VTN stays up and sends it again)
        async with control_server(site, db, clock, settings=SETTINGS,
                                  dispatch=DISPATCH) as server:
            controller = server.controller
            assert controller.effective_limit_now()[0] == LEVEL_2_W
            before = controller.limits.events()
            await vtn.wait_until(lambda: len(vtn.registrations) >= 2, what="re-registration")
            await wait_until(lambda: server.app[VENS]["peak"].status.opts.get("run-1")
                             == "optIn", 10, "the re-sent event answered")
            assert controller.limits.events() == before
            assert controller.effective_limit_now()[0] == LEVEL_2_W


async def test_3_simple_event_starting_now_then_raised_by_an_update_and_a_restart(tmp_path):
    clock = _clock()
    db = tmp_path / "sc.sqlite"
    async with vtn_3() as vtn:
        program_id = vtn.add_program("gac")
        site = _site3(vtn.url)
        async with charging_site(site, db, clock, "gac") as (server, ven, fleet, monitor):
            controller = server.controller
            await wait_until(lambda: ven.status.state == "online", 10, "VEN online")
            monitor.start()
            assert not _under(fleet, clock, LEVEL_1_W), "the cars charge above SIMPLE 1 first"
            before = clock.now()
            # an event the VEN cannot read (a malformed duration) is skipped, not a failed poll
            vtn.add_event(program_id, "broken", before, "PT1 hour", "SIMPLE", [3])
            event_id = vtn.add_event(program_id, "now", "0001-01-01T00:00:00Z", "PT20M",
                                     "SIMPLE", [1, 1])
            dr_id = f"openadr:gac/{event_id}"
            arrived = await _follow(controller, fleet, clock, dr_id, LEVEL_1_W,
                                    "the SIMPLE 1 starting now", before)
            event = controller.limits.event(dr_id)
            assert before <= event.start <= clock.now()
            assert event.end - event.start == timedelta(minutes=40)
            assert ven.status.state == "online" and ven.status.last_error is None
            # the business logic raises it to SIMPLE 2
            told = clock.now()
            vtn.update_event(event_id, [2, 2], told)
            raised = await _follow(controller, fleet, clock, dr_id, LEVEL_2_W,
                                   "the update to SIMPLE 2", told)
            assert controller.limits.event(dr_id).start == event.start, \
                "an event that started 'now' keeps its start when it is polled again"
            assert controller.snapshot()["limit_binding"]["id"] == dr_id
            # USAGE reports for the event while it runs, with the limit in force
            await vtn.wait_until(lambda: any(
                r["eventID"] == event_id and {p["type"]: p["values"][0] for p in r[
                    "resources"][0]["intervals"][0]["payloads"]}.get(
                    "IMPORT_CAPACITY_LIMIT") == LEVEL_2_W / 1000 for r in vtn.reports),
                what="a USAGE report with the raised limit")
            # the energy the site drew since the last report, once the meters show the cars
            # charging again (a reading right after the cars were reshuffled may be 0 W)
            await vtn.wait_until(lambda: any(
                p["type"] == "USAGE" and p["values"][0] > 0 for r in vtn.reports
                if r["eventID"] == event_id
                for p in r["resources"][0]["intervals"][0]["payloads"]),
                what="a USAGE report with the energy drawn")
            await monitor.stop()
            assert monitor.samples and not monitor.excesses(
                allow_after=[arrived, raised], grace_s=GRACE_S), monitor.excesses()[:5]
        # smartcharge restarts while the event runs; the VTN still lists it
        async with control_server(site, db, clock, settings=SETTINGS,
                                  dispatch=DISPATCH) as server:
            controller = server.controller
            assert controller.effective_limit_now()[0] == LEVEL_2_W
            ven = server.app[VENS]["gac"]
            await wait_until(lambda: ven.status.opts.get(event_id) == "optIn", 10,
                             "the event polled again")
            again = controller.limits.event(dr_id)
            assert (again.start, again.end, again.limit_w) == (event.start, event.end,
                                                                LEVEL_2_W)
            assert controller.effective_limit_now()[0] == LEVEL_2_W

