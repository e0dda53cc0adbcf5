"""`benchmarks/ocpp_load.py --after-plans` (s38-stall): the window starts only once the server's
own set-up is over - every station of a process holding a plan it accepted, and the server's
calls quiet - so two trees' windows hold the same work; and the run says what the window held of
the server's calls. The station process's waits (`load_stations.plans_held`, `calls_quiet`) are
bounded and say when they ran out instead of raising."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from benchmarks.load_stations import ControlSeen, calls_quiet, plans_held
from benchmarks.ocpp_load import calls_in_window


def stations(*ids: str) -> list:
    return [SimpleNamespace(spec=SimpleNamespace(station_id=i)) for i in ids]


async def test_plans_held_waits_for_every_station_of_the_process():
    seen = ControlSeen()
    seen.plan_at["CP1"] = time.time()
    # CP2 holds no plan: the wait runs out and says so
    assert await plans_held(stations("CP1", "CP2"), seen, timeout_s=0.6) is False

    async def cp2_accepts_later() -> None:
        await asyncio.sleep(0)
        seen.plan_at["CP2"] = time.time()
    accepting = asyncio.create_task(cp2_accepts_later())
    assert await plans_held(stations("CP1", "CP2"), seen, timeout_s=30) is True
    await accepting


async def test_calls_quiet_runs_out_while_the_server_keeps_calling():
    seen = ControlSeen()
    done = asyncio.Event()

    async def calling() -> None:   # a call every poll: never quiet for 5 s
        while not done.is_set():
            seen.last_call = time.perf_counter()
            await asyncio.sleep(0.05)
    caller = asyncio.create_task(calling())
    try:
        assert await calls_quiet(seen, quiet_s=5.0, timeout_s=1.0) is False
    finally:
        done.set()
        await caller
    # the calls stopped: quiet once `quiet_s` passed since the last one
    assert await calls_quiet(seen, quiet_s=0.5, timeout_s=30) is True


def test_the_windows_calls_are_summed_over_the_station_processes():
    results = [{"calls_in_window": {"SetChargingProfile": 3}},
               {"calls_in_window": {"SetChargingProfile": 2, "TriggerMessage": 1}},
               {}]   # an older process: no such reading
    assert calls_in_window(results) == {"SetChargingProfile": 5, "TriggerMessage": 1}
