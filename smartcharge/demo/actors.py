"""The people the demo plays: drivers who plug in, tell their need through the driver app
(PUT /api/sessions/{id} with an operator token) and leave, and the utility that posts a
demand-response event (with its own token)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from smartcharge.clock import format_ocpp_time
from smartcharge.demo.report import TimedLimit, kw
from smartcharge.demo.scenario import DemandResponsePlan, Visit

if TYPE_CHECKING:
    from smartcharge.demo.run import Demo

log = logging.getLogger("smartcharge.demo")


@dataclass
class Counters:
    """What the actors did, for the summary."""
    arrived: int = 0
    refused: int = 0
    departed: int = 0
    needs_told: int = 0
    plugged: dict[tuple[str, int], Visit] = field(default_factory=dict)
    visits: list[Visit] = field(default_factory=list)     # every car that came


async def arrive(demo: Demo, visit: Visit) -> None:
    key = visit.key
    if key in demo.counters.plugged:   # the previous car overstayed in real time; skip
        return
    demo.counters.arrived += 1
    demo.counters.plugged[key] = visit
    demo.counters.visits.append(visit)
    started = await demo.fleet.plug_in(visit.station_id, visit.connector_id, visit.ev, visit.id_tag)
    if not started:
        demo.counters.refused += 1
    elif visit.tells_need:
        task = asyncio.create_task(tell_need(demo, visit))
        demo.need_tasks.add(task)
        task.add_done_callback(demo.need_tasks.discard)


async def tell_need(demo: Demo, visit: Visit) -> None:
    """The driver's app tells the operator what the car needs and when it leaves."""
    sim = demo.fleet.station(visit.station_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while True:   # the transaction id comes with the StartTransaction answer
        tx = sim.connectors[visit.connector_id].transaction
        if tx is None:
            return
        if tx.transaction_id is not None:
            break
        if loop.time() > deadline:
            return
        await asyncio.sleep(0.02)
    tokens = sorted(demo.site.operator_tokens)
    if not tokens:
        return
    body = {"requested_wh": round(visit.requested_wh), "departure": format_ocpp_time(visit.departure)}
    url = f"{demo.base_url}/api/sessions/{tx.transaction_id}"
    try:
        async with demo.http.put(url, json=body,
                                 headers={"Authorization": f"Bearer {tokens[0]}"}) as resp:
            if resp.status == 200:
                demo.counters.needs_told += 1
            else:
                log.warning("PUT %s: HTTP %d %s", url, resp.status, (await resp.text())[:200])
    except aiohttp.ClientError as error:
        log.warning("PUT %s failed: %s", url, error)


async def depart(demo: Demo, visit: Visit) -> None:
    if demo.counters.plugged.get(visit.key) is not visit:
        return
    await demo.fleet.unplug(visit.station_id, visit.connector_id)
    del demo.counters.plugged[visit.key]
    demo.counters.departed += 1


async def send_demand_response(demo: Demo, dr: DemandResponsePlan) -> None:
    """As a utility would: from its OpenADR VTN, or an HTTP POST with the utility's token."""
    if demo.vtn is not None:
        await _send_openadr(demo, dr)
        return
    tokens = sorted(demo.site.utility_tokens)
    headers = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
    body = {"id": dr.event_id, "start": format_ocpp_time(dr.start),
            "end": format_ocpp_time(dr.end), "limit_w": dr.limit_w}
    url = f"{demo.base_url}/api/demand-response/events"
    try:
        async with demo.http.post(url, json=body, headers=headers) as resp:
            text = await resp.text()
            status = resp.status
    except aiohttp.ClientError as error:
        demo.dr_answer = f"failed: {error}"
        print(f"  utility: demand-response event could not be sent: {error}")
        return
    known = demo.clock.now()
    if status >= 300:
        demo.dr_answer = f"refused: HTTP {status} {text[:200]}"
        print(f"  utility: demand-response event refused: HTTP {status} {text[:200]}")
        return
    demo.limits.add(TimedLimit(dr.start, dr.end, dr.limit_w, dr.event_id, known_since=known))
    demo.dr_answer = f"accepted (HTTP {status})"
    print(f"  {known:%H:%M}  utility: demand-response event {dr.event_id!r} "
          f"{dr.start:%H:%M}–{dr.end:%H:%M}, limit {kw(dr.limit_w)} — HTTP {status}")


async def _send_openadr(demo: Demo, dr: DemandResponsePlan) -> None:
    """The VTN publishes the event; the site has it once its VEN polled and stored it."""
    from smartcharge.demo.utility_vtn import site_event_id
    from smartcharge.site.setup import CONTROLLER

    demo.vtn.send(dr.event_id, dr.start, dr.end, dr.limit_w)
    controller = demo.app[CONTROLLER]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30.0
    while controller.limits.event(site_event_id(dr.event_id)) is None:
        if loop.time() > deadline:
            demo.dr_answer = "failed: the VEN did not receive it within 30 s"
            print(f"  utility: OpenADR event {dr.event_id!r} not received by the site")
            return
        await asyncio.sleep(0.05)
    known = demo.clock.now()
    demo.limits.add(TimedLimit(dr.start, dr.end, dr.limit_w, dr.event_id, known_since=known))
    opt = demo.vtn.opts.get(dr.event_id)
    demo.dr_answer = (f"accepted (OpenADR 2.0b, stored as {site_event_id(dr.event_id)}"
                      + (f", {opt}" if opt else "") + ")")
    print(f"  {known:%H:%M}  utility: OpenADR 2.0b event {dr.event_id!r} "
          f"{dr.start:%H:%M}–{dr.end:%H:%M}, limit {kw(dr.limit_w)} — stored by the site's VEN")
