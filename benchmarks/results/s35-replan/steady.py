"""Steady state: one controller, cars leave and arrive in turn; each arrival's make_plan timed
(thread CPU, minor faults, system time) in the thread that runs it."""
import sys, os, asyncio, resource, time, functools, logging, numpy as np
sys.path.insert(0, os.environ.get("TREE", "/work/wt-replan"))
from benchmarks import replan_controller as rc
from smartcharge import events as ev
from smartcharge.site import planner
logging.getLogger("smartcharge.site.guard").setLevel(logging.CRITICAL)
stable = sys.argv[1] == "on"; rounds = int(sys.argv[2])
rec = []
orig = planner.make_plan
@functools.wraps(orig)
def timed(*a, **k):
    r0 = resource.getrusage(resource.RUSAGE_THREAD); t0 = time.thread_time()
    made = orig(*a, **k)
    r1 = resource.getrusage(resource.RUSAGE_THREAD); t1 = time.thread_time()
    rec.append((round(1000 * (t1 - t0), 1), r1.ru_minflt - r0.ru_minflt, round(1000 * (r1.ru_stime - r0.ru_stime), 1),
                made.solver.get("model"), made.solver.get("iterations"), made.solver.get("weighted_wh")))
    return made
planner.make_plan = timed
import smartcharge.site.controller as ctl_mod
for name in dir(ctl_mod):
    if getattr(ctl_mod, name) is orig:
        setattr(ctl_mod, name, timed)
async def run():
    c, clock = rc.controller_at(1000, "phase", 0, True, stable)
    await c.replan({"start"}); await c.replan({"slot"})
    refs = rc.refs(1000)
    rc.start(c, refs[-1], 999_999, np.random.default_rng(1), clock.now())
    rec.clear()
    await c.replan({"session:SessionStarted"})
    print("first arrival", rec[-1])
    rng = np.random.default_rng(5)
    for k in range(rounds):
        ref = refs[k]
        session = c.state.sessions.get(ref)
        c.on_event(ev.SessionStopped(ref.station_id, ref.connector_id, session.transaction_id, clock.now(), session.energy_wh, "Local"))
        await c.replan({"session:SessionStopped"})
        left = rec[-1]
        rc.start(c, ref, 2_000_000 + k, rng, clock.now())
        await c.replan({"session:SessionStarted"})
        print("leave", left, "arrive", rec[-1], flush=True)
asyncio.run(run())
