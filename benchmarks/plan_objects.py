"""Objects the garbage collector tracks per re-plan, counted (not timed): what a young
collection after a re-plan has to traverse, independent of the machine's load (issue 10).

    python -m benchmarks.plan_objects [--sizes 1000 5000] [--family power]

A controller-level re-plan (`benchmarks/replan_controller.py`'s site: every connector but one
has a car, the cap binds) after a minute of metering, as the serving process runs it: the
collector tuned as `smartcharge serve` tunes it (gc_serving: a young collection every 10 000
net allocations), everything that exists before the re-plan frozen. Counted:

- "allocated": tracked objects the re-plan left in the young generation with the collector off
  (everything it made and did not free: the plan, the picture held during the solve, what the
  previous plan's death gave back is not subtracted) and, by kind, the largest;
- "kept": tracked objects alive after the re-plan returned (and one full collection) that
  were not before it: what the plan holds until the next one;
- "held by a round": what a dispatch round's grouping of the plan per station
  (`DispatchRound.__init__`) adds on top, alive for the whole round;
- "young collections": collections of generation 0 during one re-plan with the collector on
  at the serving threshold (the count starts at 0: one full collection just before).

An older tree is counted with the same harness by copying this file into its benchmarks/ and
running it there with PYTHONPATH set to that tree (benchmarks/README.md, s20-planobj).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import logging
import os
import types

from benchmarks import replan_controller as rc

YOUNG_EVERY = 10_000   # gc_serving.YOUNG_EVERY (older trees: the same value)


def young_kinds(objects) -> collections.Counter:
    return collections.Counter(type(o).__qualname__ for o in objects)


def round_holds(controller, plan) -> int:
    """Tracked objects a dispatch round's start adds (its grouping per station), alive for the
    round; 0 where the tree has no DispatchRound."""
    try:
        from smartcharge.site.dispatch_round import DispatchRound
    except ImportError:
        return 0
    dispatcher = types.SimpleNamespace(view=types.SimpleNamespace(limits=controller.limits))
    gc.collect()
    gc.disable()
    before = len(gc.get_objects(0))
    made = DispatchRound(dispatcher, plan, asyncio.Event())
    if hasattr(made, "cplans"):   # the grouping as the round reads it, every station once
        for station_id in {ref.station_id for ref in plan.connectors}:
            list(made.cplans(station_id))
    after = len(gc.get_objects(0))
    gc.enable()
    del made
    return after - before - 1   # the round itself


async def guard_done(controller) -> None:
    """The guard pass the meter samples started (it runs on the loop beside a re-plan, and its
    first pass fills its caches: not the re-plan's objects) has ended."""
    task = getattr(controller, "_guard_task", None)
    if task is not None:
        await task


async def measure(n: int, family: str) -> dict:
    controller, clock = rc.controller_at(n, family, seed=1, warm=True)
    await controller.replan({"start"})
    await controller.replan({"slot"})
    rc.meters_move(controller, clock, 60.0)
    await guard_done(controller)
    gc.collect()
    before = {id(o) for o in gc.get_objects()}
    gc.freeze()
    gc.disable()
    await controller.replan({"slot"})
    allocated = gc.get_objects(0)
    kinds = young_kinds(allocated)
    count = len(allocated)
    del allocated
    gc.enable()
    gc.unfreeze()
    for _ in range(3):
        await asyncio.sleep(0)   # the worker thread's future settles
    gc.collect()
    kept_objects = [o for o in gc.get_objects() if id(o) not in before]
    kept = len(kept_objects)
    kept_kinds = young_kinds(kept_objects).most_common(3)
    del kept_objects, before
    held = round_holds(controller, controller.plan)
    # young collections during one re-plan, the collector on as it serves
    rc.meters_move(controller, clock, 60.0)
    await guard_done(controller)
    collections_seen: list[int] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "stop":
            collections_seen.append(info["generation"])
    gc.collect()
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(YOUNG_EVERY, 250, 100)
    gc.callbacks.append(on_gc)
    try:
        await controller.replan({"slot"})
    finally:
        gc.callbacks.remove(on_gc)
        gc.set_threshold(*threshold)
        gc.unfreeze()
    return {"n": n, "connectors": len(controller.plan.connectors), "allocated": count,
            "kept": kept, "held": held, "young": collections_seen.count(0),
            "older": len(collections_seen) - collections_seen.count(0),
            "kinds": kinds.most_common(6), "kept_kinds": kept_kinds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--family", default="power", choices=("power", "phase"))
    args = parser.parse_args(argv)
    logging.getLogger("smartcharge.site.guard").setLevel(logging.CRITICAL)
    print(f"# tree {os.environ.get('PYTHONPATH', '.')}, family {args.family}")
    print("| connectors | planned | tracked objects allocated by the re-plan | per connector "
          "| kept after it | held by a dispatch round | young collections per re-plan "
          "| the largest kinds allocated |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in args.sizes:
        r = asyncio.run(measure(n, args.family))
        kinds = ", ".join(f"{k} {v}" for k, v in r["kinds"])
        older = f" (+{r['older']} older)" if r["older"] else ""
        kept = ", ".join(f"{k} {v}" for k, v in r["kept_kinds"])
        print(f"| {r['n']} | {r['connectors']} | {r['allocated']} | "
              f"{r['allocated'] / r['connectors']:.2f} | {r['kept']} ({kept}) | {r['held']} | "
              f"{r['young']}{older} | {kinds} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
