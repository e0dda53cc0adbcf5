"""The server's CPU per inbound MeterValues, through real WebSockets (issue 10, s22-msgcost).

    python -m benchmarks.msg_cpu --trees /path/to/main . --repeats 2
    python -m benchmarks.msg_cpu --profile /tmp/loop.prof     # cProfile of the loop thread

One server process (`benchmarks/serve_probe.py`, the app `smartcharge serve` builds, SQLite in
WAL with `synchronous=FULL`, the site controller running) per tree, and the simulated OCPP 1.6J
stations of `benchmarks/load_stations.py` in their own processes (a car charging on every
connector, one MeterValues of six sampled values per station every `--interval-s`, sampled on
whole seconds: the burst the server really gets). No grid limit by default (`--cap-fraction
0`): no plans and no profiles, so what the window costs is the inbound path - the edge, the
library, our handler, the ledger and the store, the events to the site - and the server's
standing work (the guard's passes, the probes), which is there with or without messages.

Measured per tree, in the window once the set-up's queued samples are acknowledged: the CPU
time of each of the server's threads (`/proc/PID/task/*/stat`: the loop thread, the store's
writer thread, the rest), divided by the MeterValues the stations saw acknowledged in the
window. Thread CPU time hardly moves with the machine's load (wall time does): compare the
trees in the same run all the same, alternating (`--repeats`). Also: the young collections in
the window (count, the longest's CPU) and the loop's own longest CPU stretch between two
wake-ups of the server's 5 ms probe.

`--profile FILE`: the server's loop thread under cProfile (thread CPU time as its clock) for
the window only (SIGUSR1 / SIGUSR2 to `serve_probe.py`), written to FILE (first tree only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.load_stations import end_station_procs
from benchmarks.ocpp_load import (REPO, free_port, percentile, read_json, site_toml,
                                  stop_server, wait_listening)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int, names: dict[str, str]) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of `pid`, by kind: "loop" (the main thread,
    where the event loop runs), "writer" (the store's writer thread, named `store:...` in
    `names`: native id -> Python name), "other" (readers, the planner's thread...)."""
    spent = {"loop": 0.0, "writer": 0.0, "other": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                text = stat.read()
        except OSError:   # the thread ended meanwhile
            continue
        name = names.get(tid, "")
        fields = text.rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        kind = "loop" if tid == str(pid) else "writer" if name.startswith("store:") \
            else "other"
        spent[kind] += cpu_s
    return spent


async def measure(args, site_file: Path, url: str, server_pid: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.load_stations", str(site_file), url, str(part),
        str(args.station_procs), str(args.interval_s), "300", "--steady",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=REPO,
        limit=1 << 26) for part in range(args.station_procs)]
    try:
        await asyncio.gather(*(read_json(p, "ready", 300) for p in procs))
        await asyncio.sleep(args.settle_s)   # the controller's first plans, a freeze
        threads_file = Path(args.stats_file + ".threads")
        os.kill(server_pid, signal.SIGUSR1)   # it names its threads (and starts a profile)
        for _ in range(100):
            if threads_file.exists():
                break
            await asyncio.sleep(0.05)   # a file from another process: nothing to wait on
        await asyncio.sleep(0.05)
        names = json.loads(threads_file.read_text())
        started, cpu_before = time.time(), thread_cpu_s(server_pid, names)
        for p in procs:
            p.stdin.write(f"go {args.measure_s}\n".encode())
            await p.stdin.drain()
        results = await asyncio.gather(*(read_json(p, "result", args.measure_s + 120)
                                         for p in procs))
        cpu_after, ended = thread_cpu_s(server_pid, names), time.time()
        os.kill(server_pid, signal.SIGUSR2)
        for p in procs:
            p.stdin.write(b"stop\n")
            await p.stdin.drain()
    finally:
        await end_station_procs(procs)
    latencies = [x for r in results for x in r["latencies_s"]]
    return {"acknowledged": len(latencies), "window": (started, ended),
            "cpu": {k: cpu_after[k] - cpu_before[k] for k in cpu_before},
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "held": sum(r["held"] for r in results)}


