"""A strict station of either version sends every message it may, with every field at an end of
what its schema allows (`ocpp_payloads.instance(edge=...)`: the biggest integers and numbers,
the longest strings, negative readings, the last enum values, far time zones), to the whole
service - central system, ledger, site controller, guard, dispatch - not the central system
alone: every message gets a CALLRESULT, nothing logs an error, and the site still plans,
guards and shows its snapshot."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import aiohttp
import pytest

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.dispatch import DispatchSettings
from tests.ocpp_payloads import STATION_ACTIONS, instance, request_schema
from tests.site_e2e import control_server
from tests.test_ocpp_every_action import BOOTS, NOT_SUPPORTED, PROTOCOLS

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def _call(ws, frame) -> list:
    """Our frame's answer; the server's own calls meanwhile get NotSupported."""
    await ws.send_str(json.dumps(frame))
    while (answer := json.loads((await ws.receive(timeout=10)).data))[1] != frame[1]:
        if answer[0] == 2:
            await ws.send_str(json.dumps([4, answer[1], "NotSupported", "", {}]))
    return answer


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_edge_values_through_the_whole_service(tmp_path, version, caplog):
    site = Site(name="edges", circuits=(Circuit("grid", None, limit_w=50_000),),
                stations=(Station("CP1", "grid", (Connector(1), Connector(2))),),
                id_tags=frozenset({"ABCDEFGH"}))
    clock = AcceleratedClock(T0, speed=1.0)
    async with control_server(site, tmp_path / "sc.sqlite", clock,
                              dispatch=DispatchSettings(call_timeout_s=2.0)) as server, \
            aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.ws_url}/CP1",
                                   protocols=(PROTOCOLS[version],)) as ws:
            assert (await _call(ws, BOOTS[version]))[0] == 3
            wrong = []
            for edge in ("high", "low"):
                for action in STATION_ACTIONS[version]:
                    payload = instance(request_schema(action, version), full=True, edge=edge)
                    unique_id = f"{action}-{edge}"
                    answer = await _call(ws, [2, unique_id, action, payload])
                    want = 4 if action in NOT_SUPPORTED else 3
                    if answer[0] != want:
                        wrong.append(answer)
            assert wrong == []
            controller = server.controller
            plan = await controller.replan({"test"})
            assert plan is not None
            controller.guard.node_loads(clock.now())
            assert controller.snapshot()["connectors"]
            await controller.tick_async()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
