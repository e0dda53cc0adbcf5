# python guard_steps.py 10000: CPU of each step of a guard pass (SiteGuard._check) at N connectors, every meter moved (s31-p99)
import asyncio, time, gc, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from benchmarks.replan_controller import controller_at, meters_move

def where(g):
    out = []
    while g is not None:
        fr = g.gi_frame
        if fr is None: break
        out.append(f"{fr.f_code.co_name}:{fr.f_lineno}")
        g = g.gi_yieldfrom
    return ">".join(out)

async def main(n):
    c, clock = controller_at(n, "power", 1, warm=True)
    gc.disable()
    await c.replan({"start"})
    for rep in range(4):
        meters_move(c, clock, 60)
        g = c.guard._check(clock.now())
        steps = []
        before = "start"
        while True:
            t = time.thread_time()
            try:
                next(g)
            except StopIteration:
                steps.append(((time.thread_time() - t) * 1000, before, "end")); break
            steps.append(((time.thread_time() - t) * 1000, before, where(g)))
            before = where(g)
        s = sorted(steps, key=lambda x: -x[0])
        print(f"pass {rep}: {len(steps)} steps, {sum(x[0] for x in steps):.1f} ms; longest", [(round(a, 1), b, e) for a, b, e in s[:3]])
asyncio.run(main(int(sys.argv[1])))
