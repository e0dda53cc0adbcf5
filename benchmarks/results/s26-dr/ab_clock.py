import sys, time, asyncio
import smartcharge.turn_share as ts
from benchmarks import dr_round_cpu as d
mode = sys.argv[1]
if mode == "perf":
    orig = ts.TurnShare.__init__
    def init(self, *a, **k):
        k.setdefault("clock", time.perf_counter); orig(self, *a, **k)
    ts.TurnShare.__init__ = init
rows = asyncio.run(d.measure(1000, int(sys.argv[2]), None))
cpu = [r["event"]["cpu_s"] for r in rows]; c2 = [r["cancel"]["cpu_s"] for r in rows]
import os
print(mode, "event", [round(x,3) for x in cpu], "cancel", [round(x,3) for x in c2], rows[-1]["event"]["requests"], os.getloadavg()[0])
