"""`smartcharge demo`: a whole site through a day, in accelerated time, over real sockets.

It starts the real server (central system, site controller, dashboard) on 127.0.0.1, connects
the simulated stations of the demo site over real WebSockets, lets seeded cars arrive and leave,
has the utility send an evening demand-response event through the REST API, and measures the
site's real draw against every limit the whole time. At the end: a summary and a PNG plot.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from smartcharge.serve_checks import is_loopback
from smartcharge.clock import AcceleratedClock, format_ocpp_time, parse_ocpp_time
from smartcharge.config import load_site
from smartcharge.demo_plot import plot_day
from smartcharge.demo_report import Draw, GridLimits, Monitor, TimedLimit
from smartcharge.demo_scenario import DemandResponsePlan, Visit, plan_day, plan_demand_response
from smartcharge.model import Site
from smartcharge.serve_checks import demo_key_refusal
from smartcharge.site.controller import ControllerSettings

log = logging.getLogger("smartcharge.demo")

DEFAULT_START = "2026-06-01T00:00:00Z"
DEFAULT_SPEED = 240.0            # a 24 h day in 6 minutes; faster runs stretch the server's
                                 # real-time latencies over minutes of site time
METER_INTERVAL_S = 300           # simulated stations' MeterValueSampleInterval [site s]
SAMPLE_EVERY_S = 30.0            # the demo's own check of the draws [site s]
GRACE_S = METER_INTERVAL_S       # one control-loop interval: measure, re-plan, send
# Measurements count as fresh for three meter intervals: in fast time a sample in flight is
# older in site time than it would be in real life.
DEMO_CONTROLLER_SETTINGS = ControllerSettings(stale_after_s=3 * METER_INTERVAL_S)


def default_site_path() -> Path:
    return Path(__file__).resolve().parent / "data" / "demo-site.toml"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=Path, default=None,
                        help="site file (TOML); default: the embedded demo site")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=8080,
                        help="port for the dashboard, API and OCPP (0: any free port)")
    parser.add_argument("--insecure-open-api", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="serve the API and dashboard without token checks (default on a "
                             "loopback --host, refused on any other; --no-insecure-open-api: "
                             "the API wants the site file's tokens, as `serve` does)")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours to run")
    parser.add_argument("--speed", type=float, default=DEFAULT_SPEED,
                        help="simulated seconds per real second")
    parser.add_argument("--start", default=DEFAULT_START,
                        help="simulated start time, RFC 3339 UTC (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="seed for the cars (same seed, same day)")
    parser.add_argument("--dr-notice-min", type=float, default=30.0,
                        help="minutes between the utility's announcement and the event (0: at once)")
    parser.add_argument("--mixed-phase-cars", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="single-phase cars take three-phase bays too, loading one phase "
                             "(default; --no-mixed-phase-cars: every car uses all its bay's "
                             "phases)")
    parser.add_argument("--explain", type=int, default=0, metavar="N",
                        help="for the first N limit violations, print every bay under the "
                             "overloaded circuit with its draw and installed profiles")
    parser.add_argument("--out", type=Path, default=Path("demo-output"),
                        help="directory for the plot (created if missing)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory for the SQLite file (default: a temporary directory)")
    parser.add_argument("--progress-every-min", type=float, default=60.0,
                        help="print a progress line every this many simulated minutes")


def run_demo(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(Demo(args).run())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


@dataclass
class Counters:
    arrived: int = 0
    refused: int = 0
    departed: int = 0
    needs_told: int = 0
    plugged: dict[tuple[str, int], Visit] = field(default_factory=dict)
    visits: list[Visit] = field(default_factory=list)     # every car that came


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.site: Site = load_site(args.site or default_site_path())
        self.start = parse_ocpp_time(args.start)
        self.end = self.start + timedelta(hours=args.hours)
        if args.speed <= 0:
            raise SystemExit("--speed must be positive")
        # An open API is fine for a demo on this machine only: never on a reachable address.
        if args.insecure_open_api and not is_loopback(args.host):
            raise SystemExit(f"--insecure-open-api: the demo opens the API only on a loopback "
                             f"address, not on {args.host}")
        self.open_api = args.insecure_open_api is not False and is_loopback(args.host)
        refusal = demo_key_refusal(self.site, args.host)
        if refusal:     # the same rule as `serve`: published keys only on this machine
            raise SystemExit(f"smartcharge demo: {refusal}")
        self.visits = plan_day(self.site, self.start, args.hours, seed=args.seed,
                               mixed_phases=args.mixed_phase_cars)
        self.dr: DemandResponsePlan | None = None
        cap_w = self.site.root.limit_w
        if cap_w is not None:
            self.dr = plan_demand_response(self.start, args.hours, cap_w,
                                           notice_s=args.dr_notice_min * 60.0)
        self.limits = GridLimits(cap_w, GRACE_S)
        for window in self.site.cap_schedule:
            self.limits.add(TimedLimit(window.start, window.end, window.limit_w, "operator cap"))
        self.monitor = Monitor(self.site, self.limits)
        self.counters = Counters()
        self.base_url = ""
        self.dr_answer = ""
        self._need_tasks: set[asyncio.Task] = set()
        self._explained = 0

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
        self.clock = AcceleratedClock(self.start, args.speed)
        runner, port = await self._serve(db_path)
        self.base_url = f"http://{args.host}:{port}"
        from smartcharge.sim.fleet import Fleet

        fleet = Fleet(self.site, f"ws://{args.host}:{port}/ocpp", self.clock, seed=args.seed,
                      meter_interval_s=METER_INTERVAL_S)
        self.fleet = fleet
        print(f"smartcharge demo: {self.site.name} — {len(self.site.stations)} stations, "
              f"{sum(len(s.connectors) for s in self.site.stations)} connectors, "
              f"grid cap {_kw(self.site.root.limit_w)}")
        print(f"  dashboard: {self.base_url}/   (API {self.base_url}/api/site)")
        if self.open_api:
            print("  API open without tokens (--insecure-open-api, loopback only)")
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
                tasks = [asyncio.create_task(self._sample_loop(), name="demo-sample"),
                         asyncio.create_task(self._progress_loop(), name="demo-progress")]
                await self._script()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._sample()
                stats = await self._server_stats()
        finally:
            for task in [*tasks, *self._need_tasks]:
                task.cancel()
            await runner.cleanup()     # the server first: no profile sends to closing stations
            await fleet.stop()
            if args.data_dir is None:
                shutil.rmtree(data_dir, ignore_errors=True)
        return self._finish(stats, time.monotonic() - real_start)

    async def _serve(self, db_path: Path) -> tuple[web.AppRunner, int]:
        from smartcharge.app import create_app

        app = create_app(self.site, db_path=str(db_path), clock=self.clock,
                         control=DEMO_CONTROLLER_SETTINGS, insecure_open_api=self.open_api)
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
                await self._depart(item)
            elif kind == 1:
                await self._arrive(item)
            else:
                await self._send_demand_response(item)
        await self._sleep_until(self.end)

    async def _sleep_until(self, moment: datetime) -> None:
        wait_s = (moment - self.clock.now()).total_seconds()
        if wait_s > 0:
            await self.clock.sleep(wait_s)

    async def _arrive(self, visit: Visit) -> None:
        key = visit.key
        if key in self.counters.plugged:   # the previous car overstayed in real time; skip
            return
        self.counters.arrived += 1
        self.counters.plugged[key] = visit
        self.counters.visits.append(visit)
        started = await self.fleet.plug_in(visit.station_id, visit.connector_id, visit.ev, visit.id_tag)
        if not started:
            self.counters.refused += 1
        elif visit.tells_need:
            task = asyncio.create_task(self._tell_need(visit))
            self._need_tasks.add(task)
            task.add_done_callback(self._need_tasks.discard)

    async def _tell_need(self, visit: Visit) -> None:
        """The driver's app tells the operator what the car needs and when it leaves."""
        sim = self.fleet.station(visit.station_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while True:   # the transaction id comes with the StartTransaction answer
            tx = sim.connectors[visit.connector_id].transaction
            if tx is None:
                return
            if tx.transaction_id is not None:
                break
            if loop.time() > deadline:
                return
            await asyncio.sleep(0.02)
        tokens = sorted(self.site.operator_tokens)
        if not tokens:
            return
        body = {"requested_wh": round(visit.requested_wh), "departure": format_ocpp_time(visit.departure)}
        url = f"{self.base_url}/api/sessions/{tx.transaction_id}"
        try:
            async with self.http.put(url, json=body,
                                     headers={"Authorization": f"Bearer {tokens[0]}"}) as resp:
                if resp.status == 200:
                    self.counters.needs_told += 1
                else:
                    log.warning("PUT %s: HTTP %d %s", url, resp.status, (await resp.text())[:200])
        except aiohttp.ClientError as error:
            log.warning("PUT %s failed: %s", url, error)

    async def _depart(self, visit: Visit) -> None:
        if self.counters.plugged.get(visit.key) is not visit:
            return
        await self.fleet.unplug(visit.station_id, visit.connector_id)
        del self.counters.plugged[visit.key]
        self.counters.departed += 1

    async def _send_demand_response(self, dr: DemandResponsePlan) -> None:
        """As a utility would: HTTP POST with the utility's token."""
        tokens = sorted(self.site.utility_tokens)
        headers = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
        body = {"id": dr.event_id, "start": format_ocpp_time(dr.start),
                "end": format_ocpp_time(dr.end), "limit_w": dr.limit_w}
        url = f"{self.base_url}/api/demand-response/events"
        try:
            async with self.http.post(url, json=body, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except aiohttp.ClientError as error:
            self.dr_answer = f"failed: {error}"
            print(f"  utility: demand-response event could not be sent: {error}")
            return
        known = self.clock.now()
        if status >= 300:
            self.dr_answer = f"refused: HTTP {status} {text[:200]}"
            print(f"  utility: demand-response event refused: HTTP {status} {text[:200]}")
            return
        self.limits.add(TimedLimit(dr.start, dr.end, dr.limit_w, dr.event_id, known_since=known))
        self.dr_answer = f"accepted (HTTP {status})"
        print(f"  {known:%H:%M}  utility: demand-response event {dr.event_id!r} "
              f"{dr.start:%H:%M}–{dr.end:%H:%M}, limit {_kw(dr.limit_w)} — HTTP {status}")

    # ---- measuring --------------------------------------------------------------------------

    def _draws(self) -> list[Draw]:
        draws = []
        for station in self.site.stations:
            sim = self.fleet.station(station.station_id)
            sim.advance_to(self.clock.now())
            for connector in station.connectors:
                state = sim.connectors[connector.connector_id]
                phases = state.ev.phases if state.ev is not None else connector.phases
                draws.append(Draw(station.station_id, connector.connector_id, state.draw_w,
                                  phases, connector.phase))
        return draws

    def _delivered_wh(self) -> float:
        return sum(v.ev.charged_wh for v in self.visits)

    def _sessions(self) -> int:
        return sum(1 for station in self.fleet.stations.values()
                   for state in station.connectors.values() if state.transaction is not None)

    def _sample(self):
        seen = len(self.monitor.violations)
        sample = self.monitor.record(self.clock.now(), self._draws(), self._sessions(),
                                     self._delivered_wh())
        for violation in self.monitor.violations[seen:]:
            if self._explained < self.args.explain:
                self._explained += 1
                self._explain(violation)
        return sample

    def _explain(self, violation) -> None:
        """What each bay under the overloaded circuit draws and which profiles it holds."""
        print(f"  {violation.time:%H:%M:%S}  LIMIT VIOLATION {violation.where} {violation.kind}: "
              f"{violation.value:.1f} > {violation.limit:.1f}")
        for station in self.site.stations:
            if violation.where not in self.monitor.chain(station.station_id):
                continue
            sim = self.fleet.station(station.station_id)
            for cid, state in sim.connectors.items():
                if state.transaction is None and state.draw_w == 0:
                    continue
                print(f"      {station.station_id}/{cid}: draws {state.draw_w:.0f} W, composite "
                      f"limit {state.limit_w}, tx {state.transaction and state.transaction.transaction_id}")
                for profile in sim.profiles.profiles:
                    if profile.connector_id in (0, cid) and profile.purpose != "ChargePointMaxProfile":
                        periods = [(p.start_s, p.limit) for p in profile.schedule.periods][:6]
                        print(f"          {profile.purpose} #{profile.profile_id} level "
                              f"{profile.stack_level} from {profile.schedule.start:%H:%M:%S} "
                              f"(installed {profile.installed_at:%H:%M:%S}) "
                              f"{profile.schedule.rate_unit} {periods}")

    async def _sample_loop(self) -> None:
        while True:
            self._sample()
            await self.clock.sleep(SAMPLE_EVERY_S)

    async def _progress_loop(self) -> None:
        every_s = self.args.progress_every_min * 60.0
        while True:
            # on the round hour (or whatever the interval is), counted from the start
            into_s = (self.clock.now() - self.start).total_seconds() % every_s
            await self.clock.sleep(every_s - into_s)
            sample = self.monitor.samples[-1] if self.monitor.samples else None
            if sample is None:
                continue
            limit = sample.effective_limit_w
            share = f"{sample.site_load_w / limit:4.0%}" if limit else "   -"
            print(f"  {sample.time:%H:%M}  load {_kw(sample.site_load_w):>9} / limit {_kw(limit):>9} "
                  f"{share}  sessions {sample.sessions:3d}  delivered {sample.delivered_wh / 1000:8.1f} kWh  "
                  f"violations {len(self.monitor.violations)}", flush=True)

    async def _server_stats(self) -> dict:
        """The controller's own account, read like any client would."""
        try:
            tokens = sorted(self.site.operator_tokens)
            headers = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
            async with self.http.get(f"{self.base_url}/api/site", headers=headers) as resp:
                if resp.status == 200:
                    return (await resp.json()).get("stats", {})
        except aiohttp.ClientError as error:
            log.warning("could not read /api/site: %s", error)
        return {}

    # ---- the end ----------------------------------------------------------------------------

    def _finish(self, stats: dict, real_s: float) -> int:
        monitor = self.monitor
        arrived = self.counters.visits
        requested_wh = sum(v.requested_wh for v in arrived)
        delivered_wh = sum(v.ev.charged_wh for v in arrived)
        left = [v for v in arrived if v.departure < self.end]
        served = sum(1 for v in left if v.ev.charged_wh >= v.requested_wh - 100)
        peak = monitor.peak()
        dr_peak = None
        if self.dr is not None and self.dr_answer.startswith("accepted"):
            during = [s for s in monitor.samples if self.dr.start <= s.time < self.dr.end]
            dr_peak = max(during, key=lambda s: s.site_load_w, default=None)
        out_dir = self.args.out
        plot_path = out_dir / "site-load.png"
        violations = monitor.violations
        notes = [f"delivered {delivered_wh / 1000:.0f} of {requested_wh / 1000:.0f} kWh requested",
                 f"peak {_kw(peak.site_load_w if peak else None)}",
                 f"limit violations {len(violations)}"]
        dr_windows = []
        if dr_peak is not None or (self.dr and self.dr_answer.startswith("accepted")):
            dr_windows.append((self.dr.start, self.dr.end, f"DR {self.dr.event_id}"))
        plot_day(monitor.samples, plot_path, title=f"{self.site.name}: site load vs effective limit",
                 site_cap_w=self.site.root.limit_w, dr_windows=dr_windows, notes=notes)

        print()
        print(f"Summary — {self.args.hours:g} h of site time in {real_s:.0f} s")
        print(f"  cars:               {self.counters.arrived} arrived, {self.counters.departed} left, "
              f"{served} of {len(left)} who left got everything they asked for"
              + (f", {self.counters.refused} refused" if self.counters.refused else ""))
        print(f"  drivers' needs:     {self.counters.needs_told} told through the API "
              f"(PUT /api/sessions/{{id}}); the others got the site's defaults")
        share = delivered_wh / requested_wh if requested_wh else 1.0
        print(f"  energy:             {delivered_wh / 1000:.1f} kWh delivered of "
              f"{requested_wh / 1000:.1f} kWh requested ({share:.0%})")
        if peak is not None:
            print(f"  peak site load:     {_kw(peak.site_load_w)} at {peak.time:%H:%M} "
                  f"(grid cap {_kw(self.site.root.limit_w)})")
        if self.dr is not None:
            line = f"  demand response:    {self.dr.event_id} {self.dr.start:%H:%M}–{self.dr.end:%H:%M} " \
                   f"limit {_kw(self.dr.limit_w)}: {self.dr_answer or 'not reached in this run'}"
            if dr_peak is not None:
                line += f"; peak during it {_kw(dr_peak.site_load_w)}"
            print(line)
        print(f"  limit violations:   {len(violations)} (measured draws checked every "
              f"{SAMPLE_EVERY_S:g} s of site time against the grid limit and every breaker; "
              f"{len(monitor.samples)} checks)")
        for v in violations[:10]:
            print(f"      {v.time:%H:%M:%S} {v.where} {v.kind}: {v.value:.1f} > {v.limit:.1f}")
        print(f"  profiles sent:      {stats.get('profiles_sent', 'unknown')}"
              f" ({stats.get('replans', '?')} re-plans)")
        print(f"  plot:               {plot_path.resolve()}")
        return 0 if not violations else 1


def _kw(power_w: float | None) -> str:
    return "none" if power_w is None else f"{power_w / 1000:.1f} kW"



if __name__ == "__main__":   # python -m smartcharge.demo [flags]
    _parser = argparse.ArgumentParser(prog="smartcharge demo", description=__doc__.splitlines()[0])
    add_demo_arguments(_parser)
    sys.exit(run_demo(_parser.parse_args()))
