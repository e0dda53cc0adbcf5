"""steady.py (s35-replan) with every HiGHS run of each re-plan logged: what it solved, its
iterations, and the kept basis's state just before it (HiGHS's basis validity, row count)."""
import sys, os, asyncio, functools, logging, time, numpy as np
sys.path.insert(0, os.environ.get("TREE", "/work/wt-warm"))
import highspy
from benchmarks import replan_controller as rc
from smartcharge import events as ev
from smartcharge.site import planner
from optimizer import lp as lp_mod, warm as warm_mod
if os.environ.get("STATS"): exec(open("benchmarks/results/s35-warm/stats_hook.py").read())
if os.environ.get("HLOG"): exec(open("benchmarks/results/s35-warm/log_hook.py").read())
if os.environ.get("FIX"): exec(open("benchmarks/results/s35-warm/fix_hook.py").read())
if os.environ.get("PRERUN"): exec(open("benchmarks/results/s35-warm/prerun_hook.py").read())
if os.environ.get("FRESH"): exec(open("benchmarks/results/s35-warm/fresh_hook.py").read())
if os.environ.get("VARIANTS"): exec(open("benchmarks/results/s35-warm/variants_hook.py").read())
if os.environ.get("PROBE"): exec(open("benchmarks/results/s35-warm/probe_hook.py").read())
if os.environ.get("BISECT"): exec(open("benchmarks/results/s35-warm/bisect_hook.py").read())
if os.environ.get("REFORM"): exec(open("benchmarks/results/s35-warm/reform_hook.py").read())
if os.environ.get("PREFLIP"): exec(open("benchmarks/results/s35-warm/preflip_hook.py").read())
if os.environ.get("SPY"): exec(open(os.environ["SPY"]).read())
logging.getLogger("smartcharge.site.guard").setLevel(logging.CRITICAL)
stable = sys.argv[1] == "on"; rounds = int(sys.argv[2])
N = int(os.environ.get("N", "1000"))
runs = []
orig_run = lp_mod.HighsModel._run
def logged_run(self, end, what):
    h = self.highs
    b = h.getBasis()
    pre = (b.valid, int(h.getNumCol()), int(h.getNumRow()), self._energy_row)
    t0 = time.thread_time()
    out = orig_run(self, end, what)
    runs.append((what, out[2], pre, round(1000 * (time.thread_time() - t0), 1)))
    return out
lp_mod.HighsModel._run = logged_run
orig_update = warm_mod.WarmStart._update
def logged_update(self, *a, **k):
    m = orig_update(self, *a, **k)
    if m is not None:
        b = m.highs.getBasis()
        runs.append(("<after _update>", None, (b.valid, int(m.highs.getNumCol()), int(m.highs.getNumRow())), m.first_options))
    return m
warm_mod.WarmStart._update = logged_update
orig = planner.make_plan
@functools.wraps(orig)
def timed(*a, **k):
    runs.clear()
    made = orig(*a, **k)
    print("  plan", made.solver.get("model"), made.solver.get("iterations"), made.solver.get("energy_first"), made.solver.get("weighted_wh"))
    for r in runs:
        print("   ", r)
    return made
planner.make_plan = timed
import smartcharge.site.controller as ctl_mod
for name in dir(ctl_mod):
    if getattr(ctl_mod, name) is orig:
        setattr(ctl_mod, name, timed)
async def run():
    c, clock = rc.controller_at(N, "phase", int(os.environ.get("SEED", "0")), True, stable)
    await c.replan({"start"}); await c.replan({"slot"})
    refs = rc.refs(N)
    rc.start(c, refs[-1], 999_999, np.random.default_rng(1), clock.now())
    print("first arrival")
    await c.replan({"session:SessionStarted"})
    rng = np.random.default_rng(5)
    for k in range(rounds):
        ref = refs[k]
        session = c.state.sessions.get(ref)
        c.on_event(ev.SessionStopped(ref.station_id, ref.connector_id, session.transaction_id, clock.now(), session.energy_wh, "Local"))
        print("leave", k)
        await c.replan({"session:SessionStopped"})
        rc.start(c, ref, 2_000_000 + k, rng, clock.now())
        print("arrive", k)
        await c.replan({"session:SessionStarted"})
asyncio.run(run())
