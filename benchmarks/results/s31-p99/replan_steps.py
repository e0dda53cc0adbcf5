# python replan_steps.py 10000: CPU of each step of a re-plan picture and of the site reading at N connectors (s31-p99)
import asyncio, time, gc, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from benchmarks.replan_controller import controller_at, meters_move
from smartcharge.site import plan_inputs

def steps_cpu(gen):
    out = []
    while True:
        t = time.thread_time()
        try:
            next(gen)
        except StopIteration as done:
            out.append(time.thread_time() - t)
            return out, done.value
        out.append(time.thread_time() - t)

async def main(n):
    c, clock = controller_at(n, "power", 1, warm=True)
    gc.disable()
    await c.replan({"start"})
    meters_move(c, clock, 60)
    for label, make in (("plan_inputs.read_steps", lambda: plan_inputs.read_steps(c, clock.now())),
                        ("site reading steps", lambda: c._reading_steps())):
        for rep in range(3):
            cpu, _ = steps_cpu(make())
            s = sorted(cpu)
            print(f"{label}: {len(cpu)} steps, total {sum(cpu)*1000:.1f} ms, max {s[-1]*1000:.2f} ms (step #{cpu.index(s[-1])}), 2nd {s[-2]*1000:.2f}")
    t = time.thread_time(); await c.replan({"x"}); print("replan whole (loop thread CPU, solve in thread)", (time.thread_time()-t)*1000)
asyncio.run(main(int(sys.argv[1])))
