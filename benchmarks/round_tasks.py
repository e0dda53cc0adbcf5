"""The loop CPU of a dispatch round's per-station task machinery, alone: a task per station (and a
second task awaiting it, as `DispatchRound._station` does), each under its lock and a FIFO
semaphore of 64, three requests each answered one loop turn later - against 64 workers pulling
the stations from a queue. No OCPP, no sockets: what a pool of senders could save (s21-dr).

    python -m benchmarks.round_tasks
"""
import asyncio, time, statistics

N, SLOTS, REQ = 500, 64, 3

async def answer():
    f = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(f.set_result, None)
    await f

async def per_station():
    sem = asyncio.Semaphore(SLOTS)
    locks = [asyncio.Lock() for _ in range(N)]
    async def station(i):
        async with locks[i]:
            async with sem:
                for _ in range(REQ):
                    await answer()
    async def side(t):   # the round's second task per station (_station awaiting _decrease)
        await t
    tasks = [asyncio.ensure_future(station(i)) for i in range(N)]
    await asyncio.gather(*[asyncio.ensure_future(side(t)) for t in tasks])

async def pool():
    q = asyncio.Queue()
    locks = [asyncio.Lock() for _ in range(N)]
    for i in range(N):
        q.put_nowait(i)
    async def worker():
        while not q.empty():
            i = q.get_nowait()
            async with locks[i]:
                for _ in range(REQ):
                    await answer()
    await asyncio.gather(*[asyncio.ensure_future(worker()) for _ in range(SLOTS)])

def measure(fn):
    out = []
    for _ in range(20):
        t = time.thread_time()
        asyncio.run(fn())
        out.append(time.thread_time() - t)
    return statistics.median(out)

def main() -> None:
    base = measure(lambda: asyncio.sleep(0))
    a, b = measure(per_station), measure(pool)
    print(f"per station tasks: {(a-base)*1e3:.1f} ms, pool of {SLOTS}: {(b-base)*1e3:.1f} ms, "
          f"difference per station {(a-b)/N*1e6:.0f} us (N={N}, {REQ} requests each)")


if __name__ == "__main__":
    main()
