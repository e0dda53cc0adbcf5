"""What starting the store's writer process costs, counted in CPU (s31-writer).

Each way to start it ("spawn": `python -m smartcharge.store_writer`, an interpreter and the
store's and ledger's imports per store; "fork": forked by the server's fork server,
smartcharge/store_forks.py) runs in a fresh process of its own - as a pytest worker or a
`smartcharge serve` is - that opens `--stores` stores one after another (each: migrations, the
writer started, a `ledger.boot` and a `station_seen` committed by it, closed), then stops its
fork server. Counted there: its own CPU and every descendant's, reaped (RUSAGE_CHILDREN: the
writers, the fork server with the writers it reaped), so the fork server's one start is in the
fork column. CPU is counted, not timed: it is what the suite's four workers share two cores
for; the wall time per store is printed with the load average for what it is worth.

    python -m benchmarks.writer_start [--stores 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def open_close(directory: str, stores: int) -> float:
    from smartcharge import ledger
    from smartcharge.store import SqliteStore, StoreOp
    began = time.perf_counter()
    for number in range(stores):
        store = await SqliteStore.open(f"{directory}/s{number}.sqlite", writer_process=True)
        now = datetime.now(UTC)
        await store.run(StoreOp(ledger.boot, "CP1", "Accepted", now, {}, vendor="v",
                                model="m", serial_number=None, firmware_version=None,
                                rebooted=False, max_power_w=22_000))
        await store.run(StoreOp("station_seen", "CP1", now))
        await store.close()
    return time.perf_counter() - began


def one(method: str, stores: int) -> None:
    """In the measuring process: `stores` stores opened and closed, the writers started by
    `method`; prints its counts as JSON."""
    from smartcharge import store_forks
    from smartcharge.store_writer import WriterProcess
    WriterProcess.start_method = method
    self_0 = cpu_s(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory() as directory:
        wall_s = asyncio.run(open_close(directory, stores))
    store_forks._stop()   # reaped: its CPU and its writers' in RUSAGE_CHILDREN
    print(json.dumps({"method": method, "stores": stores, "wall_s": wall_s,
                      "self_s": cpu_s(resource.RUSAGE_SELF) - self_0,
                      "children_s": cpu_s(resource.RUSAGE_CHILDREN)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=40)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.stores)
        return
    rows = []
    for method in ("spawn", "fork"):   # spawn first: the baseline, in the same run
        out = subprocess.run([sys.executable, "-m", "benchmarks.writer_start", "--one", method,
                              "--stores", str(args.stores)], check=True, capture_output=True,
                             text=True, cwd=TREE,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                 p for p in (TREE, os.environ.get("PYTHONPATH", "")) if p)})
        rows.append(json.loads(out.stdout.splitlines()[-1]))
    load = os.getloadavg()
    print(f"writer starts, {args.stores} stores each (open, 2 ops, close); "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r} "
          f"PYTHONPYCACHEPREFIX={os.environ.get('PYTHONPYCACHEPREFIX', '')!r} (the suite's "
          f"conftest sets a prefix: its processes read bytecode)")
    print("| start | writers' CPU per store (children) | server's CPU per store | "
          "total per store | wall per store |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        n = row["stores"]
        print(f"| {row['method']} | {row['children_s'] / n * 1000:.1f} ms | "
              f"{row['self_s'] / n * 1000:.1f} ms | "
              f"{(row['children_s'] + row['self_s']) / n * 1000:.1f} ms | "
              f"{row['wall_s'] / n * 1000:.0f} ms |")
    total = {row["method"]: row["children_s"] + row["self_s"] for row in rows}
    print(f"fork / spawn, total CPU: {total['fork'] / total['spawn']:.2f}")


if __name__ == "__main__":
    main()
