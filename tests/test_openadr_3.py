"""End to end, OpenADR 3: the site's VEN against a specification-following VTN on 127.0.0.1
(tests/openadr_vtn3.py) with OAuth2 client credentials, the real app with simulated stations,
a real SQLite file; the user guide's payloads: 24 x PT1H prices, PT30M capacity limits, SIMPLE
levels, `intervalPeriod` on the event."""

from dataclasses import replace
from datetime import timedelta

from smartcharge.model import OpenAdrProgram
from smartcharge.openadr.setup import VENS
from tests.openadr_vtn3 import CLIENT_ID, CLIENT_SECRET, vtn_3
from tests.site_e2e import control_server, wait_until
from tests.test_openadr_2b import (CAP_W, DISPATCH, SETTINGS, _clock, _profiles_sum_w, _site,
                                   charging_site)


def _site3(vtn_url):
    site = _site("http://unused")
    program = OpenAdrProgram(program="gac", version="3", vtn_url=vtn_url, ven_name="depot",
                             poll_interval_s=0.2, report_interval_s=0.5,
                             randomize_start=False, client_id=CLIENT_ID,
                             client_secret=CLIENT_SECRET)
    return replace(site, openadr=(program,))


async def test_v3_capacity_simple_prices_reports_outage_and_restart(tmp_path):
    clock = _clock()
    db = tmp_path / "sc.sqlite"
    async with vtn_3() as vtn:
        program_id = vtn.add_program("gac")
        site = _site3(vtn.url)
        async with charging_site(site, db, clock, "gac") as (server, ven, fleet, monitor):
            controller = server.controller
            await vtn.wait_until(lambda: vtn.vens, what="the VEN registered")
            await wait_until(lambda: ven.status.state == "online", 10, "VEN online")
            assert vtn.token_requests == 1 and ven.status.ven_id == vtn.vens[0]["id"]
            now = clock.now().replace(microsecond=0)
            start = now + timedelta(minutes=6)
            hour = now.replace(minute=0, second=0)
            prices_id = vtn.add_event(program_id, "day-ahead", hour, "PT1H", "PRICE",
                                      [0.30 if 17 <= (hour.hour + h) % 24 < 21 else 0.12
                                       for h in range(24)], units="KWH")
            cap_id = vtn.add_event(program_id, "congestion", start, "PT30M",
                                   "IMPORT_CAPACITY_LIMIT", [12, 9], units="KW",
                                   priority=1)
            simple_start = start + timedelta(minutes=70)
            simple_id = vtn.add_event(program_id, "simple", simple_start, "PT30M",
                                      "SIMPLE", [1])
            await wait_until(lambda: controller.limits.event(f"openadr:gac/{simple_id}"),
                             10, "events polled")
            first = controller.limits.event(f"openadr:gac/{cap_id}")
            second = controller.limits.event(f"openadr:gac/{cap_id}#1")
            assert (first.start, first.end, first.limit_w, first.priority) == (
                start, start + timedelta(minutes=30), 12_000.0, 1)
            assert (second.start, second.end, second.limit_w) == (
                start + timedelta(minutes=30), start + timedelta(minutes=60), 9_000.0)
            assert controller.limits.event(f"openadr:gac/{simple_id}").limit_w == \
                0.75 * CAP_W
            shown = controller.snapshot()["prices"]
            assert len(shown) >= 23 and {p["source"] for p in shown} == {
                f"openadr:gac/{prices_id}"}
            probes = [(start + timedelta(minutes=m), 12_000.0) for m in (0, 1, 29)] + [
                (start + timedelta(minutes=m), 9_000.0) for m in (30, 59)] + [
                (simple_start + timedelta(minutes=m), 0.75 * CAP_W) for m in (0, 20)]
            await wait_until(lambda: all(_profiles_sum_w(fleet, at) <= limit_w + 1
                                         for at, limit_w in probes), 15,
                             "profiles under every interval's limit")
            assert clock.now() < start, "the profiles must be lowered before the start"
            # (while an event runs: USAGE reports, the limit that binds, the draw, a restart -
            # tests/test_openadr_running.py)
            # the VTN deletes the SIMPLE event: its limit is lifted
            vtn.delete_event(simple_id)
            await wait_until(lambda: controller.limits.event(
                f"openadr:gac/{simple_id}").cancelled, 10, "SIMPLE event lifted")
            # the VTN goes away: nothing changes, the VEN says so
            events_before = controller.limits.events()
            await vtn.stop()
            await wait_until(lambda: ven.status.state == "unreachable", 10, "unreachable")
            assert controller.limits.events() == events_before
        last_poll = ven.status.last_poll_ok
    # smartcharge restarts, the VTN is still away: the accepted event is back from the store
    async with control_server(site, db, clock, settings=SETTINGS, dispatch=DISPATCH) as server:
        event = server.controller.limits.event(f"openadr:gac/{cap_id}#1")
        assert event is not None and event.limit_w == 9_000.0 and not event.cancelled
        ven = server.app[VENS]["gac"]
        await wait_until(lambda: ven.status.state == "unreachable", 10, "unreachable")
        shown = server.controller.snapshot()["vens"][0]
        assert ven.status.last_poll_ok == last_poll and shown["last_poll_ok"] is not None


async def test_v3_pages_through_many_events_and_a_static_bearer_token_works(tmp_path):
    """More events than one page (the test VTN gives 10 at a time): every one is followed.
    A bearer token from the site file is used as it is (no token request)."""
    clock = _clock()
    async with vtn_3() as vtn:
        program_id = vtn.add_program("gac")
        vtn.tokens.add("static-token")
        start = clock.now().replace(microsecond=0) + timedelta(hours=1)
        ids = [vtn.add_event(program_id, f"e{k}", start + timedelta(minutes=30 * k), "PT30M",
                             "IMPORT_CAPACITY_LIMIT", [20 - k / 10], units="KW")
               for k in range(23)]
        site = replace(_site3(vtn.url), openadr=(replace(
            _site3(vtn.url).openadr[0], client_id=None, client_secret=None,
            bearer_token="static-token"),))
        async with control_server(site, tmp_path / "sc.sqlite", clock, settings=SETTINGS,
                                  dispatch=DISPATCH) as server:
            limits = server.controller.limits
            ven = server.app[VENS]["gac"]
            await wait_until(lambda: ven.status.failures or all(
                limits.event(f"openadr:gac/{i}") for i in ids), 10, "all 23 events")
            assert ven.status.last_error is None, ven.status.last_error
            assert vtn.token_requests == 0
            assert limits.event(f"openadr:gac/{ids[-1]}").limit_w == 17_800.0
