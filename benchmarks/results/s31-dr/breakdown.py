"""Inclusive thread CPU of the synchronous pieces of a DR event's round, in-process
(dr_round_cpu's harness, --store)."""
import asyncio, time, sys, functools, os
from collections import defaultdict
import benchmarks.dr_round_cpu as B
from smartcharge.site.dispatch import Dispatcher
from smartcharge.ocpp.v16.station_port import V16StationPort
from smartcharge.ocpp.v16 import station_port as SP
from smartcharge.site import held_defaults as HD
from smartcharge.ocpp import central

ACC = defaultdict(float); N = defaultdict(int); ON = [False]
depth = [0]
def wrap(owner, name, label=None):
    f = getattr(owner, name); label = label or name
    @functools.wraps(f)
    def w(*a, **k):
        if not ON[0] or depth[0]:
            return f(*a, **k)
        depth[0] += 1
        t = time.thread_time()
        try: return f(*a, **k)
        finally:
            ACC[label] += time.thread_time() - t; N[label] += 1; depth[0] -= 1
    setattr(owner, name, w)

for n in ["power_schedule", "_default_steps", "_held_kept", "_wanted_defaults", "_default_changes",
          "_split", "_record", "_idle_changes", "_under_change", "_defaults_key"]:
    wrap(Dispatcher, n)
for n in ["_schedule", "_built", "preview"]:
    wrap(V16StationPort, n, "port." + n)
wrap(SP, "installed_from_payload", "installed_from_payload")
wrap(HD, "envelope", "envelope")
wrap(central.CentralSystemBase, "_answered", "adapter._answered")
wrap(central.CentralSystemBase, "_tell_clock_moved", "adapter._tell_clock_moved")

orig = B.plan_and_send
async def pas(controller, dispatcher, clock, reason, profiler=None):
    ACC.clear(); N.clear()
    ON[0] = reason.startswith("dr:")
    r = await orig(controller, dispatcher, clock, reason, profiler)
    if ON[0]:
        req = r["requests"]
        print(f"event round: loop CPU {r['cpu_s']:.3f} s, {req} requests ({r['kinds']}), {r['cpu_s']/req*1e6:.0f} us/request")
        tot = 0
        for k, v in sorted(ACC.items(), key=lambda x: -x[1]):
            print(f"  {k:28s} {v*1e3:8.1f} ms  {N[k]:6d} calls  {v/req*1e6:6.1f} us/request")
            tot += v
        print(f"  sum of these (some nest? no: outermost only) {tot*1e3:.1f} ms = {tot/r['cpu_s']*100:.0f}% of the round")
    ON[0] = False
    return r
B.plan_and_send = pas
rows = asyncio.run(B.measure(1000, int(sys.argv[1]) if len(sys.argv) > 1 else 2, None, False, True))
print("load", os.getloadavg())
