# python picture_pieces.py 5000: CPU of forget_ended and each piece of a re-plan picture, and of its reserves, in-process (s33-stall)
import asyncio, time, gc, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
from benchmarks.replan_controller import controller_at, meters_move
from smartcharge.site import plan_inputs

async def main(n):
    c, clock = controller_at(n, "power", 1, warm=True)
    gc.disable()
    await c.replan({"start"})
    for _ in range(3):
        meters_move(c, clock, 60)
    cl = c.closed_loop
    print("sizes ev_cap_w", len(cl.ev_cap_w), "sampled", len(cl._sampled), "said", len(cl._said), "declined", len(cl.declined_at), "sessions", len(c.state.sessions))
    for rep in range(3):
        t = time.thread_time(); cl.forget_ended(clock.now()); a = time.thread_time() - t
        gen = plan_inputs.read_steps(c, clock.now())
        cpu = []
        while True:
            t = time.thread_time()
            try:
                next(gen)
            except StopIteration:
                cpu.append(time.thread_time() - t); break
            cpu.append(time.thread_time() - t)
        print(f"forget_ended {a*1000:.2f} ms; read_steps first {cpu[0]*1000:.2f} last {cpu[-1]*1000:.2f} max {max(cpu)*1000:.2f} ms of {len(cpu)}")
asyncio.run(main(int(sys.argv[1])))

async def main2(n):
    c, clock = controller_at(n, "power", 1, warm=True)
    gc.disable()
    await c.replan({"start"})
    meters_move(c, clock, 60)
    from smartcharge.site import plan_inputs as pi
    for label in ("none", "kept all", "unbounded all"):
        if label == "kept all":
            for ref in c.topology.refs: c.kept_defaults_w[ref] = 3000.0
        if label == "unbounded all":
            c.kept_defaults_w.clear(); c.unbounded_idle.update(c.topology.refs)
        t = time.thread_time(); pi._unbounded_w(c); a = time.thread_time() - t
        now = clock.now()
        t = time.thread_time(); s = {ref for ref in c.state.sessions}; b = time.thread_time() - t
        t = time.thread_time(); pi.slots(c, now); d = time.thread_time() - t
        t = time.thread_time(); c.limits.effective_root_limit_w(*pi.slots(c, now)); e = time.thread_time() - t
        print(f"{label}: _unbounded_w {a*1000:.2f} ms, the sessions' set {b*1000:.2f} ms, slots {d*1000:.2f}, root limit {e*1000:.2f}")
asyncio.run(main2(int(sys.argv[1])))
