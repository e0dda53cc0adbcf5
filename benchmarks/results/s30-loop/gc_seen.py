import json, sys
s = json.load(open(sys.argv[1]))
seen = s["gc_seen"]
t0 = seen[0][0] if seen else 0
print("collections", len(seen))
rows = sorted(seen, key=lambda e: -e[2])[:int(sys.argv[2]) if len(sys.argv) > 2 else 12]
for at, gen, pause, sizes, found, kinds in rows:
    print(f"t={at-t0:6.1f} gen{gen} wall {pause*1000:6.1f} ms sizes {sizes} found {found}: " + ", ".join(f"{k} {n}" for k, n in kinds[:10]))
import statistics
for g in (0, 1):
    z = [sum(e[3]) for e in seen if e[1] == g]
    if z: print("gen", g, "objects traversed median", statistics.median(z), "max", max(z))
