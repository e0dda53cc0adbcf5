"""OCPP load: N simulated stations against one server process, each sending MeterValues at a
fixed rate. Reports connections held, sustained MeterValues/s with storage on, and the p50/p99
time from send to CALLRESULT.

    python -m benchmarks.ocpp_load --stations 500 --interval-s 10 --measure-s 30

The server runs in its own process (`--serve`, the same app `smartcharge serve` builds) so the
stations and the server do not share one event loop. Loopback only; every run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

PASSWORD = "bench-password-0123"       # 19 bytes (security profile 1 wants 16..20)
TAG = "BENCH"
SIM_METER_INTERVAL_S = 60             # simulated; the clock's speed turns it into real rate


def site_toml(stations: int, port: int, database: str) -> str:
    lines = ['[site]', 'name = "ocpp load benchmark"', '',
             '[server]', 'host = "127.0.0.1"', f'port = {port}', f'database = "{database}"',
             'heartbeat_interval_s = 300', 'call_timeout_s = 30', 'ping_interval_s = 60', '',
             '[auth]', f'id_tags = ["{TAG}"]', '']
    for index in range(stations):
        lines += ['[[stations]]', f'id = "LOAD{index:05d}"', f'password = "{PASSWORD}"',
                  'circuit = "grid"', '', '[[stations.connectors]]', 'id = 1', 'phases = 3',
                  'max_current_a = 32', '']
    return "\n".join(lines)


def serve(site_file: str) -> None:
    """The server process: the app `smartcharge serve` runs, nothing else."""
    from aiohttp import web

    from smartcharge.app import create_app
    from smartcharge.config import load_site

    logging.basicConfig(level=logging.WARNING)
    site = load_site(site_file)
    web.run_app(create_app(site), host=site.server.host, port=site.server.port,
                backlog=4096, print=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Recorder:
    measuring: bool = False
    latencies_s: list[float] = field(default_factory=list)
    acknowledged: int = 0

    def __call__(self, action: str, latency_s: float) -> None:
        if self.measuring and action == "MeterValues":
            self.latencies_s.append(latency_s)
            self.acknowledged += 1


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


async def run_load(stations: int, interval_s: float, measure_s: float, setup_timeout_s: float,
                   url: str, site, server_pid: int) -> dict:
    from smartcharge.clock import AcceleratedClock
    from smartcharge.sim.ev import SimEV
    from smartcharge.sim.fleet import Fleet

    clock = AcceleratedClock(datetime(2026, 1, 1, 8, tzinfo=UTC),
                             speed=SIM_METER_INTERVAL_S / interval_s)
    fleet = Fleet(site, url, clock, seed=1, meter_interval_s=SIM_METER_INTERVAL_S,
                  call_timeout_s=30.0, reconnect_min_s=0.5, reconnect_max_s=5.0,
                  physics_step_s=3600.0)
    recorder = Recorder()
    for station in fleet.stations.values():
        station.keep_acknowledged = False
        station.on_acknowledged = recorder
    setup_started = time.monotonic()
    try:
        await fleet.start(wait_booted_s=setup_timeout_s)
        # big batteries: nobody gets full and stops sampling during the run
        await asyncio.wait_for(asyncio.gather(*(
            fleet.plug_in(sid, 1, SimEV(capacity_wh=1e9, soc=0.0), TAG)
            for sid in fleet.stations)), setup_timeout_s)
        # every session started and acknowledged; samples may already queue if the server is
        # slower than the offered rate, and that backlog is part of what we measure
        await asyncio.gather(*(
            s.wait_for(lambda s=s: s.connectors[1].transaction is not None
                       and s.connectors[1].transaction.transaction_id is not None,
                       setup_timeout_s)
            for s in fleet.stations.values()))
        setup_s = time.monotonic() - setup_started
        recorder.measuring = True
        window_started = time.monotonic()
        server_cpu_start, client_cpu_start = process_cpu_s(server_pid), time.process_time()
        await asyncio.sleep(measure_s)      # the measurement window itself, not a wait for state
        recorder.measuring = False
        window_s = time.monotonic() - window_started
        server_cpu = (process_cpu_s(server_pid) - server_cpu_start) / window_s
        client_cpu = (time.process_time() - client_cpu_start) / window_s
        held = sum(1 for s in fleet.stations.values() if s.booted.is_set())
        backlog = sum(s.outbox.pending("MeterValues") for s in fleet.stations.values())
    finally:
        await fleet.stop()
    return {
        "stations": stations,
        "held": held,
        "offered_per_s": stations / interval_s,
        "sustained_per_s": recorder.acknowledged / window_s,
        "p50_ms": percentile(recorder.latencies_s, 0.50) * 1000,
        "p99_ms": percentile(recorder.latencies_s, 0.99) * 1000,
        "backlog": backlog,
        "setup_s": setup_s,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--interval-s", type=float, default=10.0,
                        help="real seconds between two MeterValues of one station")
    parser.add_argument("--measure-s", type=float, default=30.0)
    parser.add_argument("--setup-timeout-s", type=float, default=300.0)
    parser.add_argument("--serve", metavar="SITE_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if not 1 <= args.stations <= 5000:
        parser.error("--stations must be within 1..5000")

    from smartcharge.config import load_site

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="ocpp-load-") as tmp:
        port = free_port()
        site_file = Path(tmp) / "site.toml"
        site_file.write_text(site_toml(args.stations, port, str(Path(tmp) / "load.sqlite")))
        site = load_site(site_file)
        server_log = open(Path(tmp) / "server.log", "wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.ocpp_load", "--serve", str(site_file)],
            stdout=server_log, stderr=subprocess.STDOUT)
        try:
            result = asyncio.run(run_load(args.stations, args.interval_s, args.measure_s,
                                          args.setup_timeout_s,
                                          f"ws://127.0.0.1:{port}/ocpp", site, server.pid))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
            server_log.close()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    print(f"# machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}")
    print("| stations | connections held | offered MeterValues/s | sustained MeterValues/s "
          "| p50 send->CALLRESULT | p99 send->CALLRESULT | backlog at end | setup "
          "| server CPU | stations CPU |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    r = result
    print(f"| {r['stations']} | {r['held']} | {r['offered_per_s']:.0f} | "
          f"{r['sustained_per_s']:.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
          f"{r['backlog']} | {r['setup_s']:.0f} s | {r['server_cpu']:.0%} | "
          f"{r['client_cpu']:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
