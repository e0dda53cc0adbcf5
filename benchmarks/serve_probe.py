"""The benchmarks' server process: the app `smartcharge serve` builds, plus a loop-lag probe.

    python benchmarks/serve_probe.py SITE_FILE STATS_JSON [--uvloop]

Run as a file (not `-m`) so that PYTHONPATH alone decides which smartcharge tree it serves:
the benchmarks measure an older tree with today's probe that way (`--server-tree`).

The probe wakes every PROBE_S and records how late it woke: the longest time the event loop
was blocked, per wall-clock second. At shutdown (SIGTERM) it writes
`{"lag": [[wall_s, max_lag_s], ...]}` to STATS_JSON; the benchmark picks the seconds of its
measurement window. Loopback only; the process ends when the benchmark sends SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import sys
import time
from pathlib import Path

# run as a file, Python puts benchmarks/ first on the path, where benchmarks/optimizer.py would
# hide the `optimizer` package: only PYTHONPATH may say which tree is served
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
    sys.path.append(str(Path(__file__).resolve().parent))   # stage_probe, last

PROBE_S = 0.005


async def probe_loop(lag_by_second: dict[int, float],
                     busy_by_second: dict[int, float] | None = None) -> None:
    """`lag_by_second`: how late the probe woke (wall time: on a machine shared with other
    work this includes the time the OS gave other processes). `busy_by_second`: the CPU time
    the loop's own thread spent between two wake-ups - what our code held the loop for, an
    upper bound of the longest callback."""
    loop = asyncio.get_running_loop()
    while True:
        before, cpu_before = loop.time(), time.thread_time()
        await asyncio.sleep(PROBE_S)
        lag_s = loop.time() - before - PROBE_S
        busy_s = time.thread_time() - cpu_before
        second = int(time.time())
        if lag_s > lag_by_second.get(second, -1.0):
            lag_by_second[second] = lag_s
        if busy_by_second is not None and busy_s > busy_by_second.get(second, -1.0):
            busy_by_second[second] = busy_s


def main(argv: list[str]) -> int:
    site_file, stats_path = argv[0], argv[1]
    use_uvloop = "--uvloop" in argv[2:]
    from aiohttp import web

    from smartcharge.app import create_app
    from smartcharge.config import load_site

    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in filter(None, os.environ.get("SMARTCHARGE_PROBE_DEBUG", "").split(",")):
        logging.getLogger(name).setLevel(logging.DEBUG)   # e.g. smartcharge.site.controller
    site = load_site(site_file)
    app = create_app(site)
    if "--stages" in argv[2:]:
        import stage_probe   # benchmarks/, beside this file
        stage_probe.install(app)
    lag_by_second: dict[int, float] = {}
    busy_by_second: dict[int, float] = {}
    gc_pauses: list[tuple[float, int, float]] = []   # (wall s, generation, pause s)
    gc_started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append((time.time(), info["generation"],
                              time.perf_counter() - gc_started[0]))

    gc.callbacks.append(on_gc)
    import smartcharge.app
    tune = getattr(smartcharge.app, "tune_gc_for_serving", None)   # older trees: none
    if tune is not None:
        tune()    # as `smartcharge serve` does
    threshold = os.environ.get("SMARTCHARGE_PROBE_GC")   # e.g. "700,10,10": an experiment
    if threshold:
        gc.set_threshold(*(int(x) for x in threshold.split(",")))

    async def probe_ctx(app: web.Application):
        slow_s = float(os.environ.get("SMARTCHARGE_PROBE_SLOW_S", "0"))
        if slow_s > 0:   # asyncio's debug mode names every callback that ran longer (costly)
            loop = asyncio.get_running_loop()
            loop.set_debug(True)
            loop.slow_callback_duration = slow_s
            logging.getLogger("asyncio").setLevel(logging.WARNING)
        task = asyncio.create_task(probe_loop(lag_by_second, busy_by_second),
                                   name="loop-lag-probe")
        yield
        task.cancel()
        from smartcharge.site.setup import CONTROLLER
        stats = app[CONTROLLER].stats if CONTROLLER in app else None
        with open(stats_path, "w") as out:
            json.dump({"lag": sorted(lag_by_second.items()),
                       "busy": sorted(busy_by_second.items()),
                       "loop": type(asyncio.get_running_loop()).__module__,
                       "replans": getattr(stats, "replans", None),
                       "profiles_sent": getattr(stats, "profiles_sent", None),
                       "gc": gc_pauses}, out)

    app.cleanup_ctx.append(probe_ctx)
    loop_factory = None
    if use_uvloop:
        import uvloop   # optional: only when asked for
        loop_factory = uvloop.new_event_loop
    if loop_factory is not None:
        loop = loop_factory()
        asyncio.set_event_loop(loop)
        web.run_app(app, host=site.server.host, port=site.server.port, backlog=4096,
                    print=None, loop=loop)
    else:
        web.run_app(app, host=site.server.host, port=site.server.port, backlog=4096,
                    print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
