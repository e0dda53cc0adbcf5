"""The live site snapshot over REST: one JSON document, or a server-sent event stream of them
(a keepalive comment when nothing changed for KEEPALIVE_S). Id tags are masked unless the
caller's role acts on sessions."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from smartcharge.api.auth import READ, SEES_ID_TAGS, mask_id_tag, role, route
from smartcharge.api.site_common import controller as _controller

KEEPALIVE_S = 15.0
ITEMS_PER_STEP = 500     # list items encoded per turn of the event loop
SEPARATORS = (",", ":")

_CLOSING = web.AppKey("site_api_closing", asyncio.Event)


async def get_site(request: web.Request) -> web.Response:
    snapshot = _visible(await _controller(request).snapshot_async(), request)
    return web.Response(body=await encode(snapshot), content_type="application/json")


async def encode(snapshot: dict) -> bytes:
    """The snapshot as compact JSON, its long lists ITEMS_PER_STEP items per turn of the event
    loop: 2.3 MB at 5 000 connectors took 0.1-0.15 s in one json.dumps (issue 10)."""
    parts = []
    for key, value in snapshot.items():
        if isinstance(value, list) and len(value) > ITEMS_PER_STEP:
            items = []
            for first in range(0, len(value), ITEMS_PER_STEP):
                items.append(json.dumps(value[first:first + ITEMS_PER_STEP],
                                        separators=SEPARATORS)[1:-1])
                await asyncio.sleep(0)
            parts.append(f"{json.dumps(key)}:[{','.join(items)}]")
        else:
            parts.append(f"{json.dumps(key)}:{json.dumps(value, separators=SEPARATORS)}")
    return ("{" + ",".join(parts) + "}").encode()


def _visible(snapshot: dict, request: web.Request) -> dict:
    """The snapshot as this caller may see it: id tags masked unless the role acts on them."""
    if role(request) in SEES_ID_TAGS or not snapshot.get("sessions"):
        return snapshot
    return {**snapshot, "sessions": [{**s, "id_tag": mask_id_tag(s.get("id_tag"), request)}
                                     for s in snapshot["sessions"]]}


async def site_stream(request: web.Request) -> web.StreamResponse:
    controller = _controller(request)
    closing = request.app[_CLOSING]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    version = controller.snapshot_version
    try:
        await _send_event(response, _visible(await controller.snapshot_async(), request))
        while not closing.is_set():
            got = await controller.next_snapshot(version, timeout_s=KEEPALIVE_S)
            if closing.is_set():
                break
            if got is None:
                await response.write(b": keepalive\n\n")
                continue
            version, snapshot = got
            await _send_event(response, _visible(snapshot, request))
    except ConnectionResetError:   # the client left; a cancellation (shutdown) propagates
        pass
    return response


async def _send_event(response: web.StreamResponse, snapshot: dict) -> None:
    await response.write(b"event: snapshot\ndata: " + await encode(snapshot) + b"\n\n")


def add_routes(app: web.Application) -> None:
    app[_CLOSING] = asyncio.Event()

    async def close_streams(app: web.Application) -> None:
        app[_CLOSING].set()
    app.on_shutdown.append(close_streams)
    route(app, "GET", "/api/site", get_site, READ)
    route(app, "GET", "/api/site/stream", site_stream, READ)
