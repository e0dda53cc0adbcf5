"""Per-stage timing of a re-plan and its dispatch round, inside the benchmark's server process.

`install(app)` wraps the controller's re-plan, solve and check and dispatch's rounds and
per-station decreases (class attributes, in this process only) and adds `GET /bench/stages`,
which answers everything recorded so far in wall-clock seconds (`time.time()`, comparable with
the benchmark's own clock on the same machine). The control-latency benchmark splits a DR event's
latency with it: request, re-plan (with solve and check), sends, answers.
"""

from __future__ import annotations

import asyncio
import cProfile
import functools
import os
import time

from aiohttp import web

RECORD: dict[str, list] = {"replans": [], "rounds": [], "decreases": [], "sent": []}
SENT = [0]   # the server's requests to stations so far (audit rows: SetChargingProfile and kin)
PROBE_CPU = [0.0]   # the loop thread's CPU in `GET /bench/stages` so far (s31-dr): our own cost


def install(app: web.Application) -> None:
    from smartcharge.site.controller import SiteController
    from smartcharge.site.dispatch import Dispatcher

    current: dict = {}
    # SMARTCHARGE_PROBE_PROFILE=DIR: cProfile of the event loop's thread from each DR event's
    # re-plan for SMARTCHARGE_PROBE_PROFILE_S (default 3) seconds, one .pstats file each;
    # SMARTCHARGE_PROBE_PROFILE_CLOCK=cpu times it with the thread's CPU clock (on a shared
    # machine the default wall clock charges what the OS gave other processes to whatever
    # function was running: a socket send "took" 0.4 ms at load 9)
    profile_dir = os.environ.get("SMARTCHARGE_PROBE_PROFILE")
    # "round" (s30-dr): until the end of the first dispatch round begun after the event's
    # re-plan began - the event's own round, nothing of the quiet after it
    profile_round = os.environ.get("SMARTCHARGE_PROBE_PROFILE_S") == "round"
    profile_s = 120.0 if profile_round else float(os.environ.get("SMARTCHARGE_PROBE_PROFILE_S",
                                                                  "3"))
    profile_cpu = os.environ.get("SMARTCHARGE_PROBE_PROFILE_CLOCK") == "cpu"

    def profile_dr(reasons) -> None:
        if not profile_dir or not any(r.startswith("dr:") for r in reasons or ()):
            return
        profiler = cProfile.Profile(time.thread_time) if profile_cpu else cProfile.Profile()
        path = os.path.join(profile_dir, f"dr-{len(RECORD['replans'])}.pstats")

        def stop() -> None:
            if current.get("profiling") is not profiler:
                return   # stopped already
            current.pop("profiling")
            profiler.disable()
            profiler.dump_stats(path)
        if current.get("profiling") is not None:
            return   # one at a time
        current["profiling"] = profiler
        current["profile_from"] = time.time()
        current["profile_stop"] = stop if profile_round else None
        profiler.enable()
        asyncio.get_running_loop().call_later(profile_s, stop)

    original_replan = SiteController.replan

    @functools.wraps(original_replan)
    async def replan(self, reasons=None):
        profile_dr(reasons)
        # thread_time: the event loop thread's own CPU (what the other processes on the
        # machine take from it is not in it): comparable across load averages
        entry = {"start": time.time(), "reasons": sorted(reasons or ()), "solve_s": 0.0,
                 "check_s": 0.0, "build_s": 0.0, "finish_s": 0.0, "connectors": 0, "loop_cpu": time.thread_time(),
                 "sent": SENT[0]}
        current["replan"] = entry
        try:
            plan = await original_replan(self, reasons)
            entry["connectors"] = len(plan.connectors)
            return plan
        finally:
            entry["end"] = time.time()
            # the loop thread's CPU at the plan: the re-plan's own part of the event's CPU
            entry["loop_cpu_end"] = time.thread_time()
            RECORD["replans"].append(entry)

    def timed(function, key):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if "replan" in current:
                    current["replan"][key] += time.perf_counter() - started
        return wrapper

    try:   # the planner runs in a worker thread and calls its module's solve and check
        from smartcharge.site import planner
    except ImportError:   # older trees: the controller's own
        planner = None
    if planner is not None:
        planner.solve = timed(planner.solve, "solve_s")
        planner.check = timed(planner.check, "check_s")
        # (s30-dr) the rest of the worker thread's part: the problem built, the plan finished
        # (bindings, idle shares) - wall time in that thread, which holds the GIL for most of it
        if hasattr(planner, "build_problem") and hasattr(planner, "finish"):
            planner.build_problem = timed(planner.build_problem, "build_s")
            planner.finish = timed(planner.finish, "finish_s")
    else:
        SiteController._solve = timed(SiteController._solve, "solve_s")
        SiteController._check = staticmethod(timed(SiteController._check, "check_s"))

    original_round = Dispatcher.dispatch_plan

    @functools.wraps(original_round)
    async def dispatch_plan(self, plan):
        entry = {"start": time.time(), "plan_at": plan.at.timestamp() if plan else None}
        try:
            return await original_round(self, plan)
        finally:
            entry["end"] = time.time()
            RECORD["rounds"].append(entry)
            if "dump_calls" in current:
                current["dump_calls"]()
            stop = current.get("profile_stop")
            if stop is not None and entry["start"] >= current.get("profile_from", entry["end"]):
                current["profile_stop"] = None
                stop()

    original_items = Dispatcher._run_items

    @functools.wraps(original_items)
    async def run_items(self, control, items, *, decrease, **kwargs):
        started = time.time()
        try:   # kwargs: what newer trees pass (`superseded`)
            return await original_items(self, control, items, decrease=decrease, **kwargs)
        finally:
            if decrease:
                # (start, end, profiles, what: "plans" brings the site under the limit now,
                # "defaults" the fail-safe defaults that follow the limits, station, the loop
                # thread's CPU time at the end, requests sent so far)
                kinds = {item[0] for item in items}
                RECORD["decreases"].append((started, time.time(), len(items),
                                            "defaults" if kinds == {"defaults"} else "plans",
                                            control.station_id, time.thread_time(), SENT[0]))

    original_record = Dispatcher._record

    @functools.wraps(original_record)
    def record(self, station_id, connector_id, kind, payload, answer):
        # (when, what: purpose and stack level, e.g. "TxDefaultProfile/0" - the fail-safe
        # default, "/1" an idle share) per request: what a round's requests were made of
        try:
            profile = payload.get("csChargingProfiles") or payload.get("chargingProfile") or {}
            level = profile.get("stackLevel", "")
        except AttributeError:
            level = ""
        RECORD["sent"].append((time.time(), f"{kind}/{level}"))
        return original_record(self, station_id, connector_id, kind, payload, answer)

    original_sent = Dispatcher.stats_profiles_sent

    @functools.wraps(original_sent)
    def stats_profiles_sent(self):
        SENT[0] += 1
        return original_sent(self)

    calls_path = os.environ.get("SMARTCHARGE_PROBE_CALLS")
    if calls_path:
        # (s39-dr) every call of ours to a station, (sent, answered) in wall-clock seconds
        # and the loop thread's CPU at each: how long a request is in flight against how
        # much of that the loop itself was busy; written out at each round's end
        from smartcharge.ocpp.central import CentralSystemBase
        original_call = CentralSystemBase._call_checked
        calls: list = []

        @functools.wraps(original_call)
        async def call_checked(self, action, payload, unique_id, progress):
            began, began_cpu = time.time(), time.thread_time()
            try:
                return await original_call(self, action, payload, unique_id, progress)
            finally:
                calls.append((began, time.time(), began_cpu, time.thread_time(), self.id,
                              action))
        CentralSystemBase._call_checked = call_checked

        # and when each station's later defaults began and ended waiting for the round's
        # decreases to hold their slots (`_after_decreases`), as ["after", began, ended, sid]
        from smartcharge.site.dispatch_round import DispatchRound
        original_after = DispatchRound._after_decreases

        @functools.wraps(original_after)
        async def after_decreases(self):
            began = time.time()
            try:
                return await original_after(self)
            finally:
                calls.append((began, time.time(), 0.0, 0.0, "", "after-decreases"))
        DispatchRound._after_decreases = after_decreases
        # and when a round's comparisons ended (`_queued()` without a station), as
        # ["compared", t, t, ...]
        original_queued = DispatchRound._queued

        @functools.wraps(original_queued)
        def queued(self, sid=None):
            if sid is None and not self._compared:
                calls.append((time.time(), time.time(), time.thread_time(),
                              time.thread_time(), "", "compared"))
            return original_queued(self, sid)
        DispatchRound._queued = queued

        def dump_calls() -> None:
            import json
            with open(calls_path, "a") as out:
                for call in calls:
                    out.write(json.dumps(call) + "\n")
            calls.clear()
        current["dump_calls"] = dump_calls

    SiteController.replan = replan
    Dispatcher.dispatch_plan = dispatch_plan
    Dispatcher._run_items = run_items
    Dispatcher.stats_profiles_sent = stats_profiles_sent
    Dispatcher._record = record

    async def stages(request: web.Request) -> web.Response:
        # `?after=T`: only what started at or after T (the benchmark polls this every 50 ms;
        # the whole record, growing, cost the server's loop more every time). `?parts=a,b`:
        # only those lists (s31-dr: the poll while a round runs asks for the replans and
        # rounds alone - the decreases and requests of the round so far, scanned and
        # encoded as JSON every 50 ms, were the benchmark's own work on the loop it measures)
        began = time.thread_time()
        after = float(request.query.get("after", "0"))
        parts = request.query.get("parts")
        wanted = RECORD.keys() if parts is None else parts.split(",")
        body = {name: [r for r in RECORD[name]
                       if (r["start"] if isinstance(r, dict) else r[0]) >= after]
                for name in wanted if name in RECORD}
        # what the polls so far cost the loop (this one's up to here: the JSON is after)
        body["probe_cpu_s"] = PROBE_CPU[0] + time.thread_time() - began
        response = web.json_response(body)
        PROBE_CPU[0] += time.thread_time() - began
        return response

    app.router.add_get("/bench/stages", stages)
