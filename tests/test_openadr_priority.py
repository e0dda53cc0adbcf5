"""Event priority as the specifications say, end to end through real VTNs (2.0b: openleadr's
server; 3: tests/openadr_vtn3.py). Within one program, where events overlap the one with the
higher priority holds alone - here one that allows MORE than the lower-priority event under
it - and the lower one holds again after it (and when it is cancelled); equal priorities keep
the lowest limit; an event of another program (another VTN's priorities are not comparable)
never lifts a limit: the lowest holds. A restart of smartcharge in the middle keeps the same
resolved limits, from the store before the VEN reaches its VTN and after the events are
sent again. No waiting for events to start: they already run when they arrive."""

from dataclasses import replace
from datetime import timedelta

from smartcharge.model import OpenAdrProgram
from smartcharge.openadr.setup import VENS
from tests.openadr_vtn2b import vtn_2b
from tests.openadr_vtn3 import CLIENT_ID, CLIENT_SECRET, vtn_3
from tests.site_e2e import control_server, wait_until
from tests.test_openadr_2b import DISPATCH, SETTINGS, _clock, _site

LOW_W, HIGH_W, SAME_W, OTHER_W = 9_000.0, 15_000.0, 12_000.0, 20_000.0
HOUR = timedelta(hours=1)


def _probes(now) -> dict:
    """Site moments -> the limit [W] and the event that sets it (events laid out below)."""
    return {now + timedelta(minutes=10): (HIGH_W, "high"),   # the higher priority allows more
            now + 2.5 * HOUR: (LOW_W, "low"),                # the low one again after it
            now + 3.5 * HOUR: (LOW_W, "low"),                # equal priority: the lowest
            now + 4.25 * HOUR: (LOW_W, "low")}               # another program: the lowest


def _resolved(controller, now, program: str, ids: dict) -> dict:
    out = {}
    for moment in _probes(now):
        limit_w, source = controller.effective_limit_at(moment)
        name = next((k for k, v in ids.items()
                     if source is not None and source.id == f"openadr:{program}/{v}"), None)
        out[moment] = (limit_w, name)
    return out


def _two_programs_2b(url: str, other_url: str):
    site = _site(url)
    other = replace(site.openadr[0], program="other", vtn_url=other_url)
    return replace(site, openadr=(site.openadr[0], other))


async def test_2b_priority_within_a_program_not_across_programs_and_a_restart(tmp_path):
    clock = _clock()
    db = tmp_path / "sc.sqlite"
    ids = {k: k for k in ("low", "high", "same")}
    async with vtn_2b() as vtn, vtn_2b() as other:
        site = _two_programs_2b(vtn.url, other.url)
        async with control_server(site, db, clock, settings=SETTINGS,
                                  dispatch=DISPATCH) as server:
            await vtn.wait_until(lambda: vtn.registrations, what="registration")
            await other.wait_until(lambda: other.registrations, what="registration (other)")
            now = clock.now().replace(microsecond=0)
            # 2.0b: 1 is the highest priority, 0 "none" (the lowest)
            vtn.capacity_event("low", now - HOUR, 360, LOW_W / 1000, priority=0)
            vtn.capacity_event("high", now - HOUR / 2, 150, HIGH_W / 1000, priority=1)
            vtn.capacity_event("same", now + 3 * HOUR, 60, SAME_W / 1000, priority=0)
            other.capacity_event("far", now + 4 * HOUR, 30, OTHER_W / 1000, priority=1)
            await vtn.wait_until(lambda: all(vtn.opts.get(k) == "optIn" for k in ids),
                                 what="opt-ins")
            await other.wait_until(lambda: other.opts.get("far") == "optIn", what="opt-in")
            assert _resolved(server.controller, now, "peak", ids) == _probes(now)
        # smartcharge restarts in the middle of the high-priority event
        async with control_server(site, db, clock, settings=SETTINGS,
                                  dispatch=DISPATCH) as server:
            controller = server.controller
            assert _resolved(controller, now, "peak", ids) == _probes(now)   # from the store
            assert controller.effective_limit_now()[0] == HIGH_W
            await vtn.wait_until(lambda: len(vtn.registrations) >= 2, what="re-registration")
            ven = server.app[VENS]["peak"]
            await wait_until(lambda: all(ven.status.opts.get(k) == "optIn" for k in ids), 10,
                             "the re-sent events answered")
            assert _resolved(controller, now, "peak", ids) == _probes(now)
            # the VTN cancels the high-priority event: the low one holds in its window again
            vtn.cancel("high")
            await wait_until(lambda: controller.effective_limit_now()[0] == LOW_W, 10,
                             "the low-priority limit back")


async def test_3_priority_within_a_program_not_across_programs_and_a_restart(tmp_path):
    clock = _clock()
    db = tmp_path / "sc.sqlite"
    async with vtn_3() as vtn:
        gac, dso = vtn.add_program("gac"), vtn.add_program("dso")
        base = OpenAdrProgram(program="gac", version="3", vtn_url=vtn.url, ven_name="depot",
                              poll_interval_s=0.2, report_interval_s=0.5,
                              randomize_start=False, client_id=CLIENT_ID,
                              client_secret=CLIENT_SECRET)
        site = replace(_site("http://unused"), openadr=(base, replace(base, program="dso")))
        async with control_server(site, db, clock, settings=SETTINGS,
                                  dispatch=DISPATCH) as server:
            now = clock.now().replace(microsecond=0)

            def event(program_id, name, start, duration, limit_w, priority):
                return vtn.add_event(program_id, name, start, duration,
                                     "IMPORT_CAPACITY_LIMIT", [limit_w / 1000], units="KW",
                                     priority=priority)
            # 3: a lower number is a higher priority, none the lowest
            ids = {"low": event(gac, "low", now - HOUR, "PT6H", LOW_W, None),
                   "high": event(gac, "high", now - HOUR / 2, "PT150M", HIGH_W, 1),
                   "same": event(gac, "same", now + 3 * HOUR, "PT1H", SAME_W, None)}
            far = event(dso, "far", now + 4 * HOUR, "PT30M", OTHER_W, 0)
            vens = server.app[VENS]
            await wait_until(lambda: all(vens["gac"].status.opts.get(v) == "optIn"
                                         for v in ids.values())
                             and vens["dso"].status.opts.get(far) == "optIn", 10,
                             "the events applied")
            assert _resolved(server.controller, now, "gac", ids) == _probes(now)
        # smartcharge restarts in the middle of the high-priority event
        async with control_server(site, db, clock, settings=SETTINGS,
                                  dispatch=DISPATCH) as server:
            controller = server.controller
            assert _resolved(controller, now, "gac", ids) == _probes(now)    # from the store
            ven = server.app[VENS]["gac"]
            await wait_until(lambda: all(ven.status.opts.get(v) == "optIn"
                                         for v in ids.values()), 10, "the events polled again")
            assert _resolved(controller, now, "gac", ids) == _probes(now)
            # the VTN deletes the high-priority event: the low one holds in its window again
            vtn.delete_event(ids["high"])
            await wait_until(lambda: controller.effective_limit_now()[0] == LOW_W, 10,
                             "the low-priority limit back")
