"""Control latency: from a utility's demand-response event that lowers the cap (HTTP POST,
starting now) to the last station's acknowledged SetChargingProfile that brings the site under it.

    python -m benchmarks.control_latency --connectors 10 100 1000 --repeats 3

The server (the app `smartcharge serve` builds, with the site controller) runs in its own process;
the simulated stations (two connectors each, a car charging on every connector, the cap binding)
run in this one over real WebSockets on 127.0.0.1, in real time. A station answers a
SetChargingProfile right after installing it, so the moment the last needed profile is installed
is the moment the last acknowledgement leaves. Each repeat posts a new event at half the cap, waits
until the stations' installed limits add up to at most that, then cancels it and waits for the
profiles to come back up. Every run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

PASSWORD = "bench-password-0123"
TAG = "BENCH"
UTILITY = "bench-utility-token"
PER_CONNECTOR_CAP_W = 7_360.0          # the cap binds: every car wants 11 kW


def site_toml(connectors: int, port: int, database: str) -> str:
    stations = max(1, connectors // 2)
    lines = ['[site]', 'name = "control latency benchmark"', '',
             '[server]', 'host = "127.0.0.1"', f'port = {port}', f'database = "{database}"',
             'heartbeat_interval_s = 600', 'call_timeout_s = 30', 'ping_interval_s = 60', '',
             '[grid]', f'limit_w = {connectors * PER_CONNECTOR_CAP_W:.0f}', '']
    feeders = max(1, stations // 50)
    for f in range(feeders):
        lines += ['[[circuits]]', f'id = "feeder-{f}"', 'parent = "grid"', '']
    lines += ['[auth]', f'id_tags = ["{TAG}"]', '',
              '[session_defaults]', 'energy_wh = 60000', 'dwell_s = 36000', '',
              '[api]', f'utility_tokens = ["{UTILITY}"]', '']
    for index in range(stations):
        lines += ['[[stations]]', f'id = "LAT{index:05d}"', f'password = "{PASSWORD}"',
                  f'circuit = "feeder-{index % feeders}"', '']
        for connector_id in (1, 2)[: 1 if connectors == 1 else 2]:
            lines += ['[[stations.connectors]]', f'id = {connector_id}', 'phases = 3',
                      'max_current_a = 32', '']
    return "\n".join(lines)


def serve(site_file: str) -> None:
    """The server process: create_app plus the site controller (as `smartcharge serve`)."""
    from aiohttp import web

    from smartcharge.app import create_app
    from smartcharge.config import load_site

    logging.basicConfig(level=logging.WARNING)
    site = load_site(site_file)
    app = create_app(site)
    web.run_app(app, host=site.server.host, port=site.server.port, backlog=4096, print=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.005) -> float:
    """Poll until predicate() holds; returns the perf_counter when it first did."""
    deadline = time.perf_counter() + timeout_s
    while True:
        if predicate():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(poll_s)


class InstallLog:
    """Wraps every simulated station's SetChargingProfile handler to time-stamp installs."""

    def __init__(self, fleet) -> None:
        self.times: list[float] = []
        for station in fleet.stations.values():
            original = station.set_charging_profile

            def wrapped(connector_id, data, _original=original):
                answer = _original(connector_id, data)
                if answer == "Accepted":
                    self.times.append(time.perf_counter())
                return answer
            station.set_charging_profile = wrapped


def limits_sum_w(fleet, clock) -> float:
    now = clock.now()
    total = 0.0
    for station in fleet.stations.values():
        for connector_id, state in station.connectors.items():
            tx = state.transaction.context() if state.transaction else None
            limit = station.profiles.limit_w(connector_id, now, tx,
                                             voltage_v=station.spec.voltage_v, phases_in_use=3)
            total += float("inf") if limit is None else limit
    return total


async def run_size(connectors: int, repeats: int, workdir: Path) -> dict:
    import aiohttp

    from smartcharge.clock import SystemClock, format_ocpp_time
    from smartcharge.config import load_site
    from smartcharge.sim.ev import SimEV
    from smartcharge.sim.fleet import Fleet

    port = free_port()
    site_file = workdir / f"site-{connectors}.toml"
    site_file.write_text(site_toml(connectors, port, str(workdir / f"db-{connectors}.sqlite")))
    site = load_site(site_file)
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.control_latency", "--serve",
                               str(site_file)], cwd=Path(__file__).resolve().parent.parent)
    clock = SystemClock()
    fleet = Fleet(site, f"ws://127.0.0.1:{port}/ocpp", clock, meter_interval_s=600,
                  heartbeat_interval_s=600, reconnect_min_s=0.2, reconnect_max_s=2.0,
                  call_timeout_s=60.0)
    cap_w = connectors * PER_CONNECTOR_CAP_W
    result = {"connectors": connectors, "stations": len(site.stations), "latency_s": [],
              "profiles": []}
    try:
        await wait_for(lambda: _port_open(port), 30, "the server to listen", poll_s=0.05)
        await fleet.start(wait_booted_s=120)
        for station in site.stations:
            for connector in station.connectors:
                await fleet.plug_in(station.station_id, connector.connector_id,
                                    SimEV(capacity_wh=100_000, soc=0.1), TAG)
        log = InstallLog(fleet)
        await wait_for(lambda: limits_sum_w(fleet, clock) <= cap_w + 1, 180,
                       "every connector under a TxProfile within the cap", poll_s=0.2)
        await asyncio.sleep(2.0)     # let the start-up storm settle before measuring
        url = f"http://127.0.0.1:{port}/api/demand-response/events"
        headers = {"Authorization": f"Bearer {UTILITY}"}
        async with aiohttp.ClientSession() as http:
            for repeat in range(repeats):
                dr_limit_w = cap_w / 2
                event_id = f"bench-{repeat}"
                body = {"id": event_id, "start": format_ocpp_time(clock.now()),
                        "end": format_ocpp_time(clock.now() + timedelta(hours=2)),
                        "limit_w": dr_limit_w}
                installs_before = len(log.times)
                t0 = time.perf_counter()
                async with http.post(url, json=body, headers=headers) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"DR event refused: {resp.status} {await resp.text()}")
                done = await wait_for(lambda: limits_sum_w(fleet, clock) <= dr_limit_w + 1, 120,
                                      "the stations' limits under the event")
                last_ack = max((t for t in log.times[installs_before:] if t <= done),
                               default=done)
                result["latency_s"].append(last_ack - t0)
                result["profiles"].append(len(log.times) - installs_before)
                async with http.delete(f"{url}/{event_id}", headers=headers) as resp:
                    assert resp.status == 200
                await wait_for(lambda: limits_sum_w(fleet, clock) > dr_limit_w * 1.5, 120,
                               "the profiles back up after the event", poll_s=0.05)
                await asyncio.sleep(1.0)
    finally:
        await fleet.stop()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    return result


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connectors", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    logging.basicConfig(level=logging.ERROR)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.platform()}")
    print("| connectors | stations | DR POST -> last ack, median [s] | min [s] | max [s] | "
          "profiles acked per event |")
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="smartcharge-latency-") as tmp:
        for n in args.connectors:
            r = asyncio.run(run_size(n, args.repeats, Path(tmp)))
            lat = r["latency_s"]
            print(f"| {n} | {r['stations']} | {statistics.median(lat):.3f} | {min(lat):.3f} | "
                  f"{max(lat):.3f} | {statistics.median(r['profiles']):.0f} |", flush=True)


if __name__ == "__main__":
    main()
