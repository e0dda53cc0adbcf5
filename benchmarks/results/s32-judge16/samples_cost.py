"""CPU per samples_to_events call for a typical 1.6 MeterValues (register + power total + 3 currents)
and for per-phase power; run with PYTHONPATH pointing at a tree."""
import sys, time
from datetime import UTC, datetime
from smartcharge.metering import parse_meter_values
from smartcharge.ocpp.sampled import samples_to_events

at = "2026-12-07T09:00:00Z"
typical = [{"timestamp": at, "sampled_value": [
    {"value": "12345", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
    {"value": "11000", "measurand": "Power.Active.Import", "unit": "W"},
    *[{"value": "16.0", "measurand": "Current.Import", "unit": "A", "phase": p} for p in ("L1", "L2", "L3")]]}]
per_phase = [{"timestamp": at, "sampled_value": [
    {"value": "12345", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
    *[{"value": "3666", "measurand": "Power.Active.Import", "unit": "W", "phase": p} for p in ("L1", "L2", "L3")]]}]
now = datetime.now(UTC)
for name, mv in (("typical", typical), ("per_phase", per_phase)):
    readings = parse_meter_values(mv)
    n = 20000
    best = None
    for _ in range(5):
        t = time.process_time()
        for _ in range(n):
            samples_to_events("CP1", 1, 7, readings, now)
        dt = (time.process_time() - t) / n * 1e6
        best = dt if best is None else min(best, dt)
    ev = samples_to_events("CP1", 1, 7, readings, now)[0]
    print(f"{sys.argv[1]} {name}: {best:.2f} us CPU per call (best of 5 x {n}); power_w={ev.power_w}")
