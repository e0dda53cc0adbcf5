"""cProfile of one warm re-plan (replan_stages.py's scenario: phase, N = 1 000, one car
arrives) in the thread that runs it. PYTHONPATH=<tree> python3 replan_profile.py on|off [sort] [n]"""
import asyncio, cProfile, pstats, sys, os, logging
import numpy as np
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
from benchmarks import replan_controller as rc
from smartcharge.site import planner, plan_inputs, in_steps
logging.getLogger("smartcharge.site.guard").setLevel(logging.CRITICAL)
stable = sys.argv[1] == "on"
sort = sys.argv[2] if len(sys.argv) > 2 else "tottime"
n = int(sys.argv[3]) if len(sys.argv) > 3 else 45

async def prepared():
    c, clock = rc.controller_at(1000, "phase", 0, True, stable)
    await c.replan({"start"}); await c.replan({"slot"})
    rc.start(c, rc.refs(1000)[-1], 999_999, np.random.default_rng(1), clock.now())
    inputs = await in_steps.run_async(plan_inputs.read_steps(c, clock.now()), c.share)
    return c, inputs

from optimizer import lp as lp_mod
runs = []
for hook in os.environ.get("HOOKS", "").split():
    exec(open(hook).read())
c, inputs = asyncio.run(prepared())
prof = cProfile.Profile(timer=__import__("time").thread_time)
prof.enable()
made = planner.make_plan(c.topology, inputs, backend=c.settings.backend,
                         time_limit_s=c.settings.solve_time_limit_s, warm=c.warm)
prof.disable()
print(made.solver.get("iterations"), made.solver.get("weighted_wh"))
pstats.Stats(prof).sort_stats(sort).print_stats(n)
