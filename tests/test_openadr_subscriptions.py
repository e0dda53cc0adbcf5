"""OpenADR 3 subscriptions: with a `callback_url` the VEN subscribes to its program's EVENT
changes (3.0.1 SUBSCRIPTION, POST/PUT/DELETE, a bearer token of its own) and the test VTN
delivers each change as a 3.0.1 notification: created, updated and deleted events take effect
with no poll in between (the poll interval is 30 s here). The callback route is never open:
it takes only the subscription's token, and after a restart only the new one."""

import json
from dataclasses import replace
from datetime import timedelta

import aiohttp

from smartcharge.openadr.setup import VENS
from tests.openadr_vtn3 import vtn_3
from tests.sim_fixtures import free_port
from tests.site_e2e import control_server, wait_until
from tests.test_openadr_2b import DISPATCH, SETTINGS, _clock
from tests.test_openadr_3 import _site3


async def _post(url: str, body: dict, headers: dict) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers=headers) as resp:
            return resp.status


async def test_v3_subscription_delivers_changes_at_once_and_only_with_its_token(tmp_path):
    clock = _clock()
    db, port = tmp_path / "sc.sqlite", free_port()
    base = f"http://127.0.0.1:{port}"
    callback = f"{base}/openadr/gac/notifications"
    async with vtn_3() as vtn:
        program_id = vtn.add_program("gac")
        other_program = vtn.add_program("other")
        site = _site3(vtn.url)
        site = replace(site, openadr=(replace(site.openadr[0], poll_interval_s=30.0,
                                              callback_url=base),))
        async with control_server(site, db, clock, settings=SETTINGS, dispatch=DISPATCH,
                                  port=port) as server:
            limits = server.controller.limits
            ven = server.app[VENS]["gac"]
            await vtn.wait_until(lambda: vtn.subscriptions, what="the VEN's subscription")
            (sub_id, sub), = vtn.subscriptions.items()
            (operation,) = sub["objectOperations"]
            assert (sub["clientName"], sub["programID"], operation["objects"],
                    sorted(operation["operations"]), operation["callbackUrl"]) == (
                "depot", program_id, ["EVENT"], ["DELETE", "POST", "PUT"], callback)
            token = operation["bearerToken"]
            assert len(token) >= 32
            await wait_until(lambda: ven.status.state == "online", 10, "the first poll")
            assert server.controller.snapshot()["vens"][0]["subscribed"] is True
            polls = vtn.event_polls
            start = clock.now().replace(microsecond=0) + timedelta(hours=1)
            event_id = vtn.add_event(program_id, "cap", start, "PT30M",
                                     "IMPORT_CAPACITY_LIMIT", [12], units="KW")
            dr_id = f"openadr:gac/{event_id}"
            await wait_until(lambda: limits.event(dr_id) is not None, 5, "created: notified")
            assert limits.event(dr_id).limit_w == 12_000.0
            vtn.update_event(event_id, [8], clock.now())
            await wait_until(lambda: limits.event(dr_id).limit_w == 8_000.0, 5,
                             "updated: notified")
            vtn.delete_event(event_id)
            await wait_until(lambda: limits.event(dr_id).cancelled, 5, "deleted: notified")
            assert vtn.event_polls == polls, "the changes came without a poll"
            await vtn.wait_until(lambda: len(vtn.deliveries) == 3, what="three deliveries")
            assert [(op, status) for op, _, status in vtn.deliveries] == [
                ("POST", 200), ("PUT", 200), ("DELETE", 200)]
            # the callback route is never open
            note = {"objectType": "EVENT", "operation": "POST",
                    "object": {**vtn.events.get(event_id, {}), "id": "forged",
                               "programID": program_id}}
            for headers in ({}, {"Authorization": "Bearer not-the-token"},
                            {"Authorization": token}, {"Authorization": f"Basic {token}"}):
                assert await _post(callback, note, headers) == 401, headers
            assert await _post(f"{base}/openadr/nope/notifications", note,
                               {"Authorization": f"Bearer {token}"}) == 401
            assert limits.event("openadr:gac/forged") is None
            # another program's event, with the right token: answered, nothing applied
            other = vtn.add_event(other_program, "elsewhere", start, "PT30M",
                                  "IMPORT_CAPACITY_LIMIT", [1], units="KW")
            assert await _post(callback, {"objectType": "EVENT", "operation": "POST",
                                          "object": vtn.events[other]},
                               {"Authorization": f"Bearer {token}"}) == 200
            assert limits.event(f"openadr:gac/{other}") is None
            # with the right token, bodies that are no notification: a 4xx problem, never 5xx
            bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            async with aiohttp.ClientSession() as http:
                for body in ("[" * 50_000 + "]" * 50_000, "not json", "[1]",
                             '{"objectType": "EVENT", "operation": "POST", "object": []}'):
                    async with http.post(callback, data=body, headers=bearer) as resp:
                        assert 400 <= resp.status < 500, (body[:60], resp.status)
                        assert resp.content_type == "application/problem+json"
                # a notification of an event we cannot read: ignored, as in a poll
                async with http.post(callback, headers=bearer, data=json.dumps({
                        "objectType": "EVENT", "operation": "POST", "object": {
                            "id": "garbage", "programID": program_id, "intervals": "none"}})
                        ) as resp:
                    assert resp.status == 200
            assert limits.event("openadr:gac/garbage") is None
        async with control_server(site, db, clock, settings=SETTINGS, dispatch=DISPATCH,
                                  port=port) as server:
            # smartcharge restarts: the same subscription, a new token; the old one is refused
            await vtn.wait_until(lambda: vtn.subscriptions[sub_id]["objectOperations"][0][
                "bearerToken"] != token, what="the subscription updated")
            assert list(vtn.subscriptions) == [sub_id]
            assert await _post(callback, note, {"Authorization": f"Bearer {token}"}) == 401
            again = vtn.add_event(program_id, "again", start, "PT30M",
                                  "IMPORT_CAPACITY_LIMIT", [10], units="KW")
            await wait_until(lambda: server.controller.limits.event(
                f"openadr:gac/{again}") is not None, 5, "created after the restart: notified")
