"""Join the site's OpenADR VENs (one per `[[openadr]]` program) to an app made by
`smartcharge.app.create_app`: they start after the controller restored its obligations from
the store and stop before it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from smartcharge.appkeys import CLOCK, SITE, STORE
from smartcharge.openadr import notify
from smartcharge.openadr.runner import VenRunner
from smartcharge.openadr.sink import OpenAdrSink
from smartcharge.site.applied import limits_told
from smartcharge.site.setup import CONTROLLER, DISPATCHER, OBLIGATIONS

VENS = web.AppKey("openadr_vens", dict)     # program -> its VEN (a VenRunner)


def make_ven(program, sink, clock, store_of) -> VenRunner:
    if program.version == "2.0b":
        from smartcharge.openadr.ven2b import Ven2b   # openleadr only where a program uses it
        return Ven2b(program, sink, clock, store_of)
    from smartcharge.openadr.ven3 import Ven3
    return Ven3(program, sink, clock, store_of)


def setup_openadr(app: web.Application) -> None:
    """Needs the site controller (setup_site_control) first; nothing to do without programs."""
    programs = app[SITE].openadr
    if not programs:
        return
    controller = app[CONTROLLER]
    sink = OpenAdrSink(controller, app[OBLIGATIONS],
                       told=lambda: limits_told(controller, app[DISPATCHER]))
    vens = {p.program: make_ven(p, sink, app[CLOCK], lambda: app[STORE]) for p in programs}
    app[VENS] = vens
    for name, ven in vens.items():
        controller.ven_status[name] = ven.status.as_json

    async def openadr_ctx(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(ven.run(), name=f"openadr-{name}")
                 for name, ven in vens.items()]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.cleanup_ctx.append(openadr_ctx)
    # OpenADR 3 notifications (webhooks); each program's VEN checks its own bearer token
    app.router.add_post(notify.CALLBACK_PATH, notify.make_handler(lambda request: vens))
