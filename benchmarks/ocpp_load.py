"""OCPP load: N simulated stations against one server process, each sending MeterValues at a
fixed rate. Reports connections held, sustained MeterValues/s with storage on, the p50/p99 time
from send to CALLRESULT, the boot storm's settle time, the server's longest event-loop stall and
its memory per station.

    python -m benchmarks.ocpp_load --stations 5000 --interval-s 60 --measure-s 90

The server runs in its own process (`benchmarks/serve_probe.py`: the app `smartcharge serve`
builds, plus a loop-lag probe); the simulated stations run in `--station-procs` further
processes (`benchmarks/load_stations.py`), so the benchmark measures the server, not its own
event loop. By default the grid cap is half of what the connectors could draw, so the site
controller plans and sends profiles while the stations sample. Loopback only; every run stops
by itself.

Only the MeterValues *sent* in the window are counted; the "offered" line says how they were
sent (per second, triggered by the server, in flight at the start) - read it before the p99.
`--steady` starts the window once the set-up is over (outboxes drained, the server's phase probes
done, the station processes' freeze behind them). `--breakdown` splits each call into stages
(station, wire, the server's budget, store queue, commit, resume, wire back) with the slowest
1 %'s share; `--py-spy FILE` / `--cprofile FILE` profile the server through the window only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.load_stations import PASSWORD, TAG, end_station_procs

REPO = Path(__file__).resolve().parent.parent

STATION_MAX_W = 3 * 230.0 * 32     # one 3-phase 32 A connector per station


def site_toml(stations: int, port: int, database: str, cap_fraction: float = 0.0) -> str:
    """`cap_fraction` > 0: a grid limit of that fraction of all connectors at their maximum, so
    the cap binds and the site controller plans and sends profiles to every station."""
    lines = ['[site]', 'name = "ocpp load benchmark"', '',
             '[server]', 'host = "127.0.0.1"', f'port = {port}', f'database = "{database}"',
             'heartbeat_interval_s = 300', 'call_timeout_s = 30', 'ping_interval_s = 60', '',
             '[auth]', f'id_tags = ["{TAG}"]', '']
    if cap_fraction > 0:
        lines += ['[grid]', f'limit_w = {cap_fraction * stations * STATION_MAX_W:.0f}', '']
    for index in range(stations):
        lines += ['[[stations]]', f'id = "LOAD{index:05d}"', f'password = "{PASSWORD}"',
                  'circuit = "grid"', '', '[[stations.connectors]]', 'id = 1', 'phases = 3',
                  'max_current_a = 32', '']
    return "\n".join(lines)


def keep_store(database: Path, to: str) -> None:
    """A copy of the server's SQLite store (its WAL included) to read after the run: the audit
    table `profiles_sent` is what `benchmarks/resend_causes.py` counts."""
    import sqlite3
    source, target = sqlite3.connect(database), sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_and_wait_s(pid: int) -> tuple[float, float]:
    """The main thread's (the server's loop thread) time on a CPU and time runnable but waiting
    for one [s], from /proc/PID/schedstat (Linux): on a machine shared with other work, the
    second is what the OS's run queue adds to every latency, whatever our code does."""
    try:
        with open(f"/proc/{pid}/schedstat") as stat:
            ran_ns, waited_ns, _ = stat.read().split()
        return int(ran_ns) / 1e9, int(waited_ns) / 1e9
    except (OSError, ValueError):
        return float("nan"), float("nan")


