import asyncio, gc, time, os
import benchmarks.dr_round_cpu as B
stats = {"n": [0,0,0], "t": [0.0,0.0,0.0]}; start = {}
def cb(phase, info):
    if not ON[0]: return
    g = info["generation"]
    if phase == "start": start[g] = time.thread_time()
    else:
        stats["n"][g] += 1; stats["t"][g] += time.thread_time() - start.get(g, time.thread_time())
ON = [False]
gc.callbacks.append(cb)
orig = B.plan_and_send
async def pas(controller, dispatcher, clock, reason, profiler=None):
    ON[0] = reason.startswith("dr:")
    for k in stats: stats[k] = [0, 0, 0] if k == "n" else [0.0, 0.0, 0.0]
    r = await orig(controller, dispatcher, clock, reason, profiler)
    if ON[0]:
        print(f"event round: loop CPU {r['cpu_s']:.3f} s, {r['requests']} requests; collections per generation {stats['n']}, their CPU {[round(x*1e3,1) for x in stats['t']]} ms; threshold {gc.get_threshold()}")
    ON[0] = False
    return r
B.plan_and_send = pas
asyncio.run(B.measure(1000, 2, None, False, True))
print("load", os.getloadavg())
