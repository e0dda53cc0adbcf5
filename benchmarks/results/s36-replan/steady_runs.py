"""s35-replan's steady.py + s35-warm's runs.py in one: one controller (phase, N = 1 000, stable
on/off), the benchmark's first arrival, then ROUNDS times a car leaves and another arrives;
each make_plan's planner-thread CPU (thread_time, the thread that runs it), its HiGHS runs
(what, iterations, thread ms), the plan's weighted energy and objective.

    TREE=<tree> python3 steady_runs.py on|off ROUNDS [HOOK.py ...]

HOOK files are exec'd after the imports (experiments; none is needed for the tree's own code).
"""
import sys, os, asyncio, functools, logging, time, json
import numpy as np
sys.path.insert(0, os.environ.get("TREE", "/work/wt-replan"))
from benchmarks import replan_controller as rc
from smartcharge import events as ev
from smartcharge.site import planner
from optimizer import lp as lp_mod
print("tree", lp_mod.__file__.rsplit("/optimizer/", 1)[0], flush=True)
logging.getLogger("smartcharge.site.guard").setLevel(logging.CRITICAL)
stable = sys.argv[1] == "on"; rounds = int(sys.argv[2])
for hook in sys.argv[3:]:
    exec(open(hook).read())
N = int(os.environ.get("N", "1000"))
runs = []
orig_run = lp_mod.HighsModel._run
def logged_run(self, end, what):
    t0 = time.thread_time()
    out = orig_run(self, end, what)
    runs.append((what[:22], out[2], round(1000 * (time.thread_time() - t0), 1)))
    return out
lp_mod.HighsModel._run = logged_run
orig = planner.make_plan
out = []
@functools.wraps(orig)
def timed(*a, **k):
    runs.clear()
    t0 = time.thread_time()
    made = orig(*a, **k)
    ms = round(1000 * (time.thread_time() - t0), 1)
    s = made.solver
    out.append({"ms": ms, "highs_ms": round(sum(r[2] for r in runs), 1),
                "iterations": s.get("iterations"), "weighted_wh": s.get("weighted_wh"),
                "objective": s.get("objective"), "energy_first": s.get("energy_first"),
                "runs": list(runs)})
    return made
planner.make_plan = timed
import smartcharge.site.controller as ctl_mod
for name in dir(ctl_mod):
    if getattr(ctl_mod, name) is orig:
        setattr(ctl_mod, name, timed)
def show(label):
    r = out[-1]
    print(f"{label:10s} {r['ms']:7.1f} ms  highs {r['highs_ms']:6.1f}  it {r['iterations']:5}  "
          f"wh {r['weighted_wh']!r}  {r['energy_first']}", flush=True)
    if os.environ.get("RUNS"):
        print("           ", r["runs"], flush=True)
async def run():
    c, clock = rc.controller_at(N, "phase", int(os.environ.get("SEED", "0")), True, stable)
    await c.replan({"start"}); show("start")
    await c.replan({"slot"}); show("slot")
    refs = rc.refs(N)
    rc.start(c, refs[-1], 999_999, np.random.default_rng(1), clock.now())
    await c.replan({"session:SessionStarted"}); show("arrival")
    rng = np.random.default_rng(5)
    for k in range(rounds):
        ref = refs[k]
        session = c.state.sessions.get(ref)
        c.on_event(ev.SessionStopped(ref.station_id, ref.connector_id, session.transaction_id,
                                     clock.now(), session.energy_wh, "Local"))
        await c.replan({"session:SessionStopped"}); show(f"leave {k}")
        rc.start(c, ref, 2_000_000 + k, rng, clock.now())
        await c.replan({"session:SessionStarted"}); show(f"arrive {k}")
asyncio.run(run())