def child_pids(pid: int) -> list[int]:
    """The process's descendants (the store's writer process, s28-writer; since s31-writer a
    child of the server's fork server, smartcharge/store_forks.py), from /proc (Linux)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found += [int(child) for child in children.read().split()]
    except OSError:
        pass
    return found + [grandchild for child in found for grandchild in child_pids(child)]


def children_cpu_s(pid: int) -> dict[int, float]:
    cpu = {}
    for child in child_pids(pid):
        try:
            cpu[child] = process_cpu_s(child)
        except OSError:
            pass
    return cpu


def process_rss_b(pid: int) -> int:
    """Resident set size of a process [bytes], from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def stop_server(server: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM (the server's own shutdown: its store closed), SIGKILL if it does not end."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        server.kill()


def wait_listening(port: int, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server process ended before it listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)     # polling a socket that is not there yet: nothing to wait on
    raise RuntimeError(f"the server did not listen on {port} within {timeout_s} s")


async def read_json(process: asyncio.subprocess.Process, key: str, timeout_s: float) -> object:
    """The next JSON line on a station process's stdout that carries `key`."""
    async def reader() -> object:
        while True:
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError(f"a station process ended before it said {key!r}")
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if key in message:
                return message[key]
    return await asyncio.wait_for(reader(), timeout_s)


async def run_load(args, site_file: Path, url: str, server_pid: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.load_stations", str(site_file), url, str(part),
        str(args.station_procs), str(args.interval_s), str(args.setup_timeout_s),
        *(["--heavy"] if args.heavy_stations else []), *(["--steady"] if args.steady else []),
        *(["--after-plans"] if args.after_plans else []),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=REPO,
        limit=1 << 26)   # the result line carries every latency
        for part in range(args.station_procs)]
    started = time.time()
    # the set-up's CPU (s29-boot): the server's and its writer process's, from before the first
    # connection to the boot storm settled and to "ready" - CPU, not wall: at a shared
    # machine's load the wall clock says what the others ran
    setup_cpu = [(process_cpu_s(server_pid), sum(children_cpu_s(server_pid).values()))]
    cpu_samples: list[tuple[float, float, float]] = []
    sampler = asyncio.create_task(sample_cpu(server_pid, cpu_samples))
    try:
        booted = await asyncio.gather(*(read_json(p, "booted", args.setup_timeout_s)
                                        for p in procs))
        setup_cpu.append((process_cpu_s(server_pid), sum(children_cpu_s(server_pid).values())))
        # with --after-plans a station process waits for its outboxes, the plans, the probes
        # and the server's calls one after another, each within --setup-timeout-s
        stages_timeout_s = args.setup_timeout_s * (4 if args.after_plans else 1)
        stages = await asyncio.gather(*(read_json(p, "ready_stages", stages_timeout_s)
                                        for p in procs))
        ready = await asyncio.gather(*(read_json(p, "ready", args.setup_timeout_s)
                                       for p in procs))
        setup_cpu.append((process_cpu_s(server_pid), sum(children_cpu_s(server_pid).values())))
        settled_s = max(booted) - started
        setup_s = max(ready) - started
        window_start = time.time()
        server_cpu_start = process_cpu_s(server_pid)
        children_start = children_cpu_s(server_pid)
        sched_start = [run_and_wait_s(pid) for pid in [server_pid] + [p.pid for p in procs]]
        spy = window_profilers(args, server_pid)
        for p in procs:
            p.stdin.write(f"go {args.measure_s}\n".encode())
            await p.stdin.drain()
        results = await asyncio.gather(*(read_json(p, "result", args.measure_s + 120)
                                         for p in procs))
        window_end = time.time()
        await end_window_profilers(spy, server_pid, bool(args.cprofile_setup))
        sched = [tuple(b - a for a, b in zip(start, run_and_wait_s(pid))) for start, pid
                 in zip(sched_start, [server_pid] + [p.pid for p in procs])]
        server_cpu = (process_cpu_s(server_pid) - server_cpu_start) / (window_end - window_start)
        children_end = children_cpu_s(server_pid)
        children = {pid: ((cpu - children_start[pid]) / (window_end - window_start),
                          process_rss_b(pid)) for pid, cpu in children_end.items()
                    if pid in children_start}
        rss_b = process_rss_b(server_pid)
        collector = await collector_at_window_end(server_pid, args.stats_file)
        for p in procs:
            p.stdin.write(b"stop\n")
            await p.stdin.drain()
    finally:
        sampler.cancel()
        await end_station_procs(procs)
    latencies = [x for r in results for x in r["latencies_s"]]
    window_s = max(r["window_s"] for r in results)
    return {
        "stations": args.stations,
        "held": sum(r["held"] for r in results),
        "offered_per_s": args.stations / args.interval_s,
        "sustained_per_s": len(latencies) / window_s,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "backlog": sum(r["backlog"] for r in results),
        "settled_s": settled_s,
        "setup_s": setup_s,
        # s37-stall: when each station process met each of "ready"'s conditions, s after start
        "ready_stages": [{key: at - started for key, at in part.items()} for part in stages],
        "server_cpu": server_cpu,
        "children": children,
        "client_cpu": sum(r["cpu_s"] for r in results) / window_s,
        "rss_end_b": rss_b,
        "window": (window_start, window_end),
        "probes": [r["probe"] for r in results if "probe" in r],
        "sends": send_shape(results),
        "sched": sched,
        "boot": (started, started + settled_s),
        "cpu_samples": cpu_samples,
        "control": control_seen(results, started, cpu_samples),
        "calls_in_window": calls_in_window(results),
        "setup_cpu": [(b[0] - setup_cpu[0][0], b[1] - setup_cpu[0][1]) for b in setup_cpu[1:]],
        "collector": collector,
    }


async def sample_cpu(pid: int, out: list, every_s: float = 0.25) -> None:
    """(wall s, the server's CPU s, its children's CPU s) every `every_s`: read at the moment
    the last station was set up, known only once the run is over (s29-boot)."""
    while True:
        try:
            out.append((time.time(), process_cpu_s(pid), sum(children_cpu_s(pid).values())))
        except OSError:
            return
        await asyncio.sleep(every_s)


def cpu_at(samples: list, at: float) -> tuple[float, float]:
    """The server's and its children's CPU s at wall time `at` (the first sample after it)."""
    for when, cpu, children in samples:
        if when >= at:
            return cpu, children
    return samples[-1][1:] if samples else (float("nan"), float("nan"))


def calls_in_window(results: list[dict]) -> dict[str, int]:
    """s38-stall: the server's calls to the stations inside the window, by action (all station
    processes) - what the window held of the server's own work, to compare two trees' windows."""
    calls: dict[str, int] = {}
    for r in results:
        for action, n in (r.get("calls_in_window") or {}).items():
            calls[action] = calls.get(action, 0) + n
    return dict(sorted(calls.items()))


def control_seen(results: list[dict], started: float, samples: list) -> dict:
    """When every station held a fail-safe default (and a plan) it accepted, the server's CPU
    from the first connection to then, and the calls it sent per station by action."""
    seen = [r["control"] for r in results if "control" in r]
    if not seen:
        return {}
    stations = sum(r["stations"] for r in results)
    calls: dict[str, int] = {}
    for c in seen:
        for action, n in c["calls"].items():
            calls[action] = calls.get(action, 0) + n
    out = {"calls_per_station": {a: n / stations for a, n in sorted(calls.items())}}
    base = samples[0][1:] if samples else (0.0, 0.0)
    for kind in ("default_at", "plan_at"):
        stamps = [t for c in seen for t in c[kind]]
        last = max(stamps, default=float("nan"))
        cpu = cpu_at(samples, last) if stamps else (float("nan"), float("nan"))
        out[kind] = {"stations": len(stamps), "after_s": last - started,
                     "cpu_s": cpu[0] - base[0], "writer_cpu_s": cpu[1] - base[1]}
    return out


def held_by_kind_split(held_seconds: list, window: tuple[float, float]
                       ) -> tuple[dict, dict] | None:
    """s37-stall: from the probe's once-a-second snapshots of the inbound budget's
    `held_by_kind` (cumulative: kind -> [frames, summed wait s]), what was held before the
    window began and what within it. None: no snapshots (a tree without the counts)."""
    if not held_seconds:
        return None
    before = {}
    at_end = {}
    for at, counts in held_seconds:
        if at <= window[0]:
            before = counts
        if at <= window[1]:
            at_end = counts
    within = {kind: [n - before.get(kind, [0, 0.0])[0], s - before.get(kind, [0, 0.0])[1]]
              for kind, (n, s) in at_end.items()}
    return before, {kind: v for kind, v in within.items() if v[0]}


def format_held(counts: dict) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{kind or '?'} {n} ({s:.1f} s)" for kind, (n, s)
                     in sorted(counts.items(), key=lambda kv: -kv[1][0]))


