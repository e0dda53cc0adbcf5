"""The event loop's CPU for a DR event's dispatch round at 1 000 connectors, in-process (issue
10): the round `control_latency` measures end to end, without the machine's other processes.

    python -m benchmarks.dr_round_cpu [--connectors 1000] [--repeats 3] [--profile FILE]

The site is `control_latency`'s (stations of two 3-phase 32 A connectors in feeders of 50, a
car charging on every connector, the cap binding). A real `SiteController` plans and a real
`Dispatcher` sends through the real OCPP 1.6 ports, links and adapters; each "station" is a stub
connection that answers every call at once (a turn of the loop later) through the adapter's
inbound path (`send_cpu.AnsweringConnection`): no WebSocket, no other process, a manual clock,
the collector tuned as `smartcharge serve` tunes it.
So the round's shape differs from a real one (the sending slots hardly fill), but its work per
request and per station is the server's own, and nearly the same every run (the plans differ a
little: 2 149-2 186 requests).

Per repeat: a DR event at half the cap is added and the site re-planned (not measured), then
its dispatch round is timed with the loop thread's CPU clock (`time.thread_time`; the machine's
load hardly stretches it), with the requests it sent by kind (from the audit rows); then the
event is cancelled and that round is timed too. `--profile FILE`: cProfile (CPU clock) of the
last event's round. `--calls`: the Python function calls per request of the last event's round
(cProfile with its own clock: a count, which the machine's load does not move). Compare trees by running this file with PYTHONPATH set to each tree
(`--tree`: the harness is copied into the older tree's benchmarks/ if it lacks it).

`--store` (s28-dr): the dispatcher gets a real `SqliteStore` (a file in a temporary directory,
the server's pragmas: WAL, synchronous FULL) and its audit task, as `smartcharge serve` gives
it; without it the dispatcher has no store and writes nothing (the held defaults' records,
`site/held_defaults.py`, and the audit rows are skipped). With it, per round also: the store
works asked (`store.run` calls), the round's wall time (it waits for commits: not CPU) and the
process's CPU (every thread: the writer's too).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.config import parse_site
from smartcharge.events import EventBus
from smartcharge.ocpp.central import AdapterContext
from smartcharge.ocpp.ports import port_factory
from smartcharge.ocpp.registry import StationLink, StationRegistry
from smartcharge.ocpp.v16.adapter import CentralSystemV16
from smartcharge.site.controller import SiteController
from smartcharge.site.dispatch import Dispatcher, SiteReads
from smartcharge.site.limits import DemandResponseEvent

T0 = datetime(2026, 12, 6, 6, 0, 3, tzinfo=UTC)


class StubStation:
    """Answers every CALL at once, in the next turn of the loop, through the adapter's inbound
    path: GetConfiguration with no keys (the defaults), everything else Accepted."""

    def __init__(self) -> None:
        self._incoming: asyncio.Queue = asyncio.Queue()

    async def send(self, text: str) -> None:
        message = json.loads(text)
        if message[0] != 2:
            return
        body = ({"configurationKey": [], "unknownKey": []}
                if message[2] == "GetConfiguration" else {"status": "Accepted"})
        answer = json.dumps([3, message[1], body])
        asyncio.get_running_loop().call_soon(self._incoming.put_nowait, answer)

    async def recv(self) -> str:
        return await self._incoming.get()


def site_text(connectors: int) -> str:
    from benchmarks.control_latency import site_toml
    return site_toml(connectors, 9, "unused.sqlite")


REQUESTS: list[str] = []   # every request's kind, in order (Dispatcher._record, wrapped)
STORE_RUNS = [0]           # store.run calls


def count_requests() -> None:
    """Each request's kind counted where the port records it (the audit rows go to the store
    with `--store`, so `_audit` is not where they stay)."""
    original = Dispatcher._record

    def recording(self, station_id, connector_id, kind, payload, answer):
        REQUESTS.append(kind)
        return original(self, station_id, connector_id, kind, payload, answer)
    Dispatcher._record = recording


async def open_store(directory: str):
    from smartcharge.store import SqliteStore
    store = await SqliteStore.open(os.path.join(directory, "bench.sqlite"))
    original = store.run

    async def counted(work):
        STORE_RUNS[0] += 1
        return await original(work)
    store.run = counted
    return store


async def build(connectors: int, store=None):
    site = parse_site(site_text(connectors))
    clock = ManualClock(T0)
    controller = SiteController(site, clock)
    registry = StationRegistry()
    serving = []
    context = AdapterContext(site=site, store=None, events=EventBus(), clock=clock)
    for station in site.stations:
        adapter = CentralSystemV16(station.station_id, StubStation(), context,
                                   boot_accepted=True, response_timeout_s=30.0)
        adapter._registered.set()
        serving.append(asyncio.ensure_future(adapter.start()))

        async def close_socket(reason: str) -> None:
            pass
        registry.attach(StationLink(station.station_id, "ocpp1.6", adapter, 30.0,
                                    close_socket))
    reads = SiteReads(controller.topology, controller.site, controller.state,
                      controller.limits, controller.uncontrollable, controller.phase_use)
    dispatcher = Dispatcher(reads, registry, store, clock, ports=port_factory(clock),
                            publish=controller.site_bus.publish)
    if store is not None:   # as setup.py runs it beside a real server's dispatcher
        serving.append(asyncio.ensure_future(dispatcher.run_audit()))
    controller.installed = dispatcher.installed
    controller.site_bus.subscribe(lambda event: None)
    for station in site.stations:
        booted = ev.StationBooted(station.station_id, T0, True, "v", "m")
        controller.on_event(booted)
        await dispatcher.setup_station(station.station_id)
    tx = 1000
    for station in site.stations:
        for connector in station.connectors:
            tx += 1
            started = ev.SessionStarted(station.station_id, connector.connector_id, tx, "TAG",
                                        0.0, T0 - timedelta(minutes=5))
            controller.on_event(started)
            dispatcher.on_event(started)
    return controller, dispatcher, clock, serving


async def plan_and_send(controller, dispatcher, clock, reason: str, profiler=None) -> dict:
    clock.advance(30.0)
    plan = await controller.replan({reason})
    dispatcher._latest = plan
    requests_before, runs_before = len(REQUESTS), STORE_RUNS[0]
    if profiler is not None:
        profiler.enable()
    wall, process = time.perf_counter(), time.process_time()
    cpu = time.thread_time()
    await dispatcher.dispatch_plan(plan)
    cpu = time.thread_time() - cpu
    wall, process = time.perf_counter() - wall, time.process_time() - process
    if profiler is not None:
        profiler.disable()
    kinds = Counter(REQUESTS[requests_before:])
    del REQUESTS[:]
    if dispatcher.store is None:   # kept in memory without a store: not to grow
        dispatcher._audit.clear()
    return {"cpu_s": cpu, "requests": sum(kinds.values()), "kinds": dict(kinds),
            "wall_s": wall, "process_s": process, "store_runs": STORE_RUNS[0] - runs_before}


async def measure(connectors: int, repeats: int, profile: str | None,
                  calls: bool = False, with_store: bool = False) -> list[dict]:
    if not with_store:
        return await _measure(connectors, repeats, profile, calls, None)
    with tempfile.TemporaryDirectory() as directory:
        store = await open_store(directory)
        try:
            return await _measure(connectors, repeats, profile, calls, store)
        finally:
            await store.close()


async def _measure(connectors: int, repeats: int, profile: str | None, calls: bool,
                   store) -> list[dict]:
    logging.basicConfig(level=logging.ERROR)
    count_requests()
    controller, dispatcher, clock, serving = await build(connectors, store)
    try:   # the collector as `smartcharge serve` tunes it (older trees: the defaults)
        from smartcharge.gc_serving import tune_gc_for_serving
        tune_gc_for_serving()
    except ImportError:
        pass
    await plan_and_send(controller, dispatcher, clock, "start")
    await plan_and_send(controller, dispatcher, clock, "slot")
    limit_w = controller.site.grid.limit_w if hasattr(controller.site, "grid") else None
    if limit_w is None:
        limit_w = float(controller.topology.static_limit_w[0])
    rows = []
    for repeat in range(repeats):
        last = repeat == repeats - 1
        profiler = (cProfile.Profile(time.thread_time) if profile and last
                    else cProfile.Profile() if calls and last else None)
        now = clock.now()
        event = DemandResponseEvent(f"bench-{repeat}", now, now + timedelta(hours=2),
                                    limit_w=limit_w / 2)
        controller.limits.add_event(event)
        event_row = await plan_and_send(controller, dispatcher, clock, "dr:bench", profiler)
        if profiler is not None and profile:
            profiler.dump_stats(profile)
        if profiler is not None and calls:
            profiler.create_stats()
            event_row["calls"] = sum(v[1] for v in profiler.stats.values())
        controller.limits.cancel_event(event.event_id)
        cancel_row = await plan_and_send(controller, dispatcher, clock, "dr-cancel:bench")
        rows.append({"event": event_row, "cancel": cancel_row})
    for task in serving:
        task.cancel()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connectors", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--calls", action="store_true")
    parser.add_argument("--store", action="store_true",
                        help="a real SqliteStore (temporary file) and its audit task")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    rows = asyncio.run(measure(args.connectors, args.repeats, args.profile, args.calls,
                               args.store))
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    for what in ("event", "cancel"):
        cpu = [r[what]["cpu_s"] for r in rows]
        print(f"{args.label} {what}: loop CPU per round median {statistics.median(cpu):.3f} s "
              f"({', '.join(f'{c:.3f}' for c in cpu)}); requests {rows[-1][what]['requests']} "
              f"{rows[-1][what]['kinds']}; per request "
              f"{statistics.median(cpu) / max(rows[-1][what]['requests'], 1) * 1e3:.2f} ms; "
              f"load {load}", flush=True)
        if args.store:
            runs = [r[what]["store_runs"] for r in rows]
            wall = ", ".join(f"{r[what]['wall_s']:.3f}" for r in rows)
            process = ", ".join(f"{r[what]['process_s']:.3f}" for r in rows)
            print(f"{args.label} {what}: store.run calls {runs}; wall per round {wall} s; "
                  f"process CPU (every thread) {process} s", flush=True)
    if args.calls:
        event = rows[-1]["event"]
        print(f"{args.label} event (last, profiled: not in the CPU above): function calls "
              f"{event['calls']}, per request {event['calls'] / max(event['requests'], 1):.0f}",
              flush=True)


if __name__ == "__main__":
    main()
