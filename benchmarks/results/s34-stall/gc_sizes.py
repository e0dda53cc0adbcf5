"""python benchmarks/results/s34-stall/gc_sizes.py STATS.json: for a run with
SMARTCHARGE_PROBE_GCDEBUG=1 (serve_probe.py lists the young generation as each collection
starts), the window's longest collections with the objects they traversed, the gap since the
collection before, and the CPU per object (s34-stall)."""

import json
import statistics
import sys

stats = json.load(open(sys.argv[1]))
start, end = stats["window"]
pauses, seen = stats["gc"], stats["gc_seen"]
rows = []
for i, ((at, generation, _wall, cpu, _found), (_, _, _, sizes, _, kinds)) in enumerate(
        zip(pauses, seen)):
    gap = at - pauses[i - 1][0] if i else 0.0
    rows.append((at, generation, cpu, sum(sizes), gap, kinds))
window = [r for r in rows if start <= r[0] <= end]
for at, generation, cpu, objects, gap, kinds in sorted(window, key=lambda r: -r[2])[:12]:
    print(f"t+{at - start:6.2f} s gen {generation}: {cpu * 1000:5.1f} ms CPU, {objects:6d} "
          f"objects ({cpu * 1e9 / max(objects, 1):.0f} ns each), {gap * 1000:6.0f} ms after the "
          f"last; {', '.join(f'{k} {n}' for k, n in kinds[:5])}")
print(f"{len(window)} collections in the window: objects median {statistics.median(r[3] for r in window):.0f}, "
      f"CPU median {statistics.median(r[2] for r in window) * 1000:.2f} ms; gaps median "
      f"{statistics.median(r[4] for r in window) * 1000:.0f} ms, max {max(r[4] for r in window) * 1000:.0f} ms")
