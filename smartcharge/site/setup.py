"""Join the site controller to an app made by `smartcharge.app.create_app`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from smartcharge.appkeys import CLOCK, EVENTS, PORTS, REGISTRY, SITE, STORE
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.dispatch import Dispatcher, DispatchSettings, SiteReads
from smartcharge.site.obligations import ObligationWriter
from smartcharge.site.phase_probe import PhaseProbes, PhaseProbing
from smartcharge.site.restore import restore

CONTROLLER = web.AppKey("site_controller", SiteController)
DISPATCHER = web.AppKey("site_dispatcher", Dispatcher)
# the one writer of obligations: the REST API and the OpenADR VENs write through it, in order
OBLIGATIONS = web.AppKey("site_obligations", ObligationWriter)
# asks a new car's station for a sample of its phases (absent: phase_probe_after_s None)
PHASE_PROBING = web.AppKey("site_phase_probing", PhaseProbing)


def setup_site_control(app: web.Application, *,
                       settings: ControllerSettings | None = None,
                       dispatch_settings: DispatchSettings | None = None) -> None:
    """Add the controller and its dispatch; its tasks live in app.cleanup_ctx. Its REST routes
    are the API's (`smartcharge.api.add_site_routes`, added by `create_app`): `site` imports
    nothing of `api`.
    `create_app` calls it; calling it again does nothing, but settings given then would be lost,
    so that is refused: pass them to `create_app(control=..., dispatch=...)`."""
    if CONTROLLER in app:
        if settings is not None or dispatch_settings is not None:
            raise RuntimeError("the site controller is already set up; pass its settings to "
                               "create_app(control=..., dispatch=...)")
        return
    controller = SiteController(app[SITE], app[CLOCK], settings)
    app[CONTROLLER] = controller
    app[OBLIGATIONS] = ObligationWriter(lambda: app[STORE])

    async def control_ctx(app: web.Application) -> AsyncIterator[None]:
        # what was acknowledged before a restart binds us now: before the first plan, before
        # the server listens (cleanup_ctx runs before the socket opens) and any station sends
        await restore(controller, app[STORE])
        reads = SiteReads(controller.topology, controller.site, controller.state,
                          controller.limits, controller.uncontrollable, controller.phase_use)
        dispatcher = Dispatcher(reads, app[REGISTRY], app[STORE], app[CLOCK],
                                dispatch_settings, ports=app[PORTS],
                                publish=controller.site_bus.publish, share=controller.share)
        app[DISPATCHER] = dispatcher
        # each station held at the fail-safe defaults it may hold until it is set up again
        # (a station offline since before the restart cannot be told less)
        await dispatcher.restore_held()
        controller.installed = dispatcher.installed
        # the controller first (it updates the state dispatch reads), then dispatch
        unsubscribe = [app[EVENTS].subscribe(controller.on_event),
                       app[EVENTS].subscribe(dispatcher.on_event),
                       controller.site_bus.subscribe(dispatcher.on_learned)]
        # the site's own work runs through one budget per turn of the loop (turn_share.py)
        share = controller.share
        coroutines = [("site-controller", share.run(controller.run(),
                                                    lane=controller.replan_lane)),
                      ("site-dispatch", share.run(dispatcher.run())),
                      ("site-audit", dispatcher.run_audit()),
                      ("site-sampler", share.run(_sample(controller)))]
        after_s = dispatcher.settings.phase_probe_after_s
        if after_s is not None:
            # a new car's phases asked of its station once it draws (site/phase_probe.py)
            probing = PhaseProbing(PhaseProbes(controller.topology, controller.state, after_s),
                                   dispatcher.stations, app[CLOCK])
            app[PHASE_PROBING] = probing
            unsubscribe += [app[EVENTS].subscribe(probing.on_event),
                            controller.site_bus.subscribe(probing.on_learned)]
            coroutines.append(("site-phase-probe", share.run(probing.run())))
        tasks = [asyncio.create_task(coroutine, name=name) for name, coroutine in coroutines]
        try:
            yield
        finally:
            for undo in unsubscribe:
                undo()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await dispatcher.close()

    app.cleanup_ctx.append(control_ctx)


async def _sample(controller: SiteController) -> None:
    """Site load vs limit into the history, and a snapshot for the stream, every so often."""
    while True:
        await controller.clock.sleep(controller.settings.history_every_s)
        await controller.tick_async()
