"""The demo's run: the real server on 127.0.0.1, the simulated fleet over real WebSockets,
and the day's script (arrivals, departures, the utility's event) in accelerated site time."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from smartcharge.clock import AcceleratedClock, format_ocpp_time, parse_ocpp_time
from smartcharge.config import ConfigError, load_site
from smartcharge.demo import actors, billing, measure, summary
from smartcharge.demo.arguments import default_site_path
from smartcharge.demo.report import GridLimits, Monitor, TimedLimit, kw
from smartcharge.demo.scenario import (DemandResponsePlan, apply_protocols, plan_day,
                                       plan_demand_response, plan_protocols)
from smartcharge.model import Site
from smartcharge.serve_checks import demo_key_refusal, is_loopback
from smartcharge.site.controller import ControllerSettings

METER_INTERVAL_S = 300           # simulated stations' MeterValueSampleInterval [site s]
GRACE_S = METER_INTERVAL_S       # one control-loop interval: measure, re-plan, send
# Measurements count as fresh for three meter intervals: in fast time a sample in flight is
# older in site time than it would be in real life.
DEMO_CONTROLLER_SETTINGS = ControllerSettings(stale_after_s=3 * METER_INTERVAL_S)


def run_demo(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(Demo(args).run())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


class Demo:
    """One demo run: its site, its seeded day, the limits it checks, and what happened."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        site_path = args.site or default_site_path()
        try:
            self.site: Site = load_site(site_path)
        except ConfigError as error:   # one line naming the file, as `serve` says it
            raise SystemExit(f"smartcharge demo: {site_path}: {error}") from None
        self.start = parse_ocpp_time(args.start)
        self.end = self.start + timedelta(hours=args.hours)
        if args.speed <= 0:
            raise SystemExit("--speed must be positive")
        # An open API is fine for a demo on this machine only: never on a reachable address.
        if args.insecure_open_api and not is_loopback(args.host):
            raise SystemExit(f"--insecure-open-api: the demo opens the API only on a loopback "
                             f"address, not on {args.host}")
        # Tokens by default, as `serve`: id tags and billing data are never open unless asked
        self.open_api = bool(args.insecure_open_api) and is_loopback(args.host)
        refusal = demo_key_refusal(self.site, args.host)
        if refusal:     # the same rule as `serve`: published keys only on this machine
            raise SystemExit(f"smartcharge demo: {refusal}")
        self.visits = plan_day(self.site, self.start, args.hours, seed=args.seed,
                               mixed_phases=args.mixed_phase_cars)
        self.protocols = plan_protocols(self.site, args.mixed_ocpp)
        apply_protocols(self.visits, self.protocols)
        self.dr: DemandResponsePlan | None = None
        cap_w = self.site.root.limit_w
        if cap_w is not None:
            self.dr = plan_demand_response(self.start, args.hours, cap_w,
                                           notice_s=args.dr_notice_min * 60.0)
        self.limits = GridLimits(cap_w, GRACE_S)
        for window in self.site.cap_schedule:
            self.limits.add(TimedLimit(window.start, window.end, window.limit_w, "operator cap"))
        self.monitor = Monitor(self.site, self.limits)
        self.counters = actors.Counters()
        self.base_url = ""
        self.dr_answer = ""
        self.need_tasks: set[asyncio.Task] = set()
        self.explained = 0
        self.vtn = None          # the utility's OpenADR VTN (--dr-via openadr)
        self.app = None

    # ---- the run ----------------------------------------------------------------------------

    async def run(self) -> int:
        args = self.args
        data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="smartcharge-demo-"))
        data_dir.mkdir(parents=True, exist_ok=True)
        db_path = data_dir / "smartcharge-demo.sqlite"
        # every run replays the same simulated day: a previous run's DR event, caps and open
        # sessions would be restored into it (the store keeps obligations), so start empty
        for stale in data_dir.glob("smartcharge-demo.sqlite*"):
            stale.unlink()
        # Site time runs at real pace until the site is up, then at --speed: at 240x the
        # set-up (the VTN, the server, every station booting, every bay's fail-safe default)
        # took 4-40 site minutes on a busy machine, and the cars of those minutes then
        # arrived in one rush (an hour's demo delivered 17 kWh instead of ~75).
        self.clock = AcceleratedClock(self.start, 1.0)
        if self.dr is not None and getattr(args, "dr_via", "openadr") == "openadr":
            from smartcharge.demo.utility_vtn import UtilityVtn
            self.vtn = UtilityVtn("127.0.0.1")   # only the site in this process talks to it
            await self.vtn.start()
            self.site = self.vtn.site_with_program(self.site)   # the site becomes its VEN
        try:
            runner, port = await self._serve(db_path)
        except BaseException:
            if self.vtn is not None:
                await self.vtn.stop()
            raise
        self.base_url = f"http://{args.host}:{port}"
        from smartcharge.sim.fleet import Fleet

        fleet = Fleet(self.site, f"ws://{args.host}:{port}/ocpp", self.clock, seed=args.seed,
                      ocpp_versions={sid: p.ocpp_version for sid, p in self.protocols.items()},
                      meter_interval_s=METER_INTERVAL_S)
        self.fleet = fleet
        print(f"smartcharge demo: {self.site.name} — {len(self.site.stations)} stations, "
              f"{sum(len(s.connectors) for s in self.site.stations)} connectors, "
              f"grid cap {kw(self.site.root.limit_w)}")
        print(f"  dashboard: {self.dashboard_url()}   (API {self.base_url}/api/site)")
        print(f"  OCPP: {summary.protocol_line(self.protocols)}")
        if self.open_api:
            print("  API open without tokens (--insecure-open-api, loopback only)")
        if self.vtn is not None:
            print(f"  utility: OpenADR 2.0b VTN at {self.vtn.url}; the site is its VEN")
        print(f"  {args.hours:g} h of site time from {format_ocpp_time(self.start)} at {args.speed:g}x "
              f"(~{args.hours * 3600 / args.speed:.0f} s), {len(self.visits)} car visits, "
              f"SQLite in {data_dir}")
        real_start = time.monotonic()
        tasks: list[asyncio.Task] = []
        try:
            async with aiohttp.ClientSession() as http:
                self.http = http
                await fleet.start(wait_booted_s=60.0)
                await self._wait_fail_safe_defaults(timeout_s=60.0)
                self.clock.set_speed(args.speed)
                print(f"  site ready after {(self.clock.now() - self.start).total_seconds():.1f} s "
                      f"of site time (set-up at real pace); the day runs at {args.speed:g}x")
                tasks = [asyncio.create_task(measure.sample_loop(self), name="demo-sample"),
                         asyncio.create_task(measure.progress_loop(self), name="demo-progress")]
                await self._script()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                measure.take_sample(self)
                stats = await measure.server_stats(self)
                await actors.close_day(self)      # every session closes, so all are billed
                bills = await billing.check_billing(self)
        finally:
            for task in [*tasks, *self.need_tasks]:
                task.cancel()
            await runner.cleanup()     # the server first: no profile sends to closing stations
            await fleet.stop()
            if self.vtn is not None:
                await self.vtn.stop()
            if args.data_dir is None:
                shutil.rmtree(data_dir, ignore_errors=True)
        return summary.summarise(self, stats, bills, time.monotonic() - real_start)

    async def _serve(self, db_path: Path) -> tuple[web.AppRunner, int]:
        from smartcharge.app import create_app

        app = create_app(self.site, db_path=str(db_path), clock=self.clock,
                         control=DEMO_CONTROLLER_SETTINGS, insecure_open_api=self.open_api)
        self.app = app
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        tcp = web.TCPSite(runner, self.args.host, self.args.port)
        try:
            await tcp.start()
        except OSError as error:
            await runner.cleanup()
            raise SystemExit(f"cannot listen on {self.args.host}:{self.args.port}: "
                             f"{error.strerror} (try --port 0 or another port)") from None
        port = tcp._server.sockets[0].getsockname()[1]   # the real port when --port 0
        return runner, port

    def dashboard_url(self) -> str:
        """The dashboard's link: with the API open, bare; else carrying the demo site's
        operator token in the fragment (a browser never sends it to the server)."""
        tokens = sorted(self.site.operator_tokens)
        if self.open_api or not tokens:
            return f"{self.base_url}/"
        return f"{self.base_url}/#token={tokens[0]}"

    def _fail_safe_missing(self) -> list[str]:
        """Bays without a TxDefaultProfile yet: a car plugged in there would draw unplanned."""
        missing = []
        for station_id, sim in self.fleet.stations.items():
            covered = {p.connector_id for p in sim.profiles.profiles
                       if p.purpose == "TxDefaultProfile"}
            missing += [f"{station_id}/{cid}" for cid in sim.connectors
                        if 0 not in covered and cid not in covered]
        return missing

    async def _wait_fail_safe_defaults(self, timeout_s: float) -> None:
        """Let the controller give every station its fail-safe default before cars come.

        In accelerated time the first round of profiles spans minutes of site time; a car
        arriving before its bay has a default would draw its maximum, unplanned."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while missing := self._fail_safe_missing():
            if loop.time() > deadline:
                print(f"  warning: no fail-safe default profile on {len(missing)} bays after "
                      f"{timeout_s:g} s: {', '.join(missing[:5])}...")
                return
            await asyncio.sleep(0.05)
        print(f"  {self.clock.now():%H:%M}  every station has its fail-safe default profile; "
              f"cars may come")

    async def _script(self) -> None:
        """Arrivals, departures and the utility's event, each at its moment of site time."""
        actions: list[tuple[datetime, int, object]] = []
        for visit in self.visits:
            actions.append((visit.arrival, 1, visit))
            if visit.departure < self.end:
                actions.append((visit.departure, 0, visit))
        if self.dr is not None and self.dr.announce < self.end:
            actions.append((self.dr.announce, 2, self.dr))
        actions.sort(key=lambda a: (a[0], a[1]))
        for moment, kind, item in actions:
            await self._sleep_until(moment)
            if kind == 0:
                await actors.depart(self, item)
            elif kind == 1:
                await actors.arrive(self, item)
            else:
                await actors.send_demand_response(self, item)
        await self._sleep_until(self.end)

    async def _sleep_until(self, moment: datetime) -> None:
        wait_s = (moment - self.clock.now()).total_seconds()
        if wait_s > 0:
            await self.clock.sleep(wait_s)
