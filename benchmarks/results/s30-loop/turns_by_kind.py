"""Summarise the long turns of a serve_probe stats JSON (SMARTCHARGE_BENCH_STATS)."""
import json, sys, collections
stats = json.load(open(sys.argv[1]))
over = float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
off = stats["clock_offset_s"]
gcs = [(at - off - pause, at - off, gen, cpu) for at, gen, pause, cpu, *_ in stats["gc"]]
turns = stats["turns"]
print("turns recorded", len(turns), "over", over)
cats = collections.Counter(); cat_max = {}; gc_in = collections.Counter(); cat_cpu = collections.Counter()
for at, spent, n, kinds, span in turns:
    if spent <= over: continue
    top = kinds[0][0] if kinds else "?"
    # collections inside this turn
    inside = [g for g in gcs if g[0] >= span[0] - 1e-4 and g[1] <= span[1] + 1e-4]
    gcpu = sum(g[3] for g in inside)
    rest = spent - gcpu
    key = top if rest > over else "(under %d ms without its collection) %s" % (over*1000, top)
    cats[key] += 1; cat_cpu[key] += spent
    cat_max[key] = max(cat_max.get(key, 0), spent)
    if inside: gc_in[key] += 1
for k, c in cats.most_common(25):
    print(f"{c:5d} max {cat_max[k]*1000:6.1f} ms  with gc {gc_in[k]:4d}  {k}")
g = sorted(stats["gc"], key=lambda e: -e[3])[:10]
print("longest collections (gen, cpu ms):", [(e[1], round(e[3]*1000,1)) for e in g])
print("collections over 20 ms CPU by gen:", collections.Counter(e[1] for e in stats["gc"] if e[3] > 0.02),
      "of", collections.Counter(e[1] for e in stats["gc"]))
print("share:", stats.get("share"))
