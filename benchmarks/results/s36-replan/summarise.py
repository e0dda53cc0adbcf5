"""Summarise alternate.sh's output: per tree, the steady runs' arrivals and departures
(planner-thread CPU ms: median, min, max; HiGHS ms median; iterations) and the stage medians."""
import json, re, sys, statistics as st
from collections import defaultdict
arr, dep, highs_a, it_a, stages = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
tree = None
for line in open(sys.argv[1]):
    if line.startswith("== ") and not line.startswith("== end"):
        tree = line.split()[1]
        print(line.strip())
    elif line.startswith("== end"):
        print(line.strip())
    elif line.startswith(("arriv", "leave")):
        parts = line.split()
        k = 2 if parts[0] in ("arrive", "leave") else 1
        ms, hms, it = float(parts[k]), float(parts[k + 3]), int(parts[k + 5])
        (arr if parts[0].startswith("arriv") else dep)[tree].append(ms)
        if parts[0].startswith("arriv"):
            highs_a[tree].append(hms); it_a[tree].append(it)
    elif line.startswith("{"):
        stages[tree].append(json.loads(line))
def q(v):
    return f"median {st.median(v):.1f} min {min(v):.1f} max {max(v):.1f} (n {len(v)})"
for t in arr:
    print(t)
    print("  arrivals   ", q(arr[t]), " highs median", st.median(highs_a[t]), " iterations median", st.median(it_a[t]))
    print("  departures ", q(dep[t]))
    keys = stages[t][0].keys()
    for k in keys:
        vals = [r[k] for r in stages[t] if isinstance(r.get(k), (int, float))]
        if vals and not isinstance(stages[t][0][k], str):
            print(f"    {k:42s} {st.median(vals):9.2f}")
