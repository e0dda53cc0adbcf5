"""For the billing property tests: play a station's messages against a fresh real server and read
back its billing CSV (the sum of the billable rows, and the rows); `draw_next`: the order a
property test sends them in."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp.test_utils import TestServer
from hypothesis import strategies as st

from smartcharge.app import create_app
from tests.conftest import API_TOKEN, PASSWORD, WsConnection


def draw_next(data, queues: dict, retries: list) -> tuple[object, bool]:
    """The next message to send, drawn by Hypothesis `data`: the head of one of `queues` (key ->
    messages in their order; an emptied queue is removed), which may be kept to be sent again
    later, or one of `retries`, maybe reworded. Returns (message, reworded)."""
    choices = sorted(queues) + (["retry"] if retries else [])
    pick = data.draw(st.sampled_from(choices), label="next")
    if pick == "retry":
        message = retries.pop(data.draw(st.integers(0, len(retries) - 1), label="which"))
        return message, data.draw(st.booleans(), label="reworded")
    message = queues[pick].pop(0)
    if not queues[pick]:
        del queues[pick]
    if data.draw(st.integers(0, 3), label="retried later") == 0:
        retries.append(message)
    return message, False


async def play_and_bill(site, db_path: str, protocol: str, station_class,
                        play: Callable[[object], Awaitable[None]]) -> tuple[float, list[dict]]:
    """Station CP1 of `site` connects with `protocol`, boots, then `play(station)` runs; returns
    the billable energy of `/api/sessions.csv` and its rows."""
    server = TestServer(create_app(site, db_path=db_path, smart_charging=False),
                        host="127.0.0.1", port=0)
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        token = base64.b64encode(f"CP1:{PASSWORD}".encode()).decode()
        ws = await http.ws_connect(server.make_url("/ocpp/CP1"), protocols=(protocol,),
                                   headers={"Authorization": f"Basic {token}"}, heartbeat=None)
        station = station_class("CP1", WsConnection(ws))
        serving = asyncio.create_task(station.start())
        try:
            await station.boot()
            await play(station)
            answer = await http.get(server.make_url("/api/sessions.csv"),
                                    headers={"Authorization": f"Bearer {API_TOKEN}"})
            assert answer.status == 200, await answer.text()
            text = await answer.text()
        finally:
            await ws.close()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
    await server.close()
    rows = list(csv.DictReader(io.StringIO(text)))
    return sum(float(r["energy_wh"]) for r in rows if r["billable"] == "true"), rows