def run_tree(tree: str, args, profile: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="msg-cpu-") as tmp:
        port = free_port()
        site_file = Path(tmp) / "site.toml"
        stats_file = Path(tmp) / "stats.json"
        site_file.write_text(site_toml(args.stations, port, str(Path(tmp) / "m.sqlite"),
                                       args.cap_fraction))
        log_path = Path(tmp) / "server.log"
        server_env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
        if profile:
            server_env["SMARTCHARGE_PROBE_CPROFILE"] = profile
        with open(log_path, "wb") as server_log:
            server = subprocess.Popen(
                [sys.executable, str(REPO / "benchmarks" / "serve_probe.py"), str(site_file),
                 str(stats_file)], stdout=server_log, stderr=subprocess.STDOUT, env=server_env)
            try:
                wait_listening(port, server, 120)
                result = asyncio.run(measure(argparse.Namespace(**{**vars(args),
                                                                   "profile": profile,
                                                                   "stats_file": str(stats_file)}),
                                             site_file, f"ws://127.0.0.1:{port}/ocpp",
                                             server.pid))
            finally:
                stop_server(server)
        stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        if not stats:
            print(f"# no statistics from the server; its log ends:\n"
                  f"{log_path.read_text(errors='replace')[-2000:]}")
    low, high = result["window"]
    young = [g for g in stats.get("gc", []) if low <= g[0] <= high and g[1] == 0]
    busy = [v for s, v in stats.get("busy", []) if low - 1 <= s <= high]
    guard = [g for g in stats.get("guard", []) if low <= g[0] <= high]
    result.update(guard_passes=len(guard), guard_cpu_s=sum(g[1] for g in guard),
                  guard_us_per_connector=sum(g[1] for g in guard) * 1e6
                  / max(sum(g[2] for g in guard), 1),
                  young=len(young), young_max_ms=max((g[3] for g in young), default=0) * 1000,
                  older=sum(1 for g in stats.get("gc", []) if low <= g[0] <= high
                            and g[1] > 0),
                  busy_max_ms=max(busy, default=float("nan")) * 1000)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs="+", default=[str(REPO)],
                        help="smartcharge trees to serve, the first is the baseline")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the trees")
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--interval-s", type=float, default=10.0,
                        help="real seconds between two MeterValues of one station")
    parser.add_argument("--measure-s", type=float, default=30.0)
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--station-procs", type=int, default=2)
    parser.add_argument("--cap-fraction", type=float, default=0.0)
    parser.add_argument("--profile", help="cProfile of the loop thread in the window, to FILE")
    args = parser.parse_args(argv)
    rows = []
    print(f"# {args.stations} stations, one MeterValues each every {args.interval_s:g} s "
          f"({args.stations / args.interval_s:.0f}/s offered), {args.measure_s:g} s windows, "
          f"cap {args.cap_fraction:.0%}; server CPU per acknowledged MeterValues, by thread")
    print("| tree | load avg | acknowledged | loop us | writer us | other us | all us "
          "| of it the guard's passes us (passes, us per connector) | young GCs (longest CPU) "
          "| loop's longest CPU stretch | p50 / p99 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for round_ in range(args.repeats):
        for index, tree in enumerate(args.trees):
            load = os.getloadavg()[0]
            profile = args.profile if args.profile and round_ == 0 and index == 0 else None
            r = run_tree(tree, args, profile)
            n = max(r["acknowledged"], 1)
            per = {k: v / n * 1e6 for k, v in r["cpu"].items()}
            label = "baseline " if index == 0 and len(args.trees) > 1 else ""
            rows.append((tree, per))
            older = f" +{r['older']} older" if r["older"] else ""
            print(f"| {label}{tree} | {load:.1f} → {os.getloadavg()[0]:.1f} | "
                  f"{r['acknowledged']} | {per['loop']:.0f} | {per['writer']:.0f} | "
                  f"{per['other']:.0f} | {sum(per.values()):.0f} | "
                  f"{r['guard_cpu_s'] / n * 1e6:.0f} ({r['guard_passes']}, "
                  f"{r['guard_us_per_connector']:.1f}) | {r['young']}{older} "
                  f"({r['young_max_ms']:.0f} ms) | {r['busy_max_ms']:.0f} ms | "
                  f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms |", flush=True)
    if len(args.trees) > 1:
        for tree in args.trees[1:]:
            mine = [sum(p.values()) for t, p in rows if t == tree]
            base = [sum(p.values()) for t, p in rows if t == args.trees[0]]
            print(f"# {tree}: all threads {sum(mine) / len(mine):.0f} us against "
                  f"{sum(base) / len(base):.0f} us per MeterValues (baseline), ratio "
                  f"{sum(mine) / len(mine) / (sum(base) / len(base)):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
