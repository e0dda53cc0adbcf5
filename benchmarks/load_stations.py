"""One process of simulated stations for the OCPP load benchmark (`benchmarks/ocpp_load.py`).

    python -m benchmarks.load_stations SITE_FILE URL PART PARTS INTERVAL_S TIMEOUT_S [--heavy]
        [--steady] [--after-plans]

Runs every PARTS-th station of the site file from the PART-th on, so the benchmark's stations
share the cores over several processes and event loops and the benchmark measures the server,
not its own station loop. It talks to the benchmark in JSON lines: on stdout it says
`{"booted": wall_s}` once all its stations booted and their boot messages were acknowledged,
then `{"ready": wall_s}` once every station's transaction is acknowledged; on stdin it takes
`go MEASURE_S`, measures, answers `{"result": {...}}`, and stops on `stop` (or end of input).
`--heavy`: the stations' schema checks in the library's worker thread and the collector's
defaults, as before s21-p99 (`lighten_station_process`). `--steady`: "ready" only once every
station's outbox has also been empty (the samples queued during a slow set-up acknowledged), the
server's phase probes of the new sessions are over (no TriggerMessage MeterValues for
PROBES_QUIET_S) and the process's own freeze is behind it, so the window measures the steady
rate, not the set-up's tail. `--after-plans` (with `--steady`, s38-stall): "ready" also waits
for every station of the process to hold a plan (TxProfile) it accepted, for the phase probes
to have been quiet for PROBES_QUIET_S after that and for no call of the server's at all (a
re-plan's profiles) to have come for CALLS_QUIET_S - the server's own set-up (capabilities,
defaults, first plans, probes) over, so a tree that does it sooner is not charged for it before
the window nor spared it in the window (s37-stall: on a quiet machine the server's set-up ran
into the window; with the answers let past a turn's bound it ran before it).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime

from benchmarks import latency_probe

PASSWORD = "bench-password-0123"       # 19 bytes (security profile 1 wants 16..20)
TAG = "BENCH"
SIM_METER_INTERVAL_S = 60             # simulated; the clock's speed turns it into real rate
PROBES_QUIET_S = 5.0    # real seconds with no phase probe: the server's probes are over
CALLS_QUIET_S = 10.0    # --after-plans: real seconds with no call of the server's at all
PROFILE_ENV = "SMARTCHARGE_STATION_PROFILE"   # a path prefix: cProfile each process once ready


def lighten_station_process() -> None:
    """What 2 500 simulated stations in one process cost the process, not the server (s21-p99,
    measured with `benchmarks/latency_probe.py`): the `ocpp` library checks each station's
    request and the answer in a worker thread (`ASYNC_VALIDATION`), and the station loop and
    that thread took turns at the GIL - a MeterValues waited ~40-60 ms in its own process
    before its frame was written. The checks now run inline (as the server runs them,
    `smartcharge/app.py`) and compiled (`ocpp/fast_schema.py`: the same verdicts, the
    library's check for whatever it does not pass). And the collector's defaults made a full
    collection of ~450 ms CPU over the stations' objects every few seconds: young
    collections every 10 000 allocations, and everything alive once the stations are set up
    frozen (`freeze_set_up`), as `smartcharge serve` does for itself.
    And (s22-clstations) each inbound call's and answer's keys converted through the memo the
    server uses (`ocpp/casing.py`: the library's result, ~8 us instead of ~130 us for a
    SetChargingProfile of eight periods)."""
    import ocpp.charge_point
    import ocpp.messages

    from smartcharge.ocpp import casing, fast_schema
    ocpp.messages.ASYNC_VALIDATION = False
    ocpp.charge_point.validate_payload = fast_schema.validate
    ocpp.charge_point.camel_to_snake_case = casing.snake_case_keys
    gc.set_threshold(10_000, 250, 100)


def freeze_set_up() -> None:
    gc.collect()
    gc.freeze()


def say(**message) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Recorder:
    """Each MeterValues' send -> CALLRESULT in the window, and when it was sent (perf-counter
    seconds, CLOCK_MONOTONIC: one clock for every process of the machine), so the benchmark can
    show a burst of sends - the window's first second held 4x the steady rate before s26-p99
    (`freeze_set_up` ran after "ready")."""

    def __init__(self) -> None:
        self.measuring = False
        self.window_started = 0.0     # perf-counter seconds
        self.latencies_s: list[float] = []
        self.sent_s: list[float] = []
        self.triggered = 0      # MeterValues the server asked for (TriggerMessage) in the window
        self.last_trigger = 0.0   # perf-counter seconds: the server's last TriggerMessage for one
        # answered in the window but sent before it (in flight when it began): not the
        # window's (s26-p99: they were counted until then, up to 10 s each, behind a
        # freeze), counted apart
        self.before_window: list[float] = []

    def start(self) -> None:
        self.window_started = time.perf_counter()
        self.measuring = True

    def __call__(self, action: str, latency_s: float) -> None:
        if self.measuring and action == "MeterValues":
            sent = time.perf_counter() - latency_s
            if sent < self.window_started:
                self.before_window.append(latency_s)
                return
            self.latencies_s.append(latency_s)
            self.sent_s.append(sent)


async def plans_held(stations, seen: "ControlSeen", timeout_s: float) -> bool:
    """Until every one of `stations` holds a plan (TxProfile) it accepted, at most `timeout_s`
    (polled: the benchmark's harness). False when the time ran out - said, not raised: the run
    goes on and the benchmark prints how many held one."""
    ids = [s.spec.station_id for s in stations]
    deadline = time.perf_counter() + timeout_s
    while not all(i in seen.plan_at for i in ids):
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.5)
    return True


async def calls_quiet(seen: "ControlSeen", quiet_s: float, timeout_s: float) -> bool:
    """Until no call of the server's came to this process's stations for `quiet_s`, at most
    `timeout_s` (polled). False when the time ran out (a server re-planning all the time)."""
    began = time.perf_counter()
    while time.perf_counter() - max(began, seen.last_call) < quiet_s:
        if time.perf_counter() - began > timeout_s:
            return False
        await asyncio.sleep(0.5)
    return True


async def probes_over(recorder: Recorder, quiet_s: float = PROBES_QUIET_S) -> None:
    """Until no TriggerMessage MeterValues came for `quiet_s`: the server asks PROBES_AT_ONCE
    stations at a time without a pause, so a gap this long means it asked every session it
    had to (polled: the benchmark's harness, nothing to wait on)."""
    began = time.perf_counter()
    while time.perf_counter() - max(began, recorder.last_trigger) < quiet_s:
        await asyncio.sleep(0.5)


def count_triggers(recorder: Recorder) -> None:
    """Count the MeterValues the server triggers (its phase probe: once per new session, so a
    boot storm's probes can still run in the window) - extra offered load, not the steady rate."""
    from smartcharge.sim.remote import RemoteControl
    trigger = RemoteControl.trigger

    def counted(self, requested: str, connector_id: int | None) -> None:
        if requested == "MeterValues":
            recorder.last_trigger = time.perf_counter()
            recorder.triggered += recorder.measuring
        return trigger(self, requested, connector_id)
    RemoteControl.trigger = counted


class ControlSeen:
    """What the server asked of this process's stations (s29-boot): its calls by action, and
    per station when it first accepted a fail-safe default (TxDefaultProfile) and a plan
    (TxProfile) - wall seconds - so the benchmark can say when the boot storm was *under
    control*, not only booted: the server's set-ups (capabilities, the station's maximum,
    the defaults) run behind the boots and "ready" did not wait for them."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.default_at: dict[str, float] = {}
        self.plan_at: dict[str, float] = {}
        self.last_call = 0.0   # perf-counter s: the server's latest call to any station here

    def install(self) -> None:
        import ocpp.charge_point

        from smartcharge.sim.remote import RemoteControl
        handle_call = ocpp.charge_point.ChargePoint._handle_call
        seen = self

        async def counted_call(cp, msg):
            seen.calls[msg.action] = seen.calls.get(msg.action, 0) + 1
            seen.last_call = time.perf_counter()
            return await handle_call(cp, msg)
        ocpp.charge_point.ChargePoint._handle_call = counted_call
        set_profile = RemoteControl.set_charging_profile

        def noted(station, connector_id: int, data: dict) -> str:
            status = set_profile(station, connector_id, data)
            purpose = data.get("charging_profile_purpose") or data.get("chargingProfilePurpose")
            kept = {"TxDefaultProfile": seen.default_at, "TxProfile": seen.plan_at}.get(purpose)
            if status == "Accepted" and kept is not None:
                kept.setdefault(station.spec.station_id, time.time())
            return status
        RemoteControl.set_charging_profile = noted

    def summary(self) -> dict:
        return {"calls": self.calls, "default_at": list(self.default_at.values()),
                "plan_at": list(self.plan_at.values())}


async def read_line() -> str:
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


async def run(site_file: str, url: str, part: int, parts: int, interval_s: float,
              timeout_s: float, light: bool = True, steady: bool = False,
              after_plans: bool = False) -> None:
    from smartcharge.clock import AcceleratedClock
    from smartcharge.config import load_site
    from smartcharge.sim.ev import SimEV
    from smartcharge.sim.fleet import Fleet

    if light:
        lighten_station_process()
    site = load_site(site_file)
    site = replace(site, stations=site.stations[part::parts])
    clock = AcceleratedClock(datetime(2026, 1, 1, 8, tzinfo=UTC),
                             speed=SIM_METER_INTERVAL_S / interval_s)
    fleet = Fleet(site, url, clock, seed=1 + part, meter_interval_s=SIM_METER_INTERVAL_S,
                  call_timeout_s=30.0, reconnect_min_s=0.5, reconnect_max_s=5.0,
                  physics_step_s=3600.0)
    recorder = Recorder()
    count_triggers(recorder)
    control_seen = ControlSeen()
    control_seen.install()
    stations = list(fleet.stations.values())
    probe = profiler = None
    if os.environ.get(latency_probe.ENV):   # where the time goes (a diagnosis: costs CPU)
        probe = latency_probe.StationRecords()
        latency_probe.install_station(probe)
        probe_task = asyncio.create_task(latency_probe.station_loop_probe(probe))
    for station in stations:
        station.keep_acknowledged = False
        station.on_acknowledged = recorder if probe is None else _probed(recorder, probe,
                                                                         station)
    try:
        await fleet.start(wait_booted_s=timeout_s)
        await asyncio.gather(*(s.drained(timeout_s) for s in stations))
        say(booted=time.time())
        # big batteries: nobody gets full and stops sampling during the run; a car on every
        # connector
        await asyncio.wait_for(asyncio.gather(*(
            fleet.plug_in(sid, cid, SimEV(capacity_wh=1e9, soc=0.0), TAG)
            for sid, station in fleet.stations.items() for cid in station.connectors)),
            timeout_s)
        await asyncio.gather(*(
            s.wait_for(lambda s=s: all(c.transaction is not None
                                       and c.transaction.transaction_id is not None
                                       for c in s.connectors.values()), timeout_s)
            for s in stations))
        # s37-stall: when each of "ready"'s conditions was met (wall s), said before "ready"
        stages = {"transactions": time.time()}
        if steady:   # the set-up's queued samples acknowledged too: the window is steady
            await asyncio.gather(*(s.drained(timeout_s) for s in stations))
            stages["drained"] = time.time()
            # and the server's phase probes of the new sessions over (once per session,
            # 16 stations at once: at 5 000 stations ~2 000 extra MeterValues, a quarter of
            # the window's, still went into its first 40 s at load 10 - s26-p99)
            await asyncio.wait_for(probes_over(recorder), timeout_s)
            if after_plans:   # s38-stall: and the server's own set-up over (see the top)
                if await plans_held(stations, control_seen, timeout_s):
                    stages["plans"] = time.time()
                await asyncio.wait_for(probes_over(recorder), timeout_s)
                if await calls_quiet(control_seen, CALLS_QUIET_S, timeout_s):
                    stages["calls_quiet"] = time.time()
            stages["last_probe"] = recorder.last_trigger + time.time() - time.perf_counter()
            stages["probes_quiet"] = time.time()
        freeze_s = freeze_cpu_s = 0.0
        if light:
            # before "ready", not after (s26-p99): the collection holds this process's loop
            # (0.5-2 s with 2 500 stations), its stations' samples due meanwhile queue, and
            # were sent as one burst in the window's first second - 4x the steady rate, the
            # whole of the window's slowest 1 % (p99 1.4-2.4 s)
            started, cpu_started = time.perf_counter(), time.process_time()
            freeze_set_up()
            freeze_s = time.perf_counter() - started
            freeze_cpu_s = time.process_time() - cpu_started
            if steady:   # what queued during the freeze acknowledged: the window is steady
                await asyncio.gather(*(s.drained(timeout_s) for s in stations))
        say(ready_stages=stages)
        say(ready=time.time())
        if os.environ.get(PROFILE_ENV):   # where a station process's CPU goes once set up
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
        command = await read_line()
        if command.startswith("go"):
            measure_s = float(command.split()[1])
            recorder.start()
            calls_before = dict(control_seen.calls)   # s38-stall: the window's own calls
            cpu_start, started = time.process_time(), time.monotonic()
            perf_started, wall_started = time.perf_counter(), time.time()
            await asyncio.sleep(measure_s)   # the measurement window itself
            recorder.measuring = False
            window_s = time.monotonic() - started
            extra = {} if probe is None else {"probe": {
                "calls": [c for c in probe.calls
                          if perf_started <= c["t0"] <= perf_started + window_s],
                "lag": [v for s, v in probe.lag.items() if s >= wall_started],
                "busy": [v for s, v in probe.busy.items() if s >= wall_started],
                "gc": [g for g in probe.gc if g[0] >= perf_started],
                "window": [perf_started, perf_started + window_s]}}
            say(result={**extra,
                "latencies_s": recorder.latencies_s,
                "sent_s": recorder.sent_s,
                "perf_window": [perf_started, perf_started + window_s],
                "triggered": recorder.triggered,
                "before_window_s": recorder.before_window,
                "freeze_s": freeze_s,
                "freeze_cpu_s": freeze_cpu_s,
                "stations": len(stations),
                "window_s": window_s,
                "cpu_s": time.process_time() - cpu_start,
                "held": sum(1 for s in stations if s.booted.is_set()),
                "backlog": sum(s.outbox.pending("MeterValues") for s in stations),
                "control": control_seen.summary(),
                "calls_in_window": {a: n - calls_before.get(a, 0)
                                    for a, n in control_seen.calls.items()
                                    if n > calls_before.get(a, 0)},
            })
            await read_line()   # "stop", or the benchmark is gone
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{os.environ[PROFILE_ENV]}-{part}.prof")
        await fleet.stop()


def _probed(recorder: Recorder, probe, station):
    def acknowledged(action: str, latency_s: float) -> None:
        recorder(action, latency_s)
        if recorder.measuring and action == "MeterValues":
            latency_probe.acknowledged(probe, station, latency_s)
    return acknowledged


async def end_station_procs(procs) -> None:
    """Close the station processes' stdin (their signal to stop) and wait; kill a straggler."""
    for proc in procs:
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.ERROR)
    site_file, url, part, parts, interval_s, timeout_s, *rest = argv
    asyncio.run(run(site_file, url, int(part), int(parts), float(interval_s), float(timeout_s),
                    light="--heavy" not in rest, steady="--steady" in rest,
                    after_plans="--after-plans" in rest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
