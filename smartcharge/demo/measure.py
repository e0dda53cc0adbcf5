"""The demo's own measurement: what each simulated car really draws, checked against every
limit every SAMPLE_EVERY_S of site time; a progress line now and then; the server's own account
read back over the API like any client would.

A sample is one instant: every station is read at the moment the sample is labelled with. Each
station read at its own `now` was a sample spread over the time the reading took - under CPU
load tens of real ms, minutes of site time at 240x - and at a plan's slot edge (one connector
stepping down where another steps up) it added a draw from before the edge to one from after
it: an excess no instant held (seen as 65.5 kW over a 60 kW event at 00:44:59)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import aiohttp

from smartcharge.demo.report import Draw, kw

if TYPE_CHECKING:
    from smartcharge.demo.run import Demo

log = logging.getLogger("smartcharge.demo")

SAMPLE_EVERY_S = 30.0            # the demo's own check of the draws [site s]


def measured_draws(demo: Demo, at) -> list[Draw]:
    """Every connector's draw at the instant `at` (not after it: see the module's doc)."""
    draws = []
    for station in demo.site.stations:
        sim = demo.fleet.station(station.station_id)
        sim.advance_to(at)
        for connector in station.connectors:
            state = sim.connectors[connector.connector_id]
            phases = state.ev.phases if state.ev is not None else connector.phases
            draws.append(Draw(station.station_id, connector.connector_id, state.draw_w,
                              phases, connector.phase))
    return draws


def delivered_wh(demo: Demo) -> float:
    return sum(v.ev.charged_wh for v in demo.visits)


def open_sessions(demo: Demo) -> int:
    return sum(1 for station in demo.fleet.stations.values()
               for state in station.connectors.values() if state.transaction is not None)


def take_sample(demo: Demo):
    seen = len(demo.monitor.violations)
    at = demo.clock.now()   # once: every station is read at this instant
    sample = demo.monitor.record(at, measured_draws(demo, at), open_sessions(demo),
                                 delivered_wh(demo))
    for violation in demo.monitor.violations[seen:]:
        if demo.explained < demo.args.explain:
            demo.explained += 1
            explain(demo, violation)
    return sample


def explain(demo: Demo, violation) -> None:
    """What each bay under the overloaded circuit draws and which profiles it holds."""
    print(f"  {violation.time:%H:%M:%S}  LIMIT VIOLATION {violation.where} {violation.kind}: "
          f"{violation.value:.1f} > {violation.limit:.1f}")
    for station in demo.site.stations:
        if violation.where not in demo.monitor.chain(station.station_id):
            continue
        sim = demo.fleet.station(station.station_id)
        for cid, state in sim.connectors.items():
            if state.transaction is None and state.draw_w == 0:
                continue
            print(f"      {station.station_id}/{cid}: draws {state.draw_w:.0f} W, composite "
                  f"limit {state.limit_w}, tx {state.transaction and state.transaction.transaction_id}")
            for profile in sim.profiles.profiles:
                if profile.connector_id in (0, cid) and profile.purpose != "ChargePointMaxProfile":
                    periods = [(p.start_s, p.limit) for p in profile.schedule.periods][:6]
                    print(f"          {profile.purpose} #{profile.profile_id} level "
                          f"{profile.stack_level} from {profile.schedule.start:%H:%M:%S} "
                          f"(installed {profile.installed_at:%H:%M:%S}) "
                          f"{profile.schedule.rate_unit} {periods}")


async def sample_loop(demo: Demo) -> None:
    while True:
        take_sample(demo)
        await demo.clock.sleep(SAMPLE_EVERY_S)


async def progress_loop(demo: Demo) -> None:
    every_s = demo.args.progress_every_min * 60.0
    while True:
        # on the round hour (or whatever the interval is), counted from the start
        into_s = (demo.clock.now() - demo.start).total_seconds() % every_s
        await demo.clock.sleep(every_s - into_s)
        sample = demo.monitor.samples[-1] if demo.monitor.samples else None
        if sample is None:
            continue
        limit = sample.effective_limit_w
        share = f"{sample.site_load_w / limit:4.0%}" if limit else "   -"
        print(f"  {sample.time:%H:%M}  load {kw(sample.site_load_w):>9} / limit {kw(limit):>9} "
              f"{share}  sessions {sample.sessions:3d}  delivered {sample.delivered_wh / 1000:8.1f} kWh  "
              f"violations {len(demo.monitor.violations)}", flush=True)


async def server_stats(demo: Demo) -> dict:
    """The controller's own account, read like any client would."""
    try:
        tokens = sorted(demo.site.operator_tokens)
        headers = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
        async with demo.http.get(f"{demo.base_url}/api/site", headers=headers) as resp:
            if resp.status == 200:
                return (await resp.json()).get("stats", {})
    except aiohttp.ClientError as error:
        log.warning("could not read /api/site: %s", error)
    return {}
