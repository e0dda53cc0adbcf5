# python guard_act.py 5000: CPU of each step of a guard pass that acts on the grid and every feeder over its limit (s33-stall)
import asyncio, time, gc, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from benchmarks.replan_controller import controller_at, meters_move
from smartcharge import events as ev

async def main(n):
    c, clock = controller_at(n, "power", 1, warm=True)
    gc.disable()
    await c.replan({"start"})
    for rep in range(3):
        clock.advance(60)
        now = clock.now()
        for ref, s in list(c.state.sessions.items()):
            c.on_event(ev.MeterSampled(ref.station_id, ref.connector_id, s.transaction_id, now, "Sample.Periodic",
                                       energy_register_wh=s.energy_wh + 100, power_w=7000.0, received_at=now))
        g = c.guard._check(now)
        steps = []
        while True:
            t = time.thread_time()
            try:
                next(g)
            except StopIteration as e:
                steps.append(time.thread_time() - t); found = e.value; break
            steps.append(time.thread_time() - t)
        print(f"pass {rep}: overloads {[(o.node, o.unit) for o in found][:3]}..{len(found)}, {len(steps)} steps, longest {max(steps)*1000:.1f} ms (#{steps.index(max(steps))} of {len(steps)}), last {steps[-1]*1000:.1f}")
import logging; logging.basicConfig(level=logging.WARNING, stream=open("/dev/null", "w"))
asyncio.run(main(int(sys.argv[1])))
