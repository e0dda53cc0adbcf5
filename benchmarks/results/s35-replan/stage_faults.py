# s35-replan: replan_stages.py with each stage's minor page faults and system time (RUSAGE_THREAD) and
# finer stages (rounding's parts, build_lp's parts); TREE=<tree> python3 stage_faults.py off|on REPEATS
import sys, os, importlib, json, resource, time, functools, threading, numpy as np
sys.path.insert(0, os.environ.get("TREE", "/work/wt-replan"))
rs = importlib.import_module("benchmarks.replan_stages")
flt = {}
def rus():
    r = resource.getrusage(resource.RUSAGE_THREAD); return r.ru_minflt, r.ru_stime
def _wrap(owner, name, label, acc, local):
    f = getattr(owner, name, None)
    if f is None: return
    @functools.wraps(f)
    def timed(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            return f(*args, **kwargs)
        stack = getattr(local, "stack", None)
        if stack is None: stack = local.stack = []
        now = time.thread_time(); fl, st = rus()
        if stack:
            outer, started, f0, s0 = stack[-1]
            acc[outer] = acc.get(outer, 0.0) + now - started
            flt[outer] = flt.get(outer, 0) + fl - f0
            flt[outer + " sys"] = flt.get(outer + " sys", 0) + st - s0
        stack.append([label, now, fl, st])
        try:
            return f(*args, **kwargs)
        finally:
            end = time.thread_time(); fl, st = rus()
            label_here, started, f0, s0 = stack.pop()
            acc[label_here] = acc.get(label_here, 0.0) + end - started
            flt[label_here] = flt.get(label_here, 0) + fl - f0
            flt[label_here + " sys"] = flt.get(label_here + " sys", 0) + st - s0
            if stack:
                stack[-1][1] = end; stack[-1][2] = fl; stack[-1][3] = st
    setattr(owner, name, timed)
first = []
def wrap_all(owner, name, label, acc, local):
    _wrap(owner, name, label, acc, local)
    if not first:
        first.append(1)
        from optimizer import safety, baselines, lp, forward
        S = importlib.import_module("optimizer.solve")
        for o, n, l in [(safety, "_reduce_nodes", "r.reduce_nodes"), (safety, "_reduce_energy", "r.reduce_energy"),
            (safety, "_enforce_min_rate", "r.enforce_min"), (safety, "feasible", "r.feasible"),
            (safety, "node_loads", "r.node_loads"), (baselines, "top_up", "r.top_up"),
            (lp.LPArrays, "to_power", "lp.to_power"), (lp, "_subtree_entries", "lp.subtree_entries"),
            (lp, "tight_upper_w", "lp.tight_upper"), (lp.HighsModel, "energy_bound_wh", "lp.energy_bound"),
            (S, "weighted_energy_wh", "weighted_energy"), (forward, "pull_forward", "pf.pull_forward"),
            (S, "feasible", "s.feasible"), (S, "evaluate", "s.evaluate")]:
            _wrap(o, n, l, acc, local)
rs._wrap = wrap_all
import builtins
real_print = builtins.print
def pr(*a, **k):
    row = json.loads(a[0]); row["faults"] = dict(flt); flt.clear()
    real_print(json.dumps(row), flush=True)
rs.print = pr
rs.main("phase", sys.argv[1] == "on", True, int(sys.argv[2]))
