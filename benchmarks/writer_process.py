"""The store's real writer, thread or process, behind a busy event loop (s28-writer, issue 10).

One event loop, one `SqliteStore` on a file with `sessions` open sessions; `rate` MeterValues a
second (`ledger.meter_values_sent` as a `StoreOp`, six sampled values each, as the load simulator
sends) from as many "stations", each awaiting its answer as the adapters do; meanwhile a task
keeps the loop busy: it spins in pure Python for `busy_ms` and yields, `busy_share` of the
time (a loop saturated by frames, dispatch and the guard, whose turns the answers wait
behind). The same store code twice, alternated: `writer_process=False` (the op runs on the
writer thread, which needs the GIL back after every SQLite step) and `writer_process=True`
(the op runs in the writer process). Prints per mode and round: submit -> answer p50 / p99 /
max, the writer's groups (count, size), the loop thread's CPU per MeterValues for the store's
part, and the load average.

    python -m benchmarks.writer_process [--rounds 3] [--seconds 20] [--rate 83]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta

from smartcharge import ledger
from smartcharge.metering import parse_meter_values
from benchmarks.writer_cost import meter_value
from smartcharge.store import SqliteStore, StoreOp

T0 = datetime(2026, 1, 1, 8, tzinfo=UTC)


def meter_values(station: str, station_tx_id: int, at: datetime, register_wh: int) -> StoreOp:
    """As the adapters send it (s28-writer): the frame's meter_value, parsed by the writer; the
    adapter's own parse (for its events) is done here too, as the loop does it."""
    sampled = meter_value(at, register_wh)
    parse_meter_values(sampled)
    return StoreOp(ledger.meter_values_sent, station_id=station, connector_id=1,
                   station_tx_id=station_tx_id, meter_value=sampled,
                   payload={"connectorId": 1, "transactionId": station_tx_id,
                            "meterValue": sampled}, at=at, max_power_w=22_000)


async def prepare(path: str, sessions: int) -> list[tuple[str, int]]:
    store = await SqliteStore.open(path)

    def start(tx) -> list[tuple[str, int]]:
        out = []
        for index in range(sessions):
            station = f"S{index:05d}"
            started = ledger.start_transaction(
                tx, station_id=station, connector_id=1, id_tag="T", meter_start_wh=0,
                timestamp=T0, reservation_id=None, payload={}, answer_status="Accepted", at=T0,
                max_power_w=22_000)
            out.append((station, started.transaction_id))
        return out
    try:
        return await store.run(start)
    finally:
        await store.close()


async def busy_loop(share: float, busy_ms: float, stop: asyncio.Event, spent: list) -> None:
    """Spins `busy_ms` of pure Python, then sleeps so that spinning is `share` of the time;
    adds its own CPU to `spent`."""
    idle_s = busy_ms / 1000 * (1 - share) / share
    while not stop.is_set():
        cpu = time.thread_time()
        end = time.perf_counter() + busy_ms / 1000
        n = 0
        while time.perf_counter() < end:
            n += 1
        spent[0] += time.thread_time() - cpu
        await asyncio.sleep(idle_s)


async def one_round(path: str, sessions: list, process: bool, seconds: float, rate: float,
                    share: float, busy_ms: float, minute: int) -> dict:
    store = await SqliteStore.open(path, writer_process=process)
    latencies: list[float] = []
    spin_cpu = [0.0]
    stop = asyncio.Event()
    spinner = asyncio.ensure_future(busy_loop(share, busy_ms, stop, spin_cpu))

    async def station(k: int, station_id: str, tx_id: int, count: int) -> None:
        await asyncio.sleep(k / rate)   # spread over the first interval
        for n in range(count):
            at = T0 + timedelta(minutes=minute + n, seconds=k % 60)
            op = meter_values(station_id, tx_id, at, 1000 * (minute + n + 1))
            t0 = time.perf_counter()
            await store.run(op)
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(max(0.0, len(sessions) / rate - (time.perf_counter() - t0)))

    per_station = max(1, int(seconds * rate / len(sessions)))
    t_start, cpu_start = time.perf_counter(), time.thread_time()
    try:
        await asyncio.gather(*(station(k, s, t, per_station)
                               for k, (s, t) in enumerate(sessions)))
    finally:
        stop.set()
        await spinner
        loop_cpu = time.thread_time() - cpu_start - spin_cpu[0]
        await store.close()
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000  # noqa: E731
    return {"n": len(ordered), "p50": pick(0.5), "p99": pick(0.99), "max": ordered[-1] * 1000,
            "wall": time.perf_counter() - t_start, "cpu_us": loop_cpu / len(ordered) * 1e6}


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="writer-process-") as tmp:
        path = os.path.join(tmp, "w.sqlite")
        sessions = await prepare(path, args.sessions)
        print(f"# {args.sessions} open sessions, {args.rate:.0f} MeterValues/s for "
              f"{args.seconds:.0f} s a round, the loop spinning {args.busy_share:.0%} of the "
              f"time in {args.busy_ms:.0f} ms slices; rounds alternate thread / process")
        print("| round | writer | load avg (start) | MeterValues | p50 | p99 | max | the loop "
              "thread's CPU per MeterValues (the spinner's excluded) |")
        print("|---|---|---|---:|---:|---:|---:|---:|")
        minute = 0
        for round_ in range(args.rounds):
            for process in ((False, True) if round_ % 2 == 0 else (True, False)):
                load = " ".join(f"{x:.1f}" for x in os.getloadavg())
                r = await one_round(path, sessions, process, args.seconds, args.rate,
                                    args.busy_share, args.busy_ms, minute)
                minute += int(args.seconds * args.rate / len(sessions)) + 1
                print(f"| {round_ + 1} | {'process' if process else 'thread'} | {load} | "
                      f"{r['n']} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['max']:.0f} ms | "
                      f"{r['cpu_us']:.0f} us |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=83.0)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--busy-share", type=float, default=0.8)
    parser.add_argument("--busy-ms", type=float, default=8.0)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