def window_profilers(args, server_pid: int) -> subprocess.Popen | None:
    """The window only, profiled (s26-p99): `--py-spy FILE` samples every thread of the server
    (the loop and the store's writer) from outside, `--cprofile FILE` the loop thread from
    inside (serve_probe.py's SIGUSR1 / SIGUSR2; thread CPU as its clock)."""
    if args.cprofile:
        os.kill(server_pid, signal.SIGUSR1)
    if not args.py_spy:
        return None
    return subprocess.Popen(["py-spy", "record", "-p", str(server_pid), "-d",
                             str(int(args.measure_s)), "-r", "50", "--nonblocking",
                             "--threads", "-f", "raw", "-o", args.py_spy], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def end_window_profilers(spy: subprocess.Popen | None, server_pid: int,
                               setup_only: bool = False) -> None:
    if spy is not None:
        await asyncio.get_running_loop().run_in_executor(None, spy.wait)
    if os.environ.get("SMARTCHARGE_PROBE_CPROFILE"):
        os.kill(server_pid, signal.SIGUSR2)


async def collector_at_window_end(server_pid: int, stats_file: str,
                                  timeout_s: float = 60) -> dict | None:
    """SIGHUP to serve_probe.py: the collector's generations by size and type, and what a
    middle and then a full collection cost with every station still connected (a middle one
    comes minutes apart at 5 000 stations: a 90 s window seldom holds one)."""
    path = Path(stats_file + ".collector")
    os.kill(server_pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:   # being written
                pass
        await asyncio.sleep(0.2)
    return None


def send_shape(results: list[dict]) -> dict:
    """How the window's MeterValues were offered (s26-p99): the stations' sends per second of
    the window (perf-counter stamps, one clock for every process), the p99 with and without the
    window's first 5 s, the MeterValues the server triggered (its phase probe), each station
    process's stations and how long its set-up's freeze held it. A burst of sends is offered
    load, not the server's doing: read this line before the p99."""
    if not results or "sent_s" not in results[0]:
        return {}
    start = min(r["perf_window"][0] for r in results)
    per_second: dict[int, int] = {}
    early, late = [], []
    for r in results:
        for sent, latency in zip(r["sent_s"], r["latencies_s"]):
            per_second[int(sent - start)] = per_second.get(int(sent - start), 0) + 1
            (early if sent - start < 5 else late).append(latency)
    counts = sorted(per_second.values())
    busiest = max(per_second, key=per_second.get) if per_second else -1
    return {"median": percentile(counts, 0.5), "max": counts[-1] if counts else 0,
            "busiest_s": busiest, "first_s": per_second.get(0, 0),
            "p99_first5_ms": percentile(early, 0.99) * 1000, "n_first5": len(early),
            "p99_after5_ms": percentile(late, 0.99) * 1000, "n_after5": len(late),
            "triggered": sum(r.get("triggered", 0) for r in results),
            "before": [x for r in results for x in r.get("before_window_s", [])],
            "procs": [(r.get("stations"), r.get("freeze_s"), r.get("freeze_cpu_s", 0.0))
                      for r in results]}


def max_lag_ms(lag: list, window: tuple[float, float]) -> float:
    """The most of the probe's per-second maxima (`serve_probe.probe_loop`, keyed by the whole
    second of its wake-up) over the seconds wholly inside `window` (s35-stall): the window's
    partial last second held what followed it - the 5 000 stations leaving 0.5 s after the
    window, 70 ms of the loop's CPU and 246 ms wall read as the window's longest stall."""
    inside = [value for second, value in lag if inside_window(second, window)]
    return max(inside, default=float("nan")) * 1000


def inside_window(second: float, window: tuple[float, float]) -> bool:
    """The whole wall second `second` (or a stamp within it) lies wholly inside `window`."""
    second = int(second)
    return window[0] <= second and second + 1 <= window[1]


def longest_turn(turn_seconds: list, window: tuple[float, float]) -> dict:
    """s36-stall: the window's single turns of the loop (`serve_probe.record_turn_lengths`:
    per whole second [turns, the most CPU s, the most wall s]) over the seconds wholly inside
    `window`, as `max_lag_ms` reads the lag: how many turns, the longest in CPU and in wall
    (ms) - issue 10's goal, one turn, not the three between two probe wake-ups."""
    inside = [entry for second, entry in turn_seconds if inside_window(second, window)]
    return {"turns": sum(n for n, _, _ in inside),
            "cpu_ms": max((cpu for _, cpu, _ in inside), default=float("nan")) * 1000,
            "wall_ms": max((wall for _, _, wall in inside), default=float("nan")) * 1000}


def long_wall_split(long_turns: list, window: tuple[float, float], over_s: float = 0.020
                    ) -> tuple[int, float, float, float] | None:
    """s36-stall: the window's turns over `over_s` of wall time, their wall split into the loop
    thread's CPU, its wait for a CPU (schedstat's run delay) and the rest (the GIL held by
    another of the server's threads, page faults): (turns, CPU s, run queue s, rest s) in all.
    None for a record without the wait (older probes)."""
    inside = [entry for entry in long_turns
              if inside_window(entry[0], window) and entry[2] > over_s]
    if any(len(entry) < 4 for entry in inside):
        return None
    cpu = sum(entry[1] for entry in inside)
    queue = sum(entry[3] for entry in inside)
    return len(inside), cpu, queue, sum(entry[2] for entry in inside) - cpu - queue


def long_turn_counts(long_turns: list, window: tuple[float, float],
                     over_ms: tuple[int, ...] = (5, 10, 15, 20)) -> dict[str, dict[int, int]]:
    """s36-stall: the window's turns (whole seconds, as `longest_turn`) over each of `over_ms`,
    by their CPU and by their wall time."""
    inside = [(cpu, wall) for at, cpu, wall, *_ in long_turns if inside_window(at, window)]
    return {"cpu": {ms: sum(1 for cpu, _ in inside if cpu * 1000 > ms) for ms in over_ms},
            "wall": {ms: sum(1 for _, wall in inside if wall * 1000 > ms) for ms in over_ms}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--interval-s", type=float, default=10.0,
                        help="real seconds between two MeterValues of one station")
    parser.add_argument("--measure-s", type=float, default=30.0)
    parser.add_argument("--setup-timeout-s", type=float, default=300.0)
    parser.add_argument("--station-procs", type=int, default=2,
                        help="processes the simulated stations are spread over")
    parser.add_argument("--cap-fraction", type=float, default=0.5,
                        help="grid limit as a fraction of all connectors' maximum (0: none)")
    parser.add_argument("--server-tree", default=str(REPO),
                        help="the smartcharge tree the server runs (to measure an older one)")
    parser.add_argument("--heavy-stations", action="store_true",
                        help="the station processes as before s21-p99: schema checks in a "
                             "worker thread, the collector's defaults (they measured "
                             "themselves: benchmarks/load_stations.py)")
    parser.add_argument("--steady", action="store_true",
                        help="start the window once every station's outbox has been empty "
                             "(the set-up's queued samples acknowledged), the server's phase "
                             "probes of the new sessions are over and the station processes "
                             "froze their set-up: the steady rate, without the set-up's tail")
    parser.add_argument("--after-plans", action="store_true",
                        help="with --steady (implied): start the window only once every "
                             "station also holds a plan it accepted and the server's phase "
                             "probes have been quiet 5 s after that and no call of the server's "
                             "came for 10 s - the server's own set-up over, so two trees' windows hold the same work (s38-stall)")
    parser.add_argument("--uvloop", action="store_true", help="the server runs on uvloop")
    parser.add_argument("--breakdown", action="store_true",
                        help="split each MeterValues' send -> CALLRESULT into stages (station, "
                             "wire, the server's budget, store queue, commit, resume, wire back) "
                             "and print them, with the slowest 1 %%'s share "
                             "(benchmarks/latency_probe.py; costs the server a little CPU; the "
                             "same as SMARTCHARGE_PROBE_LATENCY=1)")
    parser.add_argument("--py-spy", default="", metavar="FILE",
                        help="py-spy (on PATH) samples the server's threads through the window "
                             "into FILE (collapsed stacks, `-f raw`)")
    parser.add_argument("--cprofile", default="", metavar="FILE",
                        help="cProfile of the server's loop thread through the window into FILE")
    parser.add_argument("--cprofile-setup", default="", metavar="FILE",
                        help="cProfile of the server's loop thread from before the first "
                             "connection to the window's end into FILE: the set-up whole (the "
                             "server's set-ups and first plans go on after \"ready\"); a short "
                             "--measure-s keeps the window's share small")
    parser.add_argument("--label", default="", help="a note for the table's first column")
    args = parser.parse_args(argv)
    if not 1 <= args.stations <= 10000:
        parser.error("--stations must be within 1..10000")
    if args.after_plans:
        args.steady = True
    if args.breakdown:   # the server and station processes inherit it
        os.environ["SMARTCHARGE_PROBE_LATENCY"] = "1"
    if args.cprofile_setup:
        args.cprofile = args.cprofile_setup
    if args.cprofile:    # serve_probe.py profiles between SIGUSR1 and SIGUSR2 into it
        os.environ["SMARTCHARGE_PROBE_CPROFILE"] = str(Path(args.cprofile).resolve())

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="ocpp-load-") as tmp:
        port = free_port()
        site_file = Path(tmp) / "site.toml"
        stats_file = Path(tmp) / "server-stats.json"
        site_file.write_text(site_toml(args.stations, port, str(Path(tmp) / "load.sqlite"),
                                       args.cap_fraction))
        server_log = open(Path(tmp) / "server.log", "wb")
        command = [sys.executable, str(REPO / "benchmarks" / "serve_probe.py"), str(site_file),
                   str(stats_file)] + (["--uvloop"] if args.uvloop else [])
        server = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONPATH": args.server_tree})
        try:
            wait_listening(port, server, 120)
            rss_idle_b = process_rss_b(server.pid)
            if args.cprofile_setup:
                os.kill(server.pid, signal.SIGUSR1)
            args.stats_file = str(stats_file)
            result = asyncio.run(run_load(args, site_file, f"ws://127.0.0.1:{port}/ocpp",
                                          server.pid))
        finally:
            stop_server(server)
            server_log.close()
            tail = (Path(tmp) / "server.log").read_text(errors="replace")[-2000:]
            if os.environ.get("SMARTCHARGE_BENCH_LOG"):   # keep the server's log to read
                shutil.copy(Path(tmp) / "server.log", os.environ["SMARTCHARGE_BENCH_LOG"])
        if os.environ.get("SMARTCHARGE_BENCH_DB"):   # keep the store (its profiles_sent
            keep_store(Path(tmp) / "load.sqlite", os.environ["SMARTCHARGE_BENCH_DB"])
        stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        if stats and os.environ.get("SMARTCHARGE_BENCH_STATS"):   # keep the server's record
            kept = {**stats, "window": result["window"], "boot": result["boot"]}
            Path(os.environ["SMARTCHARGE_BENCH_STATS"]).write_text(json.dumps(kept))
        lag = stats.get("lag", [])
    if not lag:
        print(f"# no loop-lag statistics from the server; its log ends:\n{tail}")
    r = result
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    print(f"# machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}; "
          f"load average at end {' '.join(f'{x:.1f}' for x in os.getloadavg())}; server tree "
          f"{args.server_tree}{' (uvloop)' if args.uvloop else ''}; {args.station_procs} "
          f"station processes{' (heavy)' if args.heavy_stations else ''}"
          f"{'; window once the set-up drained' if args.steady else ''}"
          f"{' and every plan accepted' if args.after_plans else ''}; cap {args.cap_fraction:.0%} of connectors' maximum")
    print("| stations | held | offered/s | sustained/s | p50 | p99 | max | backlog "
          "| boot storm settled | setup | longest turn of the loop, wall / CPU (window) "
          "| between two probe wake-ups, wall: 3 turns, an upper bound (window / boot) "
          "| server CPU | stations CPU | server RSS per station |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    turn = longest_turn(stats.get("turn_seconds") or [], r["window"])
    per_station_kb = (r["rss_end_b"] - rss_idle_b) / r["stations"] / 1024
    print(f"| {r['stations']}{' ' + args.label if args.label else ''} | {r['held']} | "
          f"{r['offered_per_s']:.0f} | {r['sustained_per_s']:.0f} | {r['p50_ms']:.1f} ms | "
          f"{r['p99_ms']:.1f} ms | {r['max_ms']:.0f} ms | {r['backlog']} | "
          f"{r['settled_s']:.1f} s | {r['setup_s']:.1f} s | "
          f"{turn['wall_ms']:.1f} / {turn['cpu_ms']:.1f} ms | "
          f"{max_lag_ms(lag, r['window']):.0f} / {max_lag_ms(lag, r['boot']):.0f} ms | "
          f"{r['server_cpu']:.0%} | {r['client_cpu']:.0%} | {per_station_kb:.0f} KB |")
    window_s = r["window"][1] - r["window"][0]
    (boot_cpu, boot_writer), (setup_cpu, setup_writer) = r["setup_cpu"]
    print(f"# set-up CPU [s] (server / its writer process; per 1 000 stations): boot storm "
          f"settled {boot_cpu:.1f} / {boot_writer:.1f} ({boot_cpu * 1000 / r['stations']:.1f} / "
          f"{boot_writer * 1000 / r['stations']:.1f}); ready {setup_cpu:.1f} / "
          f"{setup_writer:.1f} ({setup_cpu * 1000 / r['stations']:.1f} / "
          f"{setup_writer * 1000 / r['stations']:.1f}); load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    control = r.get("control")
    if control:
        for kind, what in (("default_at", "a fail-safe default"), ("plan_at", "a plan")):
            c = control[kind]
            print(f"# every station holding {what} it accepted: {c['stations']} of "
                  f"{r['stations']} stations, the last {c['after_s']:.1f} s after the first "
                  f"connection; server CPU to then {c['cpu_s']:.1f} s, its writer "
                  f"{c['writer_cpu_s']:.1f} s ({c['cpu_s'] * 1000 / r['stations']:.1f} / "
                  f"{c['writer_cpu_s'] * 1000 / r['stations']:.1f} s per 1 000 stations)")
        print("# the server's calls per station, whole run: " + ", ".join(
            f"{a} {n:.2f}" for a, n in control["calls_per_station"].items()))
        print("# the server's calls in the window (s38-stall: the same work in two trees' "
              "windows?): " + (", ".join(f"{a} {n}" for a, n in r["calls_in_window"].items())
                               or "none"))
    if r.get("children"):   # not in the server CPU column: its own process
        print("# the server's child processes through the window (the store's writer): "
              + "; ".join(f"pid {pid} CPU {cpu:.0%} of a core, RSS {rss / 2**20:.0f} MB"
                          for pid, (cpu, rss) in r["children"].items()))
    print("# run queue in the window (the main thread: ran / runnable but waiting for a CPU): "
          + "; ".join(f"{name} {ran:.1f} s / {waited:.1f} s ({waited / window_s:.0%} of the "
                      f"window)" for name, (ran, waited) in zip(
                          ["server"] + [f"stations {i}" for i in range(len(r["sched"]) - 1)],
                          r["sched"])))
    sends = r.get("sends")
    if sends:
        print(f"# offered: MeterValues sent per second of the window median {sends['median']:.0f}"
              f", max {sends['max']} (second {sends['busiest_s']}; the first second "
              f"{sends['first_s']}); {sends['triggered']} of them triggered by the server (its "
              f"phase probe); p99 of those sent in the first 5 s {sends['p99_first5_ms']:.0f} ms "
              f"({sends['n_first5']}), after {sends['p99_after5_ms']:.0f} ms "
              f"({sends['n_after5']}); station processes (stations, their set-up's freeze wall / CPU): "
              + ", ".join(f"{n} / {f:.2f} s / {c:.2f} s" for n, f, c in sends["procs"])
              + f"; answered in the window but sent before it (not counted above): "
              f"{len(sends['before'])}, the longest {max(sends['before'], default=0) * 1000:.0f} ms")
    print(f"# whole run: {stats.get('replans')} re-plans, {stats.get('profiles_sent')} profiles "
          f"sent")
    calls = stats.get("store_calls")
    if calls:   # s29-boot: the store's work by kind, per station
        n = r["stations"]
        ops = {k: v for k, v in calls.items() if k.startswith("op ")}
        closures = {k: v for k, v in calls.items() if not k.startswith("op ")}
        writes = stats.get("writer_writes")
        print(f"# store calls per station, whole run: {sum(ops.values()) / n:.2f} ops ("
              + ", ".join(f"{k[3:]} {v / n:.2f}" for k, v in sorted(ops.items(),
                                                                  key=lambda kv: -kv[1]))
              + f"); {sum(closures.values())} closures ("
              + ", ".join(f"{k[8:]} {v}" for k, v in closures.items()) + "); writes to the "
              f"writer process {'-' if writes is None else f'{writes / n:.2f}'} per station")
    window_gc = [(g, s, cpu[0] if cpu else float("nan"))
                 for at, g, s, *cpu in stats.get("gc", [])
                 if r["window"][0] <= at <= r["window"][1]]
    full = [s for g, s, _ in window_gc if g == 2]
    print(f"# garbage collector in the window: {len(window_gc)} collections, "
          f"{sum(s for _, s, _ in window_gc) * 1000:.0f} ms in all "
          f"({sum(c for _, _, c in window_gc) * 1000:.0f} ms CPU); {len(full)} full ones, the "
          f"longest {max(full, default=0) * 1000:.0f} ms")
    if stats.get("turn_seconds"):
        counts = long_turn_counts(stats.get("long_turns") or [], r["window"])
        boot_turn = longest_turn(stats["turn_seconds"], r["boot"])
        print(f"# single turns of the loop in the window (issue 10's 20 ms): {turn['turns']} "
              f"turns ({turn['turns'] / window_s:.0f} a second), the longest "
              f"{turn['wall_ms']:.1f} ms wall, {turn['cpu_ms']:.1f} ms CPU; turns over "
              + ", ".join(f"{ms} ms: {counts['cpu'][ms]} CPU / {counts['wall'][ms]} wall"
                          for ms in counts["cpu"])
              + f"; the boot storm's longest {boot_turn['wall_ms']:.0f} ms wall, "
              f"{boot_turn['cpu_ms']:.0f} ms CPU (the wall times include what the OS gave "
              f"other processes; the stall column is three turns and the run queue)")
        # s38-stall: the set-up's turns too (boot storm settled -> the window): with
        # --after-plans the server's own set-up (defaults, first plans, probes) is there, not
        # in the window, and its long turns are still the loop's
        setup_span = (r["boot"][1], r["window"][0])
        setup_turn = longest_turn(stats["turn_seconds"], setup_span)
        setup_counts = long_turn_counts(stats.get("long_turns") or [], setup_span)
        print(f"# single turns of the loop in the set-up (boot storm settled -> the window, "
              f"{setup_span[1] - setup_span[0]:.0f} s): {setup_turn['turns']} turns, the longest "
              f"{setup_turn['wall_ms']:.1f} ms wall, {setup_turn['cpu_ms']:.1f} ms CPU; over "
              + ", ".join(f"{ms} ms: {setup_counts['cpu'][ms]} CPU / {setup_counts['wall'][ms]} "
                          f"wall" for ms in setup_counts["cpu"]))
        split = long_wall_split(stats.get("long_turns") or [], r["window"])
        if split and split[0]:
            n, cpu_s, queue_s, rest_s = split
            wall_s = cpu_s + queue_s + rest_s
            print(f"# the window's {n} turns over 20 ms wall, {wall_s * 1000:.0f} ms in all: "
                  f"the loop thread's CPU {cpu_s / wall_s:.0%}, waiting for a CPU (run queue) "
                  f"{queue_s / wall_s:.0%}, the rest (another thread of the server holding "
                  f"the GIL, page faults) {rest_s / wall_s:.0%}")
    share = stats.get("share") or {}
    if stats.get("inbound") or share:   # s36-stall: what the turn's CPU bound held back
        print(f"# whole run: the inbound budget {stats.get('inbound')}; the share's steps "
              f"{share.get('steps')}, deferred {share.get('deferred')}, held by the turn's "
              f"CPU {share.get('held_by_turn')}")
    latency = stats.get("latency") or {}
    if latency.get("calls_out") and stats.get("clock_offset_s") is not None:
        # s37-stall: how far the server's own set-up (its calls to the stations) had gone by
        # "ready" - it competes with the stations' own set-up messages for the loop and for
        # the stations' processes
        offset_s = stats["clock_offset_s"]
        sent = sorted((int(second) + offset_s, n) for second, n in latency["calls_out"].items())
        read = sorted((int(second) + offset_s, n) for second, n
                      in (latency.get("answers_in") or {}).items())
        print(f"# the server's calls to the stations, sent / answers read: before the window "
              f"{sum(n for at, n in sent if at < r['window'][0])} / "
              f"{sum(n for at, n in read if at < r['window'][0])}, in it "
              f"{sum(n for at, n in sent if at >= r['window'][0])} / "
              f"{sum(n for at, n in read if at >= r['window'][0])}")
    if r.get("ready_stages"):   # s37-stall: which of "ready"'s conditions came last
        names = {"transactions": "transactions acknowledged", "drained": "outboxes drained",
                 "plans": "every station holding a plan it accepted",
                 "last_probe": "the server's last phase probe (TriggerMessage)",
                 "probes_quiet": "probes quiet 5 s",
                 "calls_quiet": "the server's calls quiet 10 s"}
        print("# \"ready\" by its conditions (s after the first connection, per station "
              "process): " + "; ".join(
                  f"{label} " + " / ".join(f"{part[key]:.1f}" if part.get(key, -1) >= 0
                                           else "none" for part in r["ready_stages"])
                  for key, label in names.items()))
    held = held_by_kind_split(stats.get("inbound_held_seconds") or [], r["window"])
    if held is not None:   # s37-stall: which frames the turn's CPU bound held, and when
        print(f"# frames held by the turn's CPU bound, by kind (frames, their summed wait): "
              f"to the window's start {format_held(held[0])}; in the window "
              f"{format_held(held[1])}")
    busy = stats.get("busy", [])
    if busy:
        print(f"# the loop's own CPU between two probe wake-ups, the longest (window / boot): "
              f"{max_lag_ms(busy, r['window']):.0f} / {max_lag_ms(busy, r['boot']):.0f} ms "
              f"(the stall column is wall time: it includes what the OS gave other processes)")
    cycles = stats.get("cycles")
    if cycles:
        print(f"# at shutdown: a generation-1 collection took {cycles.get('gen1_cpu_ms', 0):.0f}"
              f" ms CPU; {cycles['frozen']} objects frozen; a full "
              f"collection found {cycles['collected']} in garbage cycles, then without the "
              f"permanent generation {cycles['collected_after_unfreeze']} more (frozen "
              f"cycles: never collected while frozen; that collection took "
              f"{cycles['full_collection_ms']:.0f} ms; station adapters still alive: "
              f"{cycles.get('adapters_alive')})")
        if cycles.get("frozen_cycle_kinds"):
            print("#   the frozen cycles were: " + ", ".join(
                f"{kind} {n}" for kind, n in cycles["frozen_cycle_kinds"]))
    settled = [(g, s, c) for at, g, s, *cpu in stats.get("gc", [])
               for c in (cpu[0] if cpu else float("nan"),)
               if r["boot"][1] <= at <= r["window"][1]]
    for generation in (0, 1, 2):
        pauses = [(s, c) for g, s, c in window_gc if g == generation]
        later = [(s, c) for g, s, c in settled if g == generation]
        print(f"#   generation {generation}: {len(pauses)} collections in the window, the "
              f"longest {max((s for s, _ in pauses), default=0) * 1000:.0f} ms wall, "
              f"{max((c for _, c in pauses), default=0) * 1000:.0f} ms CPU; from the boot "
              f"storm's end: {len(later)}, the longest "
              f"{max((s for s, _ in later), default=0) * 1000:.0f} ms wall, "
              f"{max((c for _, c in later), default=0) * 1000:.0f} ms CPU")
    collector = r.get("collector")
    if collector:
        costs = collector["costs"]
        print(f"# the collector at the window's end (stations connected): generations "
              f"{' / '.join(str(n) for n in collector['sizes'])} objects, "
              f"{collector['frozen']} frozen; a middle collection now "
              f"{costs['1']['cpu_ms']:.0f} ms CPU ({costs['1']['wall_ms']:.0f} wall, "
              f"{costs['1']['collected']} in cycles), then a full one "
              f"{costs['2']['cpu_ms']:.0f} ms CPU ({costs['2']['wall_ms']:.0f} wall, "
              f"{costs['2']['collected']} in cycles); the most common types: "
              + ", ".join(f"{kind} {n}" for kind, n in collector["kinds"][:10])
              + "; in the cycles: " + ", ".join(f"{kind} {n}" for kind, n
                                                in collector.get("garbage", [])[:12]))
    in_cycles = sum(entry[4] for entry in window_gc_full(stats, r["window"]))
    print(f"# objects the window's collections found in garbage cycles: {in_cycles}")
    print_turns(stats.get("turns") or [], r["window"])
    print_background(stats.get("background_turns") or [], r["window"], stats.get("share"))
    if r["probes"] and stats.get("latency"):
        print_latency(r["probes"], stats["latency"], stats)
        if os.environ.get("SMARTCHARGE_BENCH_RAW"):   # every stamp, to read further
            with open(os.environ["SMARTCHARGE_BENCH_RAW"], "w") as out:
                json.dump({"probes": r["probes"], "server": stats["latency"],
                           "gc": stats.get("gc"), "busy": stats.get("busy")}, out)
    return 0


def window_gc_full(stats: dict, window: tuple[float, float]) -> list:
    """The window's collections as recorded (older probes: without the objects found)."""
    return [entry for entry in stats.get("gc", []) if window[0] <= entry[0] <= window[1]
            and len(entry) >= 5]


def print_latency(probes: list[dict], server: dict, stats: dict | None = None) -> None:
    """SMARTCHARGE_PROBE_LATENCY (benchmarks/latency_probe.py): each MeterValues' time split
    between the station processes, the wire and the server's stages; the station processes'
    own loop lag and collections; the store's groups."""
    from benchmarks import latency_probe
    stats = stats or {}
    rows = [row for probe in probes
            for row in latency_probe.joined(probe["calls"], server["by_uid"], probe["window"])]
    for line in latency_probe.breakdown_lines(rows):
        print(line)
    print(latency_probe.loop_wait_line(rows))
    offset = stats.get("clock_offset_s")
    if offset is not None:   # the server's collections and long turns in perf-counter time
        collections = [(at - offset - pause_s, at - offset) for at, _, pause_s, *_
                       in stats.get("gc", [])]
        turns = [entry[4] for entry in stats.get("turns") or [] if len(entry) >= 5]
        print(latency_probe.tail_overlap_line(rows, collections, turns))
    for index, probe in enumerate(probes):
        gcs = probe["gc"]
        print(f"# station process {index}: loop lag p50/p99/max of the per-second maxima "
              f"{percentile(probe['lag'], 0.5) * 1000:.0f} / "
              f"{percentile(probe['lag'], 0.99) * 1000:.0f} / "
              f"{max(probe['lag'], default=0) * 1000:.0f} ms; the loop's own CPU between "
              f"wake-ups, max {max(probe['busy'], default=0) * 1000:.0f} ms; {len(gcs)} "
              f"collections, {sum(g[2] for g in gcs) * 1000:.0f} ms CPU in all, the longest "
              f"{max((g[2] for g in gcs), default=0) * 1000:.0f} ms CPU")
    window = (min(p["window"][0] for p in probes), max(p["window"][1] for p in probes))
    groups = [g for g in server["groups"] if window[0] <= g[0] <= window[1]]
    if groups:
        spans = [g[1] - g[0] for g in groups]
        print(f"# the store's groups in the window: {len(groups)}, size median "
              f"{percentile([g[2] for g in groups], 0.5):.0f} max {max(g[2] for g in groups)}; "
              f"begin -> committed median {percentile(spans, 0.5) * 1000:.1f} ms, p99 "
              f"{percentile(spans, 0.99) * 1000:.1f} ms, max {max(spans) * 1000:.1f} ms; the "
              f"writer busy {sum(spans) / (window[1] - window[0]):.0%} of the window; groups "
              f"over 250 ms: {sum(1 for s in spans if s > 0.25)} (s26-p99: the slowest 1 % "
              f"of every steady window waited behind one of them)")


def turn_causes(turns: list, over_s: float) -> dict[str, tuple[int, float, float]]:
    """s31-p99: each turn over `over_s` of the loop thread's CPU (serve_probe.trace_turns) put
    down to what made it long: the collections inside it ("collection gen N", N the highest)
    or the kind of callback with the most CPU (without the collections in it), whichever is
    larger, when it alone took over `over_s`; else "KIND + collection gen N" (or "KIND + ..."
    for several kinds none of which is over alone). Returns cause -> (turns, the longest turn
    s, the turns' CPU s in all)."""
    causes: dict[str, tuple[int, float, float]] = {}
    for entry in turns:
        spent_s, kinds = entry[1], entry[3]
        if spent_s <= over_s:
            continue
        gc_s, generation, _ = entry[5] if len(entry) >= 6 else (0.0, -1, 0)
        top_kind, _, top_ms = kinds[0] if kinds else ("?", 0, 0.0)
        if max(gc_s, top_ms / 1000) > over_s:   # the larger one alone took it over
            cause = f"collection gen {generation}" if gc_s > top_ms / 1000 else top_kind
        elif gc_s > 0 and top_ms / 1000 + gc_s > over_s:
            cause = f"{top_kind} + collection gen {generation}"
        else:
            cause = f"{top_kind} + other callbacks" + (f" + collection gen {generation}"
                                                       if gc_s > 0 else "")
        n, longest_s, cpu_s = causes.get(cause, (0, 0.0, 0.0))
        causes[cause] = (n + 1, max(longest_s, spent_s), cpu_s + spent_s)
    return causes


def print_background(turns: list, window: tuple[float, float], share: dict | None) -> None:
    """SMARTCHARGE_PROBE_TURNS (serve_probe.py): per turn of the loop, the CPU of the site's
    own tasks' steps (dispatch, set-ups, re-plans, the guard: background work) in the window -
    what a turn carried beside the stations' own calls; and the s25-budget share's counters."""
    inside = [(bg, spent) for at, bg, spent in turns if window[0] <= at <= window[1]]
    if not inside:
        return
    bgs = sorted(bg for bg, _ in inside)
    over = {ms: sum(1 for b in bgs if b > ms / 1000) for ms in (5, 10, 20)}
    print(f"# background CPU per turn in the window ({len(bgs)} turns with some; "
          f"{sum(bgs):.1f} s in all): median {percentile(bgs, 0.5) * 1000:.2f} ms, p99 "
          f"{percentile(bgs, 0.99) * 1000:.1f} ms, max {bgs[-1] * 1000:.1f} ms; turns over "
          + ", ".join(f"{ms} ms: {n}" for ms, n in over.items())
          + (f"; the share's counters (whole run): {share}" if share else ""))


def print_turns(turns: list, window: tuple[float, float]) -> None:
    """SMARTCHARGE_PROBE_TURNS (serve_probe.py): the window's longest turns of the loop, and
    the most callbacks of one kind any turn of the run ran (a round resuming every station's
    task in one turn shows as thousands of one kind, whatever the machine's load)."""
    if not turns:
        return
    inside = sorted((t for t in turns if window[0] <= t[0] <= window[1]), key=lambda t: -t[1])
    print(f"# turns of the loop over the probe's threshold in the window: {len(inside)}; the "
          f"longest (CPU, callbacks, the biggest kinds):")
    for _, spent_s, count, kinds, *_ in inside[:5]:
        top = "; ".join(f"{kind} x{n} {ms:.0f} ms" for kind, n, ms in kinds[:3])
        print(f"#   {spent_s * 1000:.0f} ms, {count} callbacks: {top}")
    span_s = window[1] - window[0]
    causes = turn_causes(inside, over_s=0.02)
    if causes:
        print(f"# turns over 20 ms CPU in the window by cause ({len(inside)} turns over the "
              f"threshold, {sum(n for n, _, _ in causes.values())} over 20 ms; the turn's "
              f"collections or its biggest kind of callback, the larger, when it alone is over "
              f"20 ms; else both):")
        for cause, (n, longest_s, cpu_s) in sorted(causes.items(), key=lambda kv: -kv[1][0]):
            print(f"#   {n:4d} ({n * 60 / span_s:5.1f} a minute), the longest "
                  f"{longest_s * 1000:5.1f} ms, {cpu_s * 1000:6.0f} ms CPU in all: {cause}")
    most: dict[str, tuple[int, float]] = {}
    for _, spent_s, _, kinds, *_ in turns:
        for kind, n, _ in kinds:
            if n > most.get(kind, (0, 0.0))[0]:
                most[kind] = (n, spent_s)
    ranked = sorted(most.items(), key=lambda kv: -kv[1][0])[:8]
    print("# the most callbacks of one kind in one turn (whole run): " + "; ".join(
        f"{kind} x{n} (a {spent_s * 1000:.0f} ms turn)" for kind, (n, spent_s) in ranked))


if __name__ == "__main__":
    raise SystemExit(main())
